"""Strict parser for the partner feed (contract version 1, JSON Lines).

`parse_feed()` turns the untrusted bytes of one batch into validated, typed records, or raises
`FeedError`. It touches no database and knows nothing of Flask; the importer decides what to
store. docs/feed-contract.md is the contract as implemented here, decision by decision.

Three kinds of finding, three effects:

* structural (not UTF-8, bad JSON, header problems, count mismatch, ...): `BatchRejected`;
* a key outside the contract on any line: `UnknownFieldRejected` (a `BatchRejected`), which
  wins over every other finding because it means the partner's sanitizer is broken and the
  safeguarding officer must be alerted; so the whole file is scanned for keys even after a
  structural finding;
* a value outside a vocabulary or a rule: a `RecordError`; that record is skipped and the
  batch goes on.

No message produced here contains a value from the feed: only line numbers, contract field
names and rule texts. A rejected value may be the very identifier that must not spread.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from marshmallow import ValidationError

from donorhub.children import vocab

from .schemas import (
    RULE_TEXTS,
    ChildRecord,
    Consent,
    ExitRecord,
    FeedHeader,
    HomeStatsRecord,
    LineSchema,
    UpdateRecord,
    build_schemas,
    is_required,
    rule_for,
)

__all__ = [
    "MAX_LINE_BYTES",
    "BatchRejected",
    "ChildRecord",
    "Consent",
    "ExitRecord",
    "FeedError",
    "FeedHeader",
    "FeedSettings",
    "HomeStatsRecord",
    "ParsedFeed",
    "RecordError",
    "UnknownFieldRejected",
    "UpdateRecord",
    "parse_feed",
]

# The longest legal line is an update whose 600-character text is written entirely as escaped
# astral characters ("\\ud83d\\ude00", 12 bytes each): about 7.5 KB. 16 KiB leaves room and
# still bounds the work a hostile line can cause (deep nesting, huge numbers).
MAX_LINE_BYTES = 16 * 1024

# The maximum number of unknown fields spelled out in an exception message (all are kept in
# `UnknownFieldRejected.fields`).
_MESSAGE_FIELD_LIMIT = 20

_UTF8_BOM = b"\xef\xbb\xbf"
# A key the partner sent that is not in the contract is reported by name only if it looks like
# a field name; anything else might be a value (a name, a number) typed in as a key.
_PRINTABLE_KEY_RE = re.compile(r"[a-z_]{1,32}")
_UNPRINTABLE_KEY = "<unprintable key>"


# ---------------------------------------------------------------------------------------------
# Errors and results
# ---------------------------------------------------------------------------------------------


class FeedError(Exception):
    """The whole batch is rejected. The message names line numbers, fields and rules, never
    values."""

    def __init__(self, rule: str, line: int | None = None, field: str | None = None) -> None:
        self.rule = rule
        self.line = line
        self.field = field
        super().__init__(self._message())

    def _message(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.field is not None:
            where.append(f"field {self.field}")
        return f"{', '.join(where)}: {self.rule}" if where else self.rule

    def __reduce__(self) -> tuple[Any, ...]:  # keep it picklable despite the custom __init__
        return (type(self), (self.rule, self.line, self.field))


class BatchRejected(FeedError):
    """Structural: the batch is not a well-formed feed of contract version 1."""


class UnknownFieldRejected(BatchRejected):
    """A key outside the contract on some line: the partner's sanitizer is broken.

    `fields` lists (line, name) for every such key in the file; `name` is the key itself only
    when it matches ^[a-z_]{1,32}$ (prefixed by its parent for nested keys, e.g.
    "consent.notes"), otherwise "<unprintable key>". `positions` gives, in the same order, the
    1-based position of the key in its object ("unknown field #k on line N").
    """

    def __init__(
        self,
        fields: list[tuple[int, str]],
        positions: list[int] | None = None,
    ) -> None:
        self.fields = list(fields)
        self.positions = list(positions) if positions is not None else [0] * len(self.fields)
        first_line, first_name = self.fields[0]
        super().__init__("fields outside the contract", first_line, first_name)

    def _message(self) -> str:
        shown = [
            f"unknown field #{position} on line {line} ({name})"
            for (line, name), position in zip(
                self.fields[:_MESSAGE_FIELD_LIMIT],
                self.positions[:_MESSAGE_FIELD_LIMIT],
                strict=True,
            )
        ]
        more = len(self.fields) - len(shown)
        if more > 0:
            shown.append(f"and {more} more")
        return "fields outside the contract: " + "; ".join(shown)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.fields, self.positions))


@dataclass(frozen=True)
class FeedSettings:
    partner: str  # the configured partner code
    homes: frozenset[str]  # the configured home codes, e.g. {"MH-01", "MH-02"}
    today: date  # "not in the future" is judged against this; inject it
    max_bytes: int = 50 * 1024 * 1024
    # Optional home code -> region. When set, a child's region must be its home's region: the
    # contract's region is that of the safe home, and a different one may be the region of
    # origin, which is T0 data.
    home_regions: Mapping[str, str] | None = None


@dataclass(frozen=True)
class RecordError:
    """One broken rule on one line. That line's record is skipped; the batch goes on. A line
    with several broken rules gives several RecordErrors (see ParsedFeed.rejected_lines)."""

    line: int
    field: str | None  # a contract field name ("consent.basis"), None for a record-level rule
    rule: str


@dataclass(frozen=True)
class ParsedFeed:
    header: FeedHeader
    children: list[ChildRecord]
    updates: list[UpdateRecord]
    home_stats: list[HomeStatsRecord]
    exits: list[ExitRecord]
    rejected: list[RecordError]
    sha256: str  # hex digest of the raw bytes
    line_count: int = field(default=0)  # lines in the file, header included

    @property
    def rejected_lines(self) -> list[int]:
        """The lines whose record was rejected, each once, in order."""
        return sorted({error.line for error in self.rejected})


# ---------------------------------------------------------------------------------------------
# JSON decoding
# ---------------------------------------------------------------------------------------------


class _DuplicateKey(Exception):
    pass


class _NonFiniteNumber(Exception):
    pass


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys; a sanitizer and DonorHub could then read
    # different values from the same line, so two equal keys are refused.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _DuplicateKey
    return result


def _refuse_constant(name: str) -> Any:
    raise _NonFiniteNumber  # NaN, Infinity, -Infinity: not JSON (RFC 8259)


_DECODER = json.JSONDecoder(
    object_pairs_hook=_object_without_duplicates, parse_constant=_refuse_constant
)


def _decode_line(text: str) -> tuple[Any, str | None]:
    """(value, None) or (None, rule) -- the rule never quotes the line."""
    try:
        return _DECODER.decode(text), None
    except _DuplicateKey:
        return None, "an object on this line has the same key twice"
    except _NonFiniteNumber:
        return None, "NaN and Infinity are not JSON numbers"
    except RecursionError:
        return None, "the line is nested too deeply"
    except ValueError:  # JSONDecodeError, and ints longer than Python's digit limit
        return None, "the line is not valid JSON"


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


def _display_key(key: str, parent: str | None = None) -> str:
    name = key if _PRINTABLE_KEY_RE.fullmatch(key) else _UNPRINTABLE_KEY
    return f"{parent}.{name}" if parent else name


def _flatten(messages: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """marshmallow's nested message dict -> [(field path, message list), ...]."""
    if isinstance(messages, dict):
        found: list[tuple[tuple[str, ...], Any]] = []
        for key, value in messages.items():
            found.extend(_flatten(value, (*path, str(key))))
        return found
    return [(path, messages)]


def _is_present(data: Mapping[str, Any], path: tuple[str, ...]) -> bool:
    current: Any = data
    for name in path:
        if not isinstance(current, dict) or name not in current:
            return False
        current = current[name]
    return True


class _BatchParser:
    """One pass over the lines of one batch. Not reusable; not shared between threads."""

    def __init__(self, settings: FeedSettings) -> None:
        self.settings = settings
        self.schemas: dict[str, LineSchema] = build_schemas(settings)
        self.structural: BatchRejected | None = None  # the first structural finding
        self.count_mismatch = False
        self.unknown: list[tuple[int, str]] = []
        self.unknown_positions: list[int] = []
        self.header: FeedHeader | None = None
        self.records: dict[str, list[Any]] = {
            "child": [],
            "update": [],
            "home_stats": [],
            "exit": [],
        }
        self.rejected: list[RecordError] = []
        # Keys already used in this batch, per line type, with the line that used them.
        self.seen: dict[str, dict[Any, int]] = {name: {} for name in self.records}

    @property
    def doomed(self) -> bool:
        """Once the batch is lost, lines are only scanned for unknown keys."""
        return self.structural is not None or self.count_mismatch or bool(self.unknown)

    def structural_finding(self, rule: str, line: int | None, field: str | None = None) -> None:
        if self.structural is None:
            self.structural = BatchRejected(rule, line, field)

    # -- lines ----------------------------------------------------------------------------

    def parse_lines(self, lines: list[bytes]) -> None:
        for index, chunk in enumerate(lines):
            self.parse_line(index + 1, chunk, after_header=len(lines) - 1)

    def parse_line(self, line: int, chunk: bytes, after_header: int) -> None:
        if chunk.endswith(b"\r"):  # CRLF line ends are accepted (as by jsonlines.org)
            chunk = chunk[:-1]
        if len(chunk) > MAX_LINE_BYTES:
            self.structural_finding(f"the line is longer than {MAX_LINE_BYTES} bytes", line)
            return
        if not chunk.strip():
            self.structural_finding(
                "blank line; a feed has none (a single final newline is fine)", line
            )
            return
        try:
            text = chunk.decode("utf-8")  # strict: no replacement characters
        except UnicodeDecodeError:
            self.structural_finding("the line is not valid UTF-8", line)
            return
        value, problem = _decode_line(text)
        if problem is not None:
            self.structural_finding(problem, line)
            return
        if type(value) is not dict:
            self.structural_finding("the line is not a JSON object", line)
            return

        line_type = value.get("type")
        if type(line_type) is not str or line_type not in vocab.LINE_TYPES:
            self.structural_finding(
                "type must be one of header, child, update, home_stats, exit", line, "type"
            )
            return
        if line == 1 and line_type != "header":
            self.structural_finding("the first line must be the header", line, "type")
        elif line > 1 and line_type == "header":
            self.structural_finding("only the first line may be a header", line, "type")

        line_schema = self.schemas[line_type]
        if not self.scan_keys(line, value, line_schema) or self.doomed:
            return
        if line_type == "header":
            self.load_header(value, line_schema, after_header)
        else:
            self.load_record(line, line_type, value, line_schema)

    def scan_keys(self, line: int, value: dict[str, Any], line_schema: LineSchema) -> bool:
        """Record every key outside the contract; True if there was none."""
        clean = True
        for position, key in enumerate(value, start=1):
            if key not in line_schema.keys:
                self.unknown.append((line, _display_key(key)))
                self.unknown_positions.append(position)
                clean = False
        for parent, allowed in line_schema.nested_keys.items():
            nested = value.get(parent)
            if type(nested) is not dict:
                continue  # not an object: a type error for the schema, not an unknown key
            for position, key in enumerate(nested, start=1):
                if key not in allowed:
                    self.unknown.append((line, _display_key(key, parent)))
                    self.unknown_positions.append(position)
                    clean = False
        return clean

    # -- header ---------------------------------------------------------------------------

    def load_header(self, value: dict[str, Any], line_schema: LineSchema, after: int) -> None:
        schema = line_schema.schema
        schema.line = 1
        try:
            header = schema.load(value)
        except ValidationError as error:
            # Report the first broken rule in contract order (feed_version first).
            problems = dict(self.describe(schema, value, error))
            for name in schema.fields:
                if name in problems:
                    self.structural_finding(problems[name], 1, name)
                    return
            path, rule = next(iter(problems.items()))  # pragma: no cover - defensive
            self.structural_finding(rule, 1, path)
            return
        # A count mismatch (a truncated file) is reported only if no line has a more precise
        # finding: "line 9 is not valid JSON" tells the partner more than "count mismatch".
        self.count_mismatch = header.records != after
        self.header = header

    # -- records --------------------------------------------------------------------------

    def load_record(
        self, line: int, line_type: str, value: dict[str, Any], line_schema: LineSchema
    ) -> None:
        schema = line_schema.schema
        schema.line = line
        errors: list[RecordError] = []
        record = None
        try:
            # A record that breaks no rule is loaded by the fields themselves; any other
            # goes through marshmallow, which words every message.
            record = schema.load_valid(value)
            if record is None:
                record = schema.load(value)
        except ValidationError as error:
            errors.extend(
                RecordError(line, field_name, rule)
                for field_name, rule in self.describe(schema, value, error)
            )
        duplicate = self.check_duplicate(line, line_type, value)
        if duplicate is not None:
            errors.append(duplicate)
        if errors:
            self.rejected.extend(errors)
        else:
            self.records[line_type].append(record)

    def check_duplicate(
        self, line: int, line_type: str, value: dict[str, Any]
    ) -> RecordError | None:
        """A key seen on an earlier line of the same type rejects this (later) record, even if
        the earlier record was itself rejected: which of the two is right is unknowable."""
        if line_type == "child":
            field_name, key = "ref", value.get("ref")
            rule = "ref is used by an earlier child line in this batch"
        elif line_type == "update":
            field_name, key = "id", value.get("id")
            rule = "id is used by an earlier update line in this batch"
        elif line_type == "exit":
            field_name, key = "child", value.get("child")
            rule = "child has an earlier exit line in this batch"
        else:
            home, period = value.get("home"), value.get("period")
            field_name = "period"
            key = (home, period) if type(home) is str and type(period) is str else None
            rule = "home and period are used by an earlier home_stats line in this batch"
        if key is None or (type(key) is not str and type(key) is not tuple):
            return None  # the field itself is missing or malformed: already a record error
        seen = self.seen[line_type]
        earlier = seen.get(key)
        if earlier is None:
            seen[key] = line
            return None
        return RecordError(line, field_name, f"{rule} (line {earlier})")

    def describe(
        self, schema: Any, value: dict[str, Any], error: ValidationError
    ) -> list[tuple[str | None, str]]:
        """Turn marshmallow's messages into (field, rule text) pairs with no values in them.

        A message we wrote (RULE_TEXTS) is used as it is; any other message (marshmallow's
        "may not be null", "invalid input type", ...) is replaced by the field's rule text, or
        "<field> is required" when the key is absent.
        """
        found: list[tuple[str | None, str]] = []
        for path, messages in _flatten(error.messages):
            if path and path[-1] == "_schema":
                path = path[:-1]
            field_name = ".".join(path) or None
            written = [m for m in messages if isinstance(m, str) and m in RULE_TEXTS]
            rule: str | None
            if written:
                rule = written[0]
            elif path and is_required(schema, path) and not _is_present(value, path):
                rule = f"{field_name} is required"
            else:
                rule = rule_for(schema, path) if path else None
                if rule is None:
                    # Not one of ours and not a contract field: marshmallow's own unknown-key
                    # check fired, which scan_keys() should have caught first. Fail closed.
                    raise UnknownFieldRejected([(schema.line, _UNPRINTABLE_KEY)], [0])
            found.append((field_name, rule))
        return found

    # -- result ---------------------------------------------------------------------------

    def finish(self, digest: str, line_count: int) -> ParsedFeed:
        if self.unknown:
            raise UnknownFieldRejected(self.unknown, self.unknown_positions)
        if self.structural is not None:
            raise self.structural
        if self.count_mismatch:
            raise BatchRejected(
                "records must equal the number of lines after the header "
                "(the file may be truncated)",
                1,
                "records",
            )
        if self.header is None:  # pragma: no cover - every path without a header is structural
            raise BatchRejected("the first line must be the header", 1, "type")
        return ParsedFeed(
            header=self.header,
            children=self.records["child"],
            updates=self.records["update"],
            home_stats=self.records["home_stats"],
            exits=self.records["exit"],
            rejected=self.rejected,
            sha256=digest,
            line_count=line_count,
        )


def parse_feed(raw: bytes, settings: FeedSettings) -> ParsedFeed:
    """Parse one batch. Raises FeedError (BatchRejected, UnknownFieldRejected) if the whole
    batch is rejected; otherwise returns the valid records and the per-record rejections."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise TypeError("parse_feed() takes the raw bytes of the batch")
    raw = bytes(raw)
    if len(raw) > settings.max_bytes:
        raise BatchRejected(f"the file is larger than the limit of {settings.max_bytes} bytes")
    if not raw:
        raise BatchRejected("the file is empty")
    if raw.startswith(_UTF8_BOM):
        # RFC 8259 says senders MUST NOT add a byte order mark. The partner's exporter is a
        # program bound by this contract; a BOM suggests the file went through a desktop
        # editor or spreadsheet, i.e. was handled by hand after sanitizing.
        raise BatchRejected("the file starts with a byte order mark; send plain UTF-8", 1)
    digest = hashlib.sha256(raw).hexdigest()

    lines = raw.split(b"\n")  # never splitlines(): it also splits on \x0b, \x1c, U+2028, ...
    if lines[-1] == b"":
        lines.pop()  # the terminator of the last line, not an empty line
    parser = _BatchParser(settings)
    parser.parse_lines(lines)
    return parser.finish(digest, len(lines))
