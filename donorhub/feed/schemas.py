"""Marshmallow schemas for the five line types of partner feed contract version 1.

The schemas validate one already-decoded JSON object each and return frozen dataclasses.
They are strict on purpose: no value is coerced ("12" is not 12, 1 is not true, true is not 1)
because a lenient parser hides a broken exporter, and a broken exporter is how identifying data
leaks in.

Every error message raised here is a rule text written in this module. None of them contains
the value that failed: a rejected value may be the very identifier that must not spread. The
parser (parse.py) reports only these texts; `RULE_TEXTS` lets it recognise them.

Schema classes are declared once. `build_schemas()` makes one instance per line type for each
batch, because a few rules depend on the configured settings (partner code, home codes,
today's date); never one per line, which would make parsing slow.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validates_schema

from donorhub.children import vocab
from donorhub.children.periods import EARLIEST_YEAR, Quarter, parse_quarter, quarter_of

if TYPE_CHECKING:  # pragma: no cover - typing only; parse.py imports this module
    from .parse import FeedSettings

# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedHeader:
    line: int
    feed_version: int
    partner: str
    batch: str
    generated: datetime  # timezone-aware, UTC
    records: int


@dataclass(frozen=True, slots=True)
class Consent:
    profile: bool
    updates: bool
    basis: str
    expires: Quarter  # consent lapses at the END of this quarter; the importer decides


@dataclass(frozen=True, slots=True)
class ChildRecord:
    line: int
    ref: str  # the partner's pseudonym: hash it, never store or show it in clear
    home: str
    age_band: str
    gender: str
    region: str
    stage: str
    joined_year: int
    interests: tuple[str, ...]
    consent: Consent
    about: str | None  # untrusted free text: must pass the PII guard


@dataclass(frozen=True, slots=True)
class UpdateRecord:
    line: int
    id: str
    child: str | None  # exactly one of child / home is set
    home: str | None
    period: Quarter
    category: str
    milestones: tuple[str, ...]
    text: str | None  # untrusted free text: must pass the PII guard


@dataclass(frozen=True, slots=True)
class HomeStatsRecord:
    line: int
    home: str
    period: Quarter
    children_in_care: int
    in_school: int
    in_vocational_training: int
    reintegrated: int
    new_arrivals: int


@dataclass(frozen=True, slots=True)
class ExitRecord:
    line: int
    child: str
    period: Quarter


# ---------------------------------------------------------------------------------------------
# Rule texts
# ---------------------------------------------------------------------------------------------

RULE_TEXTS: set[str] = set()


def _rule(text: str) -> str:
    """Register a rule text, so the parser can tell our texts from marshmallow's defaults."""
    RULE_TEXTS.add(text)
    return text


def _listing(values: Any) -> str:
    return ", ".join(values)


# Printable ASCII patterns. fullmatch() is used everywhere: `$` would let a trailing "\n" in.
REF_RE = re.compile(r"[A-Za-z0-9_-]{8,64}")
UPDATE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
# The batch id may end up in a file name or a log line, so it may not start with "." (no
# hidden files, no "." or ".." path segments); the contract's character set is otherwise kept.
BATCH_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")
TIMESTAMP_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|\+00:00)"
)

MAX_COUNT = 100_000  # per home; generous, and keeps every count inside a 32-bit column
ABOUT_MAX = 280
TEXT_MAX = 600

# Characters refused in free text. Control characters (including tab and newline: the texts
# are single short paragraphs), lone surrogates (they cannot be stored as UTF-8), private-use
# characters, line/paragraph separators, and format characters such as bidirectional
# overrides (they can make a text display differently from what the PII guard reads).
# Zero-width (non-)joiners are format characters too, but Indic scripts need them to spell
# words correctly, so they stay.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Co", "Cf", "Zl", "Zp"})
_ALLOWED_FORMAT_CHARACTERS = frozenset({"\u200c", "\u200d"})


def _is_plain_text(text: str) -> bool:
    if text.isprintable():  # fast path: the C-level check refuses every Cc/Cf/Cs/Co/Z* char
        return True
    category = unicodedata.category
    for char in text:
        if char == " " or char in _ALLOWED_FORMAT_CHARACTERS:
            continue
        if category(char) in _REFUSED_CATEGORIES:
            return False
        # str.isprintable() also refuses Zs spaces other than " " (e.g. no-break space) and
        # unassigned code points; those are harmless in plain text, so they are accepted.
    return True


# ---------------------------------------------------------------------------------------------
# Fields: each one owns exactly one rule text and raises only that text
# ---------------------------------------------------------------------------------------------


class RuleField(fields.Field):
    """A field whose only error message is its rule text (never the offending value)."""

    def __init__(self, rule: str, **kwargs: Any) -> None:
        self.rule = _rule(rule)
        super().__init__(**kwargs)

    def fail(self) -> ValidationError:
        return ValidationError(self.rule)


class Literal(RuleField):
    def __init__(self, expected: str, rule: str, **kwargs: Any) -> None:
        self.expected = expected
        super().__init__(rule, **kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        if type(value) is not str or value != self.expected:
            raise self.fail()
        return value


class StrictInteger(RuleField):
    """A JSON integer within [minimum, maximum]. Refuses bool (a Python int), float, str."""

    def __init__(
        self,
        rule: str,
        minimum: int | None = None,
        maximum: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.minimum = minimum
        self.maximum = maximum
        super().__init__(rule, **kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> int:
        if type(value) is not int:
            raise self.fail()
        if self.minimum is not None and value < self.minimum:
            raise self.fail()
        if self.maximum is not None and value > self.maximum:
            raise self.fail()
        return value


class StrictBoolean(RuleField):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if type(value) is not bool:
            raise self.fail()
        return value


class Token(RuleField):
    """A string matching a fixed ASCII pattern."""

    def __init__(self, pattern: re.Pattern[str], rule: str, **kwargs: Any) -> None:
        self.pattern = pattern
        super().__init__(rule, **kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        if type(value) is not str or self.pattern.fullmatch(value) is None:
            raise self.fail()
        return value


class Choice(RuleField):
    """A string from a closed set (the type check comes first: lists are not hashable)."""

    def __init__(self, choices: frozenset[str], rule: str, **kwargs: Any) -> None:
        self.choices = choices
        super().__init__(rule, **kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        if type(value) is not str or value not in self.choices:
            raise self.fail()
        return value


class CodeList(RuleField):
    """A JSON array of 0..max_items distinct codes from a closed set, loaded as a tuple."""

    def __init__(self, choices: frozenset[str], max_items: int, rule: str, **kwargs: Any):
        self.choices = choices
        self.max_items = max_items
        super().__init__(rule, **kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> tuple[str, ...]:
        if type(value) is not list or len(value) > self.max_items:
            raise self.fail()
        for item in value:
            if type(item) is not str or item not in self.choices:
                raise self.fail()
        if len(set(value)) != len(value):
            raise self.fail()
        return tuple(value)


class QuarterField(RuleField):
    """A quarter "YYYY-Qn" from EARLIEST_YEAR on, optionally not after a given quarter."""

    def __init__(self, rule: str, latest: Quarter | None = None, **kwargs: Any) -> None:
        self.latest = latest
        super().__init__(rule, **kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Quarter:
        try:
            quarter = parse_quarter(value)
        except ValueError:
            raise self.fail() from None
        if quarter.year < EARLIEST_YEAR:
            raise self.fail()
        if self.latest is not None and quarter > self.latest:
            raise self.fail()
        return quarter


class PlainText(RuleField):
    """Optional free text: a string of at most max_chars code points, without control or
    format characters. Absent, null, empty and all-blank all load as None (nothing to show).
    The text is NOT cleared for publication here: the PII guard and a safeguarding officer
    decide that. HTML is not refused: it is plain text, and templates escape it."""

    def __init__(self, max_chars: int, rule: str, **kwargs: Any) -> None:
        self.max_chars = max_chars
        kwargs.setdefault("load_default", None)
        kwargs.setdefault("allow_none", True)
        super().__init__(rule, **kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str | None:
        if type(value) is not str or len(value) > self.max_chars or not _is_plain_text(value):
            raise self.fail()
        if not value.strip():
            return None
        return value


class Timestamp(RuleField):
    """An ISO 8601 UTC timestamp with "Z" or "+00:00", loaded as an aware datetime."""

    def __init__(self, rule: str, latest: datetime | None = None, **kwargs: Any) -> None:
        self.latest = latest
        super().__init__(rule, **kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> datetime:
        if type(value) is not str or TIMESTAMP_RE.fullmatch(value) is None:
            raise self.fail()
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:  # e.g. month 13
            raise self.fail() from None
        moment = moment.astimezone(UTC)
        if self.latest is not None and moment > self.latest:
            raise self.fail()
        return moment


# ---------------------------------------------------------------------------------------------
# Schemas
# ---------------------------------------------------------------------------------------------

UPDATE_NAMES_ONE_SUBJECT = _rule("an update must name exactly one of child or home")
UPDATE_HAS_CONTENT = _rule("an update must carry at least one milestone or a text")
STATS_SUBSETS_FIT = _rule("in_school + in_vocational_training must not exceed children_in_care")
REGION_MATCHES_HOME = _rule(
    "region must be the state or union territory of the child's home, as configured"
)
CONSENT_RULE = _rule("consent must be an object with profile, updates, basis and expires")


_F = TypeVar("_F", bound=fields.Field)


class StrictSchema(Schema):
    """Base: any key outside the schema is an error, never silently dropped.

    Classes are declared once; an instance is bound to one batch's settings by `configure()`
    (marshmallow copies the declared fields into each instance, so binding is per instance).
    """

    class Meta:
        unknown = RAISE

    def __init__(self, settings: FeedSettings) -> None:
        super().__init__()
        self.settings = settings
        # The line being loaded, set by the parser before each load(); post_load stamps it
        # on the record. A batch is parsed by one thread with its own instances.
        self.line = 0
        self.configure(settings)

    def configure(self, settings: FeedSettings) -> None:
        """Bind the rules that depend on configuration or on today's date."""

    #: The names of this schema's @validates_schema methods, for `load_valid`.
    record_rules: tuple[str, ...] = ()

    def load_valid(self, value: dict[str, Any]) -> Any | None:
        """What `load(value)` returns, computed with the same fields, rules and post_load but
        without marshmallow's machinery, when `value` breaks no rule; None otherwise (and for
        anything unusual), so the caller calls `load` for the messages. Never raises."""
        try:
            data = _load_fields(self, value)
            if data is None:
                return None
            for name in self.record_rules:
                getattr(self, name)(data)
            return self.make_record(data)
        except Exception:  # noqa: BLE001 - any doubt goes to load(), which decides
            return None

    def make_record(self, data: dict[str, Any], **kwargs: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def _declared(self, name: str, kind: type[_F]) -> _F:
        """This instance's copy of a declared field, as the type it was declared with."""
        field = self.fields[name]
        if not isinstance(field, kind):
            raise TypeError(f"{name} is not a {kind.__name__}")
        return field

    def _bind_homes(self, settings: FeedSettings, *names: str) -> None:
        for name in names:
            self._declared(name, Choice).choices = frozenset(settings.homes)

    def _bind_current_quarter(self, settings: FeedSettings) -> None:
        self._declared("period", QuarterField).latest = quarter_of(settings.today)


def _load_fields(schema: Schema, value: Any) -> dict[str, Any] | None:
    """Each field of `schema` loaded by its own `_deserialize`, as marshmallow's load would
    (absent: its load_default; null: None where allowed), or None when any field is
    missing, null where not allowed, broken, or has validators of its own; or when `value`
    holds a key outside the schema."""
    if type(value) is not dict or not schema.fields.keys() >= value.keys():
        return None
    data: dict[str, Any] = {}
    for name, field in schema.fields.items():
        if field.validators:
            return None
        if name not in value:
            if field.required or field.load_default is not None:
                return None
            data[name] = None
            continue
        raw = value[name]
        if raw is None:
            if not field.allow_none:
                return None
            data[name] = None
        elif isinstance(field, fields.Nested):
            nested = field.schema
            loaded = _load_fields(nested, raw)
            if loaded is None or not isinstance(nested, ConsentSchema):
                return None
            data[name] = nested.make_record(loaded)
        elif isinstance(field, RuleField):
            data[name] = field._deserialize(raw, name, value)
        else:
            return None
    return data


def _line_type(name: str) -> Literal:
    return Literal(name, f"type must be {name}", required=True)


def _home_field(name: str, **kwargs: Any) -> Choice:
    # Choices are bound per batch from FeedSettings.homes.
    return Choice(frozenset(), f"{name} must be one of the configured home codes", **kwargs)


def _period_field() -> QuarterField:
    # The latest quarter is bound per batch from FeedSettings.today.
    return QuarterField(
        f"period must be a quarter YYYY-Qn from {EARLIEST_YEAR}-Q1 up to the current quarter",
        required=True,
    )


def _child_ref_field(name: str, **kwargs: Any) -> Token:
    return Token(REF_RE, f"{name} must be 8-64 characters of A-Z a-z 0-9 _ -", **kwargs)


def _count_field(name: str) -> StrictInteger:
    return StrictInteger(
        f"{name} must be a whole number from 0 to {MAX_COUNT}",
        minimum=0,
        maximum=MAX_COUNT,
        required=True,
    )


class HeaderSchema(StrictSchema):
    type = _line_type("header")
    feed_version = StrictInteger(
        f"feed_version must be {vocab.FEED_VERSION} (unknown feed version)",
        minimum=vocab.FEED_VERSION,
        maximum=vocab.FEED_VERSION,
        required=True,
    )
    partner = Literal("", "partner must be the partner code configured in DonorHub", required=True)
    batch = Token(
        BATCH_RE,
        "batch must be 1-64 characters of A-Z a-z 0-9 _ . - and not start with '.'",
        required=True,
    )
    generated = Timestamp(
        "generated must be an ISO 8601 UTC timestamp (ending in Z or +00:00), not in the future",
        required=True,
    )
    records = StrictInteger("records must be a non-negative integer", minimum=0, required=True)

    def configure(self, settings: FeedSettings) -> None:
        self._declared("partner", Literal).expected = settings.partner
        # Slack of one day and more: the partner stamps UTC, while `today` may be a local
        # date behind UTC. Only a clock that is clearly wrong is refused.
        tomorrow = settings.today + timedelta(days=2)
        self._declared("generated", Timestamp).latest = datetime.combine(tomorrow, time.min, UTC)

    @post_load
    def make_record(self, data: dict[str, Any], **kwargs: Any) -> FeedHeader:
        del data["type"]
        return FeedHeader(line=self.line, **data)


class ConsentSchema(Schema):
    class Meta:
        unknown = RAISE

    profile = StrictBoolean("consent.profile must be true or false", required=True)
    updates = StrictBoolean("consent.updates must be true or false", required=True)
    basis = Choice(
        vocab.CONSENT_BASES,
        "consent.basis must be one of " + _listing(sorted(vocab.CONSENT_BASES)),
        required=True,
    )
    expires = QuarterField("consent.expires must be a quarter YYYY-Qn", required=True)

    @post_load
    def make_record(self, data: dict[str, Any], **kwargs: Any) -> Consent:
        return Consent(**data)


class ChildSchema(StrictSchema):
    record_rules = ("region_of_home",)
    type = _line_type("child")
    ref = _child_ref_field("ref", required=True)
    home = _home_field("home", required=True)
    age_band = Choice(
        frozenset(vocab.AGE_BANDS),
        "age_band must be one of " + _listing(vocab.AGE_BANDS),
        required=True,
    )
    gender = Choice(vocab.GENDERS, "gender must be one of girl, boy, not_stated", required=True)
    region = Choice(
        vocab.REGIONS,
        "region must be the English name of an Indian state or union territory",
        required=True,
    )
    stage = Choice(
        vocab.STAGES, "stage must be one of " + _listing(sorted(vocab.STAGES)), required=True
    )
    joined_year = StrictInteger(
        f"joined_year must be an integer year from {EARLIEST_YEAR} up to the current year",
        minimum=EARLIEST_YEAR,
        required=True,
    )
    interests = CodeList(
        vocab.INTERESTS,
        vocab.MAX_INTERESTS,
        f"interests must be a list of 0-{vocab.MAX_INTERESTS} distinct codes "
        "from the interests vocabulary",
        required=True,
    )
    consent = fields.Nested(ConsentSchema, required=True)
    about = PlainText(
        ABOUT_MAX,
        f"about must be plain text of at most {ABOUT_MAX} characters, "
        "without control or formatting characters",
    )

    def configure(self, settings: FeedSettings) -> None:
        self._bind_homes(settings, "home")
        self._declared("joined_year", StrictInteger).maximum = settings.today.year

    @validates_schema
    def region_of_home(self, data: dict[str, Any], **kwargs: Any) -> None:
        # The region is that of the safe home, never of origin (origin is T0 data). When the
        # home-to-region map is configured, a region that differs is refused.
        home_regions = self.settings.home_regions
        if home_regions is not None and home_regions.get(data["home"]) != data["region"]:
            raise ValidationError(REGION_MATCHES_HOME, field_name="region")

    @post_load
    def make_record(self, data: dict[str, Any], **kwargs: Any) -> ChildRecord:
        del data["type"]
        return ChildRecord(line=self.line, **data)


class UpdateSchema(StrictSchema):
    record_rules = ("one_subject_and_some_content",)
    type = _line_type("update")
    id = Token(UPDATE_ID_RE, "id must be 1-64 characters of A-Z a-z 0-9 _ -", required=True)
    # Both optional as fields; "exactly one of them" is a record rule below.
    child = _child_ref_field("child", load_default=None)
    home = _home_field("home", load_default=None)
    period = _period_field()
    category = Choice(
        vocab.CATEGORIES,
        "category must be one of " + _listing(sorted(vocab.CATEGORIES)),
        required=True,
    )
    milestones = CodeList(
        vocab.MILESTONES,
        vocab.MAX_MILESTONES,
        f"milestones must be a list of 0-{vocab.MAX_MILESTONES} distinct codes "
        "from the milestones vocabulary",
        required=True,
    )
    text = PlainText(
        TEXT_MAX,
        f"text must be plain text of at most {TEXT_MAX} characters, "
        "without control or formatting characters",
    )

    def configure(self, settings: FeedSettings) -> None:
        self._bind_homes(settings, "home")
        self._bind_current_quarter(settings)

    @validates_schema
    def one_subject_and_some_content(self, data: dict[str, Any], **kwargs: Any) -> None:
        if (data["child"] is None) == (data["home"] is None):
            raise ValidationError(UPDATE_NAMES_ONE_SUBJECT)
        if not data["milestones"] and data["text"] is None:
            raise ValidationError(UPDATE_HAS_CONTENT)

    @post_load
    def make_record(self, data: dict[str, Any], **kwargs: Any) -> UpdateRecord:
        del data["type"]
        return UpdateRecord(line=self.line, **data)


class HomeStatsSchema(StrictSchema):
    record_rules = ("subsets_fit",)
    type = _line_type("home_stats")
    home = _home_field("home", required=True)
    period = _period_field()
    children_in_care = _count_field("children_in_care")
    in_school = _count_field("in_school")
    in_vocational_training = _count_field("in_vocational_training")
    reintegrated = _count_field("reintegrated")
    new_arrivals = _count_field("new_arrivals")

    def configure(self, settings: FeedSettings) -> None:
        self._bind_homes(settings, "home")
        self._bind_current_quarter(settings)

    @validates_schema
    def subsets_fit(self, data: dict[str, Any], **kwargs: Any) -> None:
        # Small-cell suppression treats in_school and in_vocational_training as disjoint parts
        # of children_in_care; if they overlapped, published figures could be differenced.
        # reintegrated and new_arrivals are flows during the quarter, not parts of the head
        # count, so they are not bounded by it.
        if data["in_school"] + data["in_vocational_training"] > data["children_in_care"]:
            raise ValidationError(STATS_SUBSETS_FIT)

    @post_load
    def make_record(self, data: dict[str, Any], **kwargs: Any) -> HomeStatsRecord:
        del data["type"]
        return HomeStatsRecord(line=self.line, **data)


class ExitSchema(StrictSchema):
    # No `reason`: why a child left is T0 data and never crosses (an extra key rejects the batch).
    type = _line_type("exit")
    child = _child_ref_field("child", required=True)
    period = _period_field()

    def configure(self, settings: FeedSettings) -> None:
        self._bind_current_quarter(settings)

    @post_load
    def make_record(self, data: dict[str, Any], **kwargs: Any) -> ExitRecord:
        del data["type"]
        return ExitRecord(line=self.line, **data)


SCHEMA_CLASSES: Mapping[str, type[StrictSchema]] = {
    "header": HeaderSchema,
    "child": ChildSchema,
    "update": UpdateSchema,
    "home_stats": HomeStatsSchema,
    "exit": ExitSchema,
}


class LineSchema(NamedTuple):
    schema: StrictSchema
    keys: frozenset[str]  # every key the contract allows on this line type
    nested_keys: Mapping[str, frozenset[str]]  # allowed keys inside nested objects


def build_schemas(settings: FeedSettings) -> dict[str, LineSchema]:
    """One schema instance per line type, bound to these settings. Call once per batch."""
    built: dict[str, LineSchema] = {}
    for line_type, schema_class in SCHEMA_CLASSES.items():
        schema = schema_class(settings)
        nested = {
            name: frozenset(field.schema.fields)
            for name, field in schema.fields.items()
            if isinstance(field, fields.Nested)
        }
        built[line_type] = LineSchema(schema, frozenset(schema.fields), nested)
    return built


def rule_for(schema: Schema, path: tuple[str, ...]) -> str | None:
    """The rule text of the field at `path`, e.g. ("consent", "basis"), if there is one."""
    current: Schema = schema
    for depth, name in enumerate(path):
        field = current.fields.get(name)
        if field is None:
            return None
        if depth == len(path) - 1:
            if isinstance(field, RuleField):
                return field.rule
            if isinstance(field, fields.Nested) and name == "consent":
                return CONSENT_RULE
            return None
        if not isinstance(field, fields.Nested):
            return None
        current = field.schema
    return None


def is_required(schema: Schema, path: tuple[str, ...]) -> bool:
    current: Schema = schema
    field: fields.Field | None = None
    for name in path:
        field = current.fields.get(name)
        if field is None:
            return False
        if isinstance(field, fields.Nested):
            current = field.schema
    return bool(field is not None and field.required)
