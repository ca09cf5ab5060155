"""Password hashing (argon2id) and the password policy."""

from __future__ import annotations

from functools import cache
from importlib import resources

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app


def hasher() -> PasswordHasher:
    config = current_app.config
    return _hasher(
        config["ARGON2_TIME_COST"], config["ARGON2_MEMORY_COST"], config["ARGON2_PARALLELISM"]
    )


@cache
def _hasher(time_cost: int, memory_cost: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(
        time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=Type.ID
    )


def hash_password(password: str) -> str:
    return hasher().hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return hasher().verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    try:
        return hasher().check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


@cache
def _dummy_hash(time_cost: int, memory_cost: int, parallelism: int) -> str:
    return _hasher(time_cost, memory_cost, parallelism).hash("not-a-real-password-at-all")


def burn_equal_time(password: str) -> None:
    """Verify against a throw-away hash, so an unknown e-mail costs what a known one does."""
    config = current_app.config
    verify_password(
        _dummy_hash(
            config["ARGON2_TIME_COST"], config["ARGON2_MEMORY_COST"], config["ARGON2_PARALLELISM"]
        ),
        password,
    )


@cache
def common_passwords() -> frozenset[str]:
    text = resources.files("donorhub.accounts").joinpath("common_passwords.txt").read_text()
    return frozenset(
        line.strip().lower()
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    )


def password_problems(
    password: str, *, min_length: int, max_length: int, email: str | None = None
) -> list[str]:
    """Reasons a new password is refused, in plain words. Compared exactly: no trimming."""
    problems = []
    if len(password) < min_length:
        problems.append(
            f"Use at least {min_length} characters. A few unrelated words make a "
            "long password that is easy to remember."
        )
    if len(password) > max_length:
        problems.append(f"Use at most {max_length} characters.")
    lowered = password.lower()
    if lowered in common_passwords() or lowered.strip() in common_passwords():
        problems.append(
            "This password is on a list of passwords that attackers try first. Choose another."
        )
    if email:
        local_part = email.split("@", 1)[0].lower()
        if len(local_part) >= 4 and local_part in lowered:
            problems.append("Do not use your e-mail address in your password.")
    if len(set(password)) < 4 and len(password) >= min_length:
        problems.append("Use more than a few different characters.")
    return problems
