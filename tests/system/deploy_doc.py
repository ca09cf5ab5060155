"""The example blocks of docs/deploy.md, read by the tests that run them.

A block is a fenced code block right after a line `<!-- example: NAME ... -->` (both may be
indented alike, inside a list item). The tests take the settings from these blocks, so the page
and the tests are one text.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

DEPLOY_MD = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
_BLOCK = re.compile(
    r"^(?P<indent>[ ]*)<!-- example: (?P<name>[a-z]+)\b[^>]*-->\n"
    r"(?P=indent)```[a-z]*\n(?P<body>.*?)\n(?P=indent)```",
    re.S | re.M,
)


def example_blocks(path: Path = DEPLOY_MD) -> dict[str, str]:
    blocks: dict[str, str] = {}
    for match in _BLOCK.finditer(path.read_text()):
        if match["name"] in blocks:
            raise ValueError(f"{path.name}: two example blocks named {match['name']!r}")
        # A block inside a list item is indented with it: the body without that indent.
        indent = match["indent"]
        blocks[match["name"]] = "\n".join(
            line.removeprefix(indent) for line in match["body"].split("\n")
        )
    return blocks


def block(name: str) -> str:
    blocks = example_blocks()
    if name not in blocks:
        raise LookupError(f"docs/deploy.md has no example block {name!r}")
    return blocks[name]


def environment(name: str) -> dict[str, str]:
    """`NAME=value` lines (shell quoting, # comments) of an example block."""
    values = {}
    for line in block(name).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        (assignment,) = shlex.split(line)
        key, _, value = assignment.partition("=")
        values[key] = value
    return values


def webhook_events() -> list[str]:
    """The Stripe events docs/deploy.md says to subscribe the webhook endpoint to."""
    return [line.strip() for line in block("webhookevents").splitlines() if line.strip()]


def nginx_block() -> str:
    return block("nginx")


def gunicorn_command() -> list[str]:
    lines = [line for line in block("gunicorn").splitlines() if line.strip()]
    (line,) = lines
    return shlex.split(line)
