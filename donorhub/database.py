"""The declarative base, shared column types, the one check of a status move, and the
unit-of-work helper for jobs and CLI."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, ClassVar, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import DateTime, MetaData, Table, TypeDecorator, event
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, registry

from donorhub.errors import IllegalTransition

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


#: The charity's own zone, for calendar dates.
UK = ZoneInfo("Europe/London")


def utcnow() -> datetime:
    return datetime.now(UTC)


def uk_today() -> date:
    """Today's date in the charity's own zone (Europe/London): HMRC's tax year, a campaign's
    dates and a gift's received-on date are UK dates, whatever the server's zone."""
    return datetime.now(UK).date()


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    SQLite has no time zones, so values are stored as naive UTC and handed back aware; a naive
    value coming in is a programming error, because its zone would be a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    # One registry carries both, because Flask-SQLAlchemy subclasses this base.
    registry = registry(
        metadata=MetaData(naming_convention=NAMING_CONVENTION),
        type_annotation_map={datetime: UTCDateTime()},
    )

    if TYPE_CHECKING:
        # Every model here is mapped to a Table (none to a join or a select).
        __table__: ClassVar[Table]


Status = TypeVar("Status")


def check_move(
    moves: Mapping[Status, Collection[Status]], current: Status, target: Status, what: str
) -> None:
    """Every status field moves only along its table of moves: anything else is a bug (or a
    stale event) that must not be written. `what` names the row, e.g. "refund 7"."""
    if target not in moves[current]:
        raise IllegalTransition(f"{what}: {current} -> {target}")


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """WAL lets readers work during a write; SQLite leaves foreign keys off unless asked."""
    module = type(dbapi_connection).__module__
    if not module.startswith("sqlite3"):
        return
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


@contextmanager
def unit_of_work() -> Iterator[None]:
    """Commit once when the block succeeds; roll everything back when it raises.

    Jobs and CLI commands are edges, like views: this is their single commit point.
    """
    from donorhub.extensions import db

    try:
        yield
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
