"""Write the demo feed batches in donorhub/demo/feed/ (run: python -m donorhub.demo.make_feed).

Deterministic, so the committed files only change when this script does. About 60 children in
4 homes, updates for 4 quarters, two exits, a few texts the guard quarantines, a few records
with rule errors, and one batch with a field outside the contract. Every name and detail is
invented.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HOMES = {"MH-01": "Maharashtra", "MH-02": "Maharashtra", "WB-01": "West Bengal", "DL-01": "Delhi"}
QUARTERS = ["2025-Q4", "2026-Q1", "2026-Q2", "2026-Q3"]
ABOUT = [
    "Loves drawing birds and wants to be a teacher.",
    "Enjoys helping the younger children with their reading.",
    "Is always the first to start a song at evening prayers.",
    "Likes growing tomatoes in the home's garden.",
    "Dreams of becoming a nurse one day.",
    "Is proud of her neat handwriting.",
    "Loves kabaddi and never misses a practice.",
    "Has started learning to sew her own clothes.",
]
UPDATE_TEXT = [
    "She finished her first full term and is proud of her maths.",
    "He helped organise the sports day and cheered for everyone.",
    "She read her first whole book in English this quarter.",
    "The counsellor says she is settling in well and smiling more.",
    "She painted a mural of flowers for the dining room wall.",
]
QUARANTINE_ABOUT = [
    "Her aunt Sunita Patil visits her every month.",  # a person's name
    "She still remembers the lane behind Falkland Road.",  # a place
    "Call her sister on 98200 11111 for news.",  # a phone number
]
QUARANTINE_UPDATE = [
    "She went back to Shree Saraswati Vidyalaya for her exams.",  # a school
    "On 14 March she turned 13 and we had a cake.",  # exact date and age
]
HOME_NEWS = [
    "The children planted a vegetable garden this quarter.",
    "A new library corner opened with two hundred books.",
    "Everyone celebrated Diwali together with lamps and sweets.",
]
INTERESTS = [
    "drawing",
    "painting",
    "dance",
    "singing",
    "reading",
    "cricket",
    "kabaddi",
    "football",
    "sewing",
    "gardening",
    "computers",
    "mathematics",
]
MILESTONES = [
    "enrolled_in_school",
    "attended_every_class",
    "passed_term_exams",
    "moved_up_a_class",
    "learned_new_skill",
    "joined_sports_team",
    "performed_in_event",
    "reading_milestone",
    "helped_younger_children",
]


def header(batch: str, records: list[dict], generated: str) -> str:
    return json.dumps(
        {
            "type": "header",
            "feed_version": 1,
            "partner": "mumbai-safe-homes",
            "batch": batch,
            "generated": generated,
            "records": len(records),
        }
    )


def write(directory: Path, name: str, batch: str, records: list[dict], generated: str) -> None:
    lines = [header(batch, records, generated)] + [json.dumps(r) for r in records]
    (directory / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def children(rng: random.Random) -> list[dict]:
    result = []
    for number in range(60):
        home = list(HOMES)[number % 4]
        record = {
            "type": "child",
            "ref": f"demo-child-{number:04d}",
            "home": home,
            "age_band": rng.choice(["9-11", "12-14", "12-14", "15-17"]),
            "gender": "girl" if number % 6 else "boy",
            "region": HOMES[home],
            "stage": rng.choice(["education", "education", "residential_care"]),
            "joined_year": rng.choice([2023, 2024, 2024, 2025]),
            "interests": sorted(rng.sample(INTERESTS, rng.randint(1, 3))),
            "consent": {
                "profile": number % 15 != 7,
                "updates": True,
                "basis": rng.choice(["guardian_and_child", "cwc_order"]),
                "expires": "2028-Q4",
            },
        }
        if number % 3 == 0:
            record["about"] = ABOUT[number % len(ABOUT)]
        result.append(record)
    for position, text in zip((5, 22, 41), QUARANTINE_ABOUT, strict=True):
        result[position]["about"] = text
    return result


def main() -> None:
    directory = Path(__file__).resolve().parent / "feed"
    directory.mkdir(exist_ok=True)
    rng = random.Random(2026)  # noqa: S311 - deterministic demo data, not a secret
    kids = children(rng)
    for index, quarter in enumerate(QUARTERS, start=1):
        records: list[dict] = list(kids) if index == 1 else []
        for number, kid in enumerate(kids):
            if rng.random() < 0.35:
                update = {
                    "type": "update",
                    "id": f"demo-u-{quarter}-{number:04d}",
                    "child": kid["ref"],
                    "period": quarter,
                    "category": rng.choice(["education", "wellbeing", "activities"]),
                    "milestones": sorted(rng.sample(MILESTONES, rng.randint(1, 2))),
                }
                if rng.random() < 0.5:
                    update["text"] = rng.choice(UPDATE_TEXT)
                records.append(update)
        for home in HOMES:
            records.append(
                {
                    "type": "update",
                    "id": f"demo-h-{quarter}-{home}",
                    "home": home,
                    "period": quarter,
                    "category": "programme",
                    "milestones": [],
                    "text": rng.choice(HOME_NEWS),
                }
            )
            in_care = rng.randint(28, 40)
            records.append(
                {
                    "type": "home_stats",
                    "home": home,
                    "period": quarter,
                    "children_in_care": in_care,
                    "in_school": in_care - 6,
                    "in_vocational_training": rng.randint(2, 4),
                    "reintegrated": rng.randint(1, 6),
                    "new_arrivals": rng.randint(0, 4),
                }
            )
        if index == 3:
            for offset, text in enumerate(QUARANTINE_UPDATE):
                records.append(
                    {
                        "type": "update",
                        "id": f"demo-q-{offset}",
                        "child": kids[10 + offset]["ref"],
                        "period": quarter,
                        "category": "education",
                        "milestones": [],
                        "text": text,
                    }
                )
            # Rule errors: a record each with an unknown home, a future quarter, a bad band.
            records.append(dict(kids[0], ref="demo-child-bad-1", home="XX-99"))
            records.append(dict(kids[1], ref="demo-child-bad-2", age_band="13"))
            records.append(
                {
                    "type": "update",
                    "id": "demo-u-future",
                    "child": kids[2]["ref"],
                    "period": "2031-Q1",
                    "category": "education",
                    "milestones": ["passed_term_exams"],
                }
            )
        if index == 4:
            records.append({"type": "exit", "child": kids[30]["ref"], "period": quarter})
            records.append({"type": "exit", "child": kids[31]["ref"], "period": quarter})
        generated = {
            1: "2026-01-05T06:00:00Z",
            2: "2026-04-03T06:00:00Z",
            3: "2026-07-03T06:00:00Z",
            4: "2026-10-02T06:00:00Z",
        }[index]
        write(directory, f"{index}-{quarter}.jsonl", f"demo-{quarter}", records, generated)
    leaky = [dict(kids[3], school="Invented Municipal School No. 4")]
    write(directory, "5-rejected.jsonl", "demo-2026-Q3-fix", leaky, "2026-10-09T06:00:00Z")


if __name__ == "__main__":
    main()
