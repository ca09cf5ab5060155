"""Pseudonyms: keyed hashes of the partner's references, random aliases and public tokens."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from functools import cache
from importlib import resources

from flask import current_app
from sqlalchemy import select

from donorhub.children.models import AliasUse
from donorhub.extensions import db


def keyed_hash(key: str, partner: str, kind: str, token: str) -> str:
    """HMAC-SHA256 of a partner token: stable for matching, useless without the key."""
    message = f"{partner}\x1f{kind}\x1f{token}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


class KeyedHasher:
    """`keyed_hash` for one key and partner, with the key's HMAC state prepared once: an
    import computes several hashes per record."""

    def __init__(self, key: str, partner: str) -> None:
        self.base = hmac.new(key.encode(), digestmod=hashlib.sha256)
        self.prefix = f"{partner}\x1f"

    def __call__(self, kind: str, token: str) -> str:
        mac = self.base.copy()
        mac.update(f"{self.prefix}{kind}\x1f{token}".encode())
        return mac.hexdigest()


@cache
def alias_words() -> tuple[str, ...]:
    text = resources.files("donorhub.feed").joinpath("data/aliases.txt").read_text("utf-8")
    return tuple(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


def name_words(name: str) -> frozenset[str]:
    """The words of a name, lower-cased ("Safe Harbour Children's Trust" -> safe, harbour,
    children, trust)."""
    return frozenset(word.lower() for word in re.findall(r"[^\W\d_]+", name) if len(word) > 1)


def usable_aliases(charity_name: str) -> tuple[str, ...]:
    """The alias words that share no word with the charity's name: an alias must name the
    child alone, so that no page that shows the charity's name ("Safe Harbour ...") seems to
    name a child "Harbour", and no check for a child's alias matches the charity."""
    taken = name_words(charity_name)
    return tuple(word for word in alias_words() if not name_words(word) & taken)


class AliasesExhausted(RuntimeError):
    """Every alias has been used once; the list must grow before another child arrives."""


class AliasPool:
    """Draws random aliases never given out before.

    Loaded once per import. Single words first; when they run out, two words ("Wren Meadow"),
    which gives tens of thousands more. `drawn` lists what this pool gave out, in order: the
    importer records them (`children.services.record_aliases`) in the batch's transaction,
    so none is ever given out again.
    """

    def __init__(self) -> None:
        self.used = set(db.session.scalars(select(AliasUse.alias)))
        self.words = usable_aliases(current_app.config["CHARITY_NAME"])
        self.free_singles = [word for word in self.words if word not in self.used]
        self.drawn: list[str] = []

    def draw(self) -> str:
        if self.free_singles:
            alias = self.free_singles.pop(secrets.randbelow(len(self.free_singles)))
        else:
            alias = self._draw_pair()
        self.used.add(alias)
        self.drawn.append(alias)
        return alias

    def _draw_pair(self) -> str:
        capacity = len(self.words) * (len(self.words) - 1)
        if len(self.used) - len(self.words) >= capacity:
            raise AliasesExhausted("every alias has been used; add words to aliases.txt")
        while True:  # random probes: the pair space is far larger than what is used
            first, second = secrets.choice(self.words), secrets.choice(self.words)
            alias = f"{first} {second}"
            if first != second and alias not in self.used:
                return alias


def new_public_token() -> str:
    """256 random bits: says nothing about the child and cannot be guessed."""
    return secrets.token_urlsafe(32)
