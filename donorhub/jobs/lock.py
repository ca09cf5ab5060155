"""One scheduler at a time: a PostgreSQL advisory lock, or a file lock beside a SQLite file."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import NullPool


class SchedulerLock:
    """Held for the life of the scheduler process; the OS or server frees it if we die."""

    def __init__(self, database_url: str, lock_id: int, instance_dir: str) -> None:
        self.database_url = database_url
        self.lock_id = lock_id
        self.instance_dir = instance_dir
        self._connection: Connection | None = None
        self._file: IO[str] | None = None

    def acquire(self) -> bool:
        url = make_url(self.database_url)
        if url.get_backend_name() == "postgresql":
            # NullPool: a pooled connection "closed" back to the pool would keep the lock.
            engine = create_engine(url, poolclass=NullPool)
            connection = engine.connect()
            granted = connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": self.lock_id}
            ).scalar()
            connection.commit()
            if not granted:
                connection.close()
                return False
            self._connection = connection
            return True
        path = self.lock_path(url.database)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 - held open for the process's life
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle
        return True

    def keep(self) -> bool:
        """Whether we still hold the lock, taking it again if our connection was lost.

        A session-level advisory lock lives exactly as long as its connection. When
        PostgreSQL restarts (or a failover or network cut ends the session) the lock is
        gone without a word to us, and a second jobs process could take it: so the
        scheduler asks here every few seconds. False: another process holds it now, and
        this one must stop. While the database is unreachable we still count as the holder
        (no job of ours can run then either) and try again next time.
        """
        if self._file is not None:
            return True  # a file lock lasts as long as this process
        if self._connection is not None:
            try:
                self._connection.execute(text("SELECT 1")).scalar()
                self._connection.commit()
                return True
            except Exception:  # the session, and with it the lock, is gone
                try:
                    self._connection.close()
                except Exception:  # noqa: S110 - closing a dead connection may fail too
                    pass
                self._connection = None
        try:
            return self.acquire()
        except Exception:  # the database is still away: try again at the next check
            return True

    def lock_path(self, database: str | None) -> Path:
        if database and database != ":memory:":
            return Path(database + ".jobs.lock")
        return Path(self.instance_dir) / "jobs.lock"

    def release(self) -> None:
        if self._connection is not None:
            try:
                self._connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": self.lock_id}
                )
                self._connection.close()
            except Exception:  # noqa: S110 - the session is gone, and its lock with it
                pass
            self._connection = None
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
