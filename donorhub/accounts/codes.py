"""The shape of staff recovery codes (shared by the form schema and the services)."""

from __future__ import annotations

#: No 0/o, 1/l/i: the codes are read off paper. 31 symbols x 10 = 49 random bits a code.
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
RECOVERY_CODE_LENGTH = 10
RECOVERY_CODE_COUNT = 10


def normalise_recovery_code(code: str) -> str | None:
    """The code without spaces and hyphens, lower-cased; None if it cannot be one."""
    folded = "".join(ch for ch in code.lower() if ch not in " -\t")
    if len(folded) != RECOVERY_CODE_LENGTH or any(ch not in RECOVERY_ALPHABET for ch in folded):
        return None
    return folded
