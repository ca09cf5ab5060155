"""Gift Aid: the declaration texts (versioned) and HMRC's claim schedule, row by row.

docs/gift-aid.md lists what HMRC requires. A declaration stores the version of the text
the donor saw; the texts are kept here forever, so any declaration can be shown as made.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

#: HMRC's dates are UK dates: a gift at 00:30 on 1 July in London is dated 01/07.
UK = ZoneInfo("Europe/London")

#: Every wording ever shown, by version. Never edit one: add a new version.
DECLARATION_TEXTS = {
    "2026-01": (
        "I want to Gift Aid my donation of {amount} and any donations I make in the future "
        "or have made in the past 4 years to {charity}. I am a UK taxpayer and understand "
        "that if I pay less Income Tax and/or Capital Gains Tax in the current tax year "
        "than the amount of Gift Aid claimed on all my donations, it is my responsibility "
        "to pay any difference."
    ),
}
DECLARATION_NOTE = (
    "Gift Aid lets us claim 25p from HMRC for every £1 you give. Please tell us if you want "
    "to cancel this declaration, change your name or home address, or no longer pay enough "
    "Income Tax or Capital Gains Tax."
)

SCHEDULE_COLUMNS = ("Title", "First name or initial", "Last name", "House name or number",
                    "Postcode", "Aggregated donations", "Sponsored event", "Donation date",
                    "Amount")

POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?)([0-9][A-Z]{2})$")
NAME_OK = re.compile(r"^[A-Za-z][A-Za-z '.]*$")


def declaration_text(version: str, *, amount: str, charity: str) -> str:
    return DECLARATION_TEXTS[version].format(amount=amount, charity=charity)


def normalise_postcode(value: str) -> str | None:
    """'s19 2bd' -> 'S19 2BD'; None when it is not a UK postcode."""
    match = POSTCODE.match("".join(value.upper().split()))
    if match is None:
        return None
    return f"{match.group(1)} {match.group(2)}"


def schedule_name(value: str) -> str:
    """A name as HMRC's schedule takes it: accents dropped ("Zoë" -> "Zoe"), hyphens as
    spaces (double-barrelled names take a space: "Smith-Jones" -> "Smith Jones")."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", value)
                    if not unicodedata.combining(c))
    plain = "".join(" " if unicodedata.category(c) == "Pd" else c
                    for c in plain.replace("\u2019", "'"))
    return " ".join(plain.split())


def schedule_last_name(value: str) -> str:
    return schedule_name(value)


def claim_deadline(gift_day: date) -> date:
    """The last day to claim a gift: 4 years after the end of the UK tax year (5 April) in
    which it was received (docs/gift-aid.md; the charity's accounting period follows the tax
    year here)."""
    year_end = date(gift_day.year, 4, 5)
    if gift_day > year_end:
        year_end = date(gift_day.year + 1, 4, 5)
    return date(year_end.year + 4, 4, 5)


@dataclass(frozen=True)
class ScheduleRow:
    donation_id: int
    title: str
    first_name: str
    last_name: str
    house: str
    postcode: str
    date: str
    amount: str

    def cells(self) -> list[str]:
        # Blank, never "0.00" or "n/a", for the columns that do not apply.
        return [self.title, self.first_name, self.last_name, self.house, self.postcode, "",
                "", self.date, self.amount]


def build_row(*, donation_id: int, title: str | None, first_name: str, last_name: str,
              house: str, postcode: str, paid_at: datetime, amount_minor: int,
              now: datetime) -> tuple[ScheduleRow, list[str]]:
    """One schedule row and the problems with it (an empty list when it may be claimed)."""
    from donorhub.money import plain_amount

    problems = []
    title = (title or "").strip()
    first = schedule_name(first_name)
    last = schedule_name(last_name)
    house = " ".join(house.split())
    code = normalise_postcode(postcode or "")
    if len(title) > 4:
        problems.append("title is longer than 4 characters")
    if not first or len(first) > 35 or not NAME_OK.match(first):
        problems.append("first name must be 1 to 35 letters (A-Z, spaces, apostrophes)")
    if not last or len(last) > 35 or not NAME_OK.match(last):
        problems.append("last name must be 1 to 35 letters (A-Z, spaces, apostrophes)")
    if not house or len(house) > 40:
        problems.append("house name or number is missing or too long")
    if code is None:
        problems.append("postcode is not a UK postcode")
    gift_day = paid_at.astimezone(UK).date()
    if paid_at > now:
        problems.append("donation date is in the future")
    deadline = claim_deadline(gift_day)
    if now.astimezone(UK).date() > deadline:
        problems.append(f"too late to claim: HMRC's 4-year window closed on {deadline:%-d %B %Y}")
    if amount_minor <= 0:
        problems.append("amount must be more than 0.00")
    row = ScheduleRow(donation_id=donation_id, title=title, first_name=first, last_name=last,
                      house=house, postcode=code or postcode, date=gift_day.strftime("%d/%m/%y"),
                      amount=plain_amount(amount_minor))
    if not re.fullmatch(r"\d{2}/\d{2}/\d{2}", row.date):
        problems.append("date is not DD/MM/YY")
    if not re.fullmatch(r"\d+\.\d{2}", row.amount):
        problems.append("amount is not in the form 200.00")
    return row, problems
