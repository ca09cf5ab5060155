"""The simulator's state: a SQLite file (or ``:memory:``) holding JSON blobs.

A file lets the state survive a restart of ``make run`` and lets other processes drive the
simulator through its HTTP control endpoints. One connection guarded by one re-entrant lock
serialises every unit of work: the simulator is a development tool, and serial execution
makes its behaviour easy to reason about under werkzeug's threaded server.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- Every Stripe object. ``private`` holds simulator-only state (never returned by the API);
-- ``parent`` links e.g. an invoice payment to its invoice; ``open_until`` is set only on
-- open Checkout Sessions so that the expiry sweep is an index lookup.
CREATE TABLE IF NOT EXISTS objects (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    created INTEGER NOT NULL,
    data TEXT NOT NULL,
    private TEXT NOT NULL DEFAULT '{}',
    parent TEXT,
    open_until INTEGER
);
CREATE INDEX IF NOT EXISTS objects_parent ON objects (parent);
CREATE INDEX IF NOT EXISTS objects_open_until ON objects (open_until);
-- ``seq`` is the order of creation: /v1/events lists by it and webhooks go out by it.
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    created INTEGER NOT NULL,
    data TEXT NOT NULL,
    delivery TEXT NOT NULL,          -- pending | delivered | failed | not_sent
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS events_delivery ON events (delivery, seq);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS request_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    query TEXT NOT NULL,
    idempotency_key TEXT,
    status INTEGER,
    outcome TEXT
);
CREATE TABLE IF NOT EXISTS faults (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    path_prefix TEXT NOT NULL,
    method TEXT,
    status INTEGER,
    remaining INTEGER NOT NULL,
    delay_seconds REAL NOT NULL DEFAULT 0,
    saved INTEGER NOT NULL DEFAULT 0,
    hold TEXT,
    hold_at TEXT NOT NULL DEFAULT 'call'
);
"""

_EVENTS_WHERE = """
SELECT data FROM events
WHERE (:before IS NULL OR seq < :before) AND (:after IS NULL OR seq > :after)
  AND (:gt IS NULL OR created > :gt) AND (:gte IS NULL OR created >= :gte)
  AND (:lt IS NULL OR created < :lt) AND (:lte IS NULL OR created <= :lte)
  AND (:types IS NULL OR EXISTS (
        SELECT 1 FROM json_each(:types) AS wanted
        WHERE events.type = wanted.value
           OR (wanted.value LIKE '%.*'
               AND substr(events.type, 1, length(wanted.value) - 1)
                   = substr(wanted.value, 1, length(wanted.value) - 1))))
"""
_EVENTS_DOWN = _EVENTS_WHERE + "ORDER BY seq DESC LIMIT :limit"
_EVENTS_UP = _EVENTS_WHERE + "ORDER BY seq ASC LIMIT :limit"

REQUEST_LOG_LIMIT = 1000
IDEMPOTENCY_TTL_SECONDS = 24 * 3600  # Stripe keeps keys for at least 24 hours


@dataclass
class StoredObject:
    id: str
    type: str
    data: dict[str, Any]
    private: dict[str, Any]


@dataclass
class Fault:
    seq: int
    path_prefix: str
    method: str | None
    status: int | None
    delay_seconds: float
    #: The error happened after execution began: like Stripe, save it under the request's
    #: idempotency key, so a retry with that key gets the same error back (for 24 hours).
    saved: bool = False
    hold: str | None = None
    hold_at: str = "call"  # "call": before it runs; "answer": after its effect, unanswered


def _inserted_rowid(cursor: sqlite3.Cursor) -> int:
    """The rowid of the row an INSERT just made (sqlite3 types lastrowid as optional)."""
    if cursor.lastrowid is None:
        raise sqlite3.InterfaceError("the INSERT made no row")
    return cursor.lastrowid


class Store:
    def __init__(self, path: str = ":memory:") -> None:
        self.path = path
        self._lock = threading.RLock()
        self._depth = 0
        self._conn = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=10
        )
        self._conn.row_factory = sqlite3.Row
        if path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(_SCHEMA)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(faults)")}
        if "saved" not in columns:  # a store file written before saved faults existed
            self._conn.execute("ALTER TABLE faults ADD COLUMN saved INTEGER NOT NULL DEFAULT 0")
        if "hold" not in columns:  # a store file written before holds existed
            self._conn.execute("ALTER TABLE faults ADD COLUMN hold TEXT")
            self._conn.execute("ALTER TABLE faults ADD COLUMN hold_at TEXT NOT NULL DEFAULT 'call'")
        self._conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
            (SCHEMA_VERSION,),
        )

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """One atomic unit of work; nested calls join the outer transaction."""
        with self._lock:
            if self._depth == 0:
                self._conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self
            except BaseException:
                self._depth -= 1
                if self._depth == 0:
                    self._conn.execute("ROLLBACK")
                raise
            self._depth -= 1
            if self._depth == 0:
                self._conn.execute("COMMIT")

    def _execute(self, sql: str, params: tuple | dict = ()) -> sqlite3.Cursor:
        """Run a statement; read lastrowid/rowcount only inside the caller's transaction."""
        with self._lock:
            return self._conn.execute(sql, params)

    def _query(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        # Fetch under the lock: the one connection is shared by the server's threads.
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _one(self, sql: str, params: tuple | dict = ()) -> sqlite3.Row | None:
        rows = self._query(sql, params)
        return rows[0] if rows else None

    # --- objects -------------------------------------------------------------------------

    def get(self, object_id: str) -> StoredObject | None:
        row = self._one("SELECT id, type, data, private FROM objects WHERE id = ?", (object_id,))
        if row is None:
            return None
        return StoredObject(
            row["id"], row["type"], json.loads(row["data"]), json.loads(row["private"])
        )

    def save(
        self,
        obj: dict[str, Any],
        *,
        private: dict[str, Any] | None = None,
        parent: str | None = None,
        open_until: int | None = None,
    ) -> None:
        """Insert or replace ``obj``; ``private=None`` keeps the stored private state."""
        with self.transaction():
            existing = self._one("SELECT private, parent FROM objects WHERE id = ?", (obj["id"],))
            if private is None:
                private = json.loads(existing["private"]) if existing else {}
            if parent is None and existing is not None:
                parent = existing["parent"]
            self._execute(
                "INSERT OR REPLACE INTO objects (id, type, created, data, private, parent,"
                " open_until) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    obj["id"],
                    obj["object"],
                    obj.get("created") or int(time.time()),
                    json.dumps(obj),
                    json.dumps(private),
                    parent,
                    open_until,
                ),
            )

    def children(self, parent: str, object_type: str) -> list[StoredObject]:
        rows = self._query(
            "SELECT id, type, data, private FROM objects WHERE parent = ? AND type = ?"
            " ORDER BY created DESC, rowid DESC",
            (parent, object_type),
        )
        return [
            StoredObject(r["id"], r["type"], json.loads(r["data"]), json.loads(r["private"]))
            for r in rows
        ]

    def of_type(self, object_type: str, where_customer: str | None = None) -> list[StoredObject]:
        rows = self._query(
            "SELECT id, type, data, private FROM objects WHERE type = ? ORDER BY rowid",
            (object_type,),
        )
        found = [
            StoredObject(r["id"], r["type"], json.loads(r["data"]), json.loads(r["private"]))
            for r in rows
        ]
        if where_customer is not None:
            found = [o for o in found if o.data.get("customer") == where_customer]
        return found

    def open_sessions_due(self, now: int) -> list[str]:
        rows = self._query(
            "SELECT id FROM objects WHERE open_until IS NOT NULL AND open_until <= ?", (now,)
        )
        return [r["id"] for r in rows]

    # --- events --------------------------------------------------------------------------

    def add_event(self, event: dict[str, Any], *, deliver: bool) -> None:
        self._execute(
            "INSERT INTO events (id, type, created, data, delivery) VALUES (?, ?, ?, ?, ?)",
            (
                event["id"],
                event["type"],
                event["created"],
                json.dumps(event),
                "pending" if deliver else "not_sent",
            ),
        )

    def get_event(self, event_id: str) -> dict[str, Any] | None:
        row = self._one("SELECT data FROM events WHERE id = ?", (event_id,))
        return json.loads(row["data"]) if row else None

    def event_seq(self, event_id: str) -> int | None:
        row = self._one("SELECT seq FROM events WHERE id = ?", (event_id,))
        return row["seq"] if row else None

    def list_events(
        self,
        *,
        limit: int,
        before_seq: int | None,
        after_seq: int | None,
        created: dict[str, int | None],
        types: list[str],
    ) -> tuple[list[dict[str, Any]], bool]:
        """Newest first, like Stripe. Returns (page, has_more).

        ``types`` may end in ``.*`` (``invoice.*``). The SQL is fixed text with optional
        parameters, so nothing from the request is ever spliced into it.
        """
        created_params = [created.get(op) for op in ("gt", "gte", "lt", "lte")]
        params = {
            "before": before_seq,
            "after": after_seq,
            "gt": created_params[0],
            "gte": created_params[1],
            "lt": created_params[2],
            "lte": created_params[3],
            "types": json.dumps(types) if types else None,
            "limit": limit + 1,
        }
        # ending_before pages towards newer events, so read upwards and flip.
        upwards = after_seq is not None and before_seq is None
        rows = self._query(_EVENTS_UP if upwards else _EVENTS_DOWN, params)
        page = [json.loads(r["data"]) for r in rows[:limit]]
        if upwards:
            page.reverse()
        return page, len(rows) > limit

    def next_pending_event(self) -> tuple[int, str, int] | None:
        """(seq, payload, attempts) of the oldest event still waiting for its webhook."""
        row = self._one(
            "SELECT seq, data, attempts FROM events WHERE delivery = 'pending' ORDER BY seq LIMIT 1"
        )
        return (row["seq"], row["data"], row["attempts"]) if row else None

    def record_delivery(self, seq: int, *, delivery: str, attempts: int, error: str | None):
        with self.transaction():
            self._execute(
                "UPDATE events SET delivery = ?, attempts = ?, last_error = ? WHERE seq = ?",
                (delivery, attempts, error, seq),
            )

    def requeue_event(self, event_id: str) -> bool:
        with self.transaction():
            cur = self._execute(
                "UPDATE events SET delivery = 'pending', attempts = 0, last_error = NULL"
                " WHERE id = ?",
                (event_id,),
            )
            return cur.rowcount == 1

    def deliveries(self, since_seq: int = 0) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT seq, id, type, delivery, attempts, last_error FROM events WHERE seq > ?"
            " ORDER BY seq",
            (since_seq,),
        )
        return [dict(r) for r in rows]

    # --- idempotency ---------------------------------------------------------------------

    def get_idempotent(self, key: str) -> sqlite3.Row | None:
        return self._one(
            "SELECT request_hash, method, path, status, body FROM idempotency_keys"
            " WHERE key = ? AND created > ?",
            (key, int(time.time()) - IDEMPOTENCY_TTL_SECONDS),
        )

    def put_idempotent(
        self, key: str, *, request_hash: str, method: str, path: str, status: int, body: str
    ) -> None:
        self._execute(
            "INSERT OR REPLACE INTO idempotency_keys"
            " (key, request_hash, method, path, status, body, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key, request_hash, method, path, status, body, int(time.time())),
        )

    # --- request log ---------------------------------------------------------------------

    def log_request(self, method: str, path: str, query: str, idempotency_key: str | None) -> int:
        with self.transaction():
            cur = self._execute(
                "INSERT INTO request_log (at, method, path, query, idempotency_key)"
                " VALUES (?, ?, ?, ?, ?)",
                (time.time(), method, path, query, idempotency_key),
            )
            seq = _inserted_rowid(cur)
            self._execute("DELETE FROM request_log WHERE seq <= ?", (seq - REQUEST_LOG_LIMIT,))
            return seq

    def finish_request(self, seq: int, status: int, outcome: str) -> None:
        with self.transaction():
            self._execute(
                "UPDATE request_log SET status = ?, outcome = ? WHERE seq = ?",
                (status, outcome, seq),
            )

    def requests(self, path_prefix: str = "") -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT seq, at, method, path, query, idempotency_key, status, outcome"
            " FROM request_log WHERE substr(path, 1, ?) = ? ORDER BY seq",
            (len(path_prefix), path_prefix),
        )
        return [dict(r) for r in rows]

    # --- faults --------------------------------------------------------------------------

    def add_fault(
        self,
        *,
        path_prefix: str,
        method: str | None,
        status: int | None,
        times: int,
        delay_seconds: float,
        saved: bool = False,
        hold: str | None = None,
        hold_at: str = "call",
    ) -> int:
        with self.transaction():
            cur = self._execute(
                "INSERT INTO faults (path_prefix, method, status, remaining, delay_seconds,"
                " saved, hold, hold_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (path_prefix, method, status, times, delay_seconds, int(saved), hold, hold_at),
            )
            return _inserted_rowid(cur)

    def take_fault(self, method: str, path: str) -> Fault | None:
        """Consume one use of the oldest fault that matches this request, if any."""
        with self.transaction():
            row = self._one(
                "SELECT seq, path_prefix, method, status, delay_seconds, saved, hold, hold_at"
                " FROM faults"
                " WHERE remaining > 0 AND substr(?, 1, length(path_prefix)) = path_prefix"
                " AND (method IS NULL OR method = ?) ORDER BY seq LIMIT 1",
                (path, method),
            )
            if row is None:
                return None
            self._execute(
                "UPDATE faults SET remaining = remaining - 1 WHERE seq = ?", (row["seq"],)
            )
            self._execute("DELETE FROM faults WHERE remaining <= 0")
            return Fault(
                row["seq"],
                row["path_prefix"],
                row["method"],
                row["status"],
                row["delay_seconds"],
                bool(row["saved"]),
                row["hold"],
                row["hold_at"],
            )

    def faults(self) -> list[dict[str, Any]]:
        rows = self._query("SELECT * FROM faults ORDER BY seq")
        return [dict(r) for r in rows]

    def clear_faults(self) -> None:
        with self.transaction():
            self._execute("DELETE FROM faults")

    # --- housekeeping --------------------------------------------------------------------

    def reset(self) -> None:
        with self.transaction():
            self._execute("DELETE FROM objects")
            self._execute("DELETE FROM events")
            self._execute("DELETE FROM idempotency_keys")
            self._execute("DELETE FROM request_log")
            self._execute("DELETE FROM faults")
