"""The child-protection code of conduct every sponsor accepts before seeing a child.

Versioned: a new version goes at the top of VERSIONS and becomes CURRENT_VERSION; every
sponsor must accept it again before any child content is shown to them (R20). Old versions
stay here, so what each sponsor accepted can always be read back.
Plain English, from the safeguarding rules for sponsors (docs/sponsorship.md, "The code of
conduct and its versions").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CodeOfConduct:
    version: str
    title: str
    points: tuple[str, ...]


VERSIONS: tuple[CodeOfConduct, ...] = (
    CodeOfConduct(
        version="2026-11",
        title="Our code of conduct for sponsors",
        points=(
            "I will contact the child only through the charity. I will not try to find, "
            "write to, call or message the child, her family or the safe home in any other "
            "way, during the sponsorship or after it ends.",
            "I will not share my own contact details, surname, address or social-media "
            "accounts in anything I send, and I will not ask for the child's.",
            "I will not post, share or forward anything about the child online or "
            "anywhere else: not the chosen name, the illustration, the updates or any part "
            "of them. If I have, I will delete it when asked.",
            "I will not try to visit the child or the safe home. The charity does not "
            "arrange visits.",
            "I will not send gifts, money or parcels to the child. Any gift goes through "
            "the charity, which decides how it is used for the children.",
            "I will not try to work out who the child is or where she is, and I will not "
            "ask why a child has moved on.",
            "I will avoid topics that can harm a child: sex or relationships, alcohol, "
            "drugs or weapons, my wealth, religion or politics, and anything secret.",
            "If the child or anyone else contacts me directly, I will not reply and I will "
            "tell the charity at once.",
            "I understand the charity may pause or end my sponsorship, without giving a "
            "reason, if it is worried about a child's safety.",
        ),
    ),
)
CURRENT = VERSIONS[0]
CURRENT_VERSION = CURRENT.version


def by_version(version: str) -> CodeOfConduct | None:
    return next((c for c in VERSIONS if c.version == version), None)
