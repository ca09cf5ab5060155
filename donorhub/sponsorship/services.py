"""Public profiles of children waiting for a sponsor, built only from released fields."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from donorhub.extensions import db
from donorhub.feed.models import Child, ChildRelease, ChildStatus, ChildText, ReviewStatus

INTEREST_NAMES = {"writing_stories": "writing stories", "kho_kho": "kho kho"}


@dataclass(frozen=True)
class ProfileCard:
    """Everything a sponsor or the public may see of one child. Nothing else exists for them."""

    token: str
    alias: str
    illustration: int
    age_text: str | None
    gender_text: str | None
    region_text: str | None
    stage_text: str | None
    joined_text: str | None
    interests: tuple[str, ...]
    about: str | None

    @property
    def summary(self) -> str:
        who = self.gender_text or "child"
        parts = [f"{self.alias} is a {who}"]
        if self.age_text:
            parts.append(f"aged {self.age_text}")
        if self.stage_text:
            parts.append(self.stage_text)
        parts.append(f"at a safe home in {self.region_text or 'India'}")
        return " ".join(parts) + "."

    @property
    def interests_text(self) -> str | None:
        if not self.interests:
            return None
        names = [INTEREST_NAMES.get(i, i) for i in self.interests]
        if len(names) == 1:
            return f"Enjoys {names[0]}."
        return f"Enjoys {', '.join(names[:-1])} and {names[-1]}."


def _card(child: Child, released: ChildRelease, about: ChildText | None) -> ProfileCard:
    approved_about = about.approved if about is not None and \
        about.status == ReviewStatus.APPROVED else None
    return ProfileCard(
        token=child.public_token, alias=child.alias, illustration=child.illustration,
        age_text=released.age_text, gender_text=released.gender_text,
        region_text=released.region_text, stage_text=released.stage_text,
        joined_text=released.joined_text, interests=tuple(released.interests),
        about=approved_about)


def _listed_query():
    return (select(Child, ChildRelease, ChildText)
            .join(ChildRelease, ChildRelease.child_id == Child.id)
            .outerjoin(ChildText, ChildText.child_id == Child.id)
            .where(Child.status == ChildStatus.ACTIVE, ChildRelease.is_listed.is_(True)))


def listed_profiles() -> list[ProfileCard]:
    """Every child the release checks allow to be listed, longest-waiting first."""
    rows = db.session.execute(_listed_query().order_by(Child.first_seen_at, Child.id)).all()
    return [_card(child, released, about) for child, released, about in rows]


def profile_by_token(token: str) -> ProfileCard | None:
    if not token or len(token) > 64:
        return None
    row = db.session.execute(_listed_query().where(Child.public_token == token)).first()
    return _card(*row) if row is not None else None
