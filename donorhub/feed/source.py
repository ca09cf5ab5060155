"""Where batches come from: a drop directory, or the partner's HTTPS endpoint."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class SourceError(Exception):
    """The source could not be read; the message says why, without any feed content."""


@dataclass
class FeedFile:
    name: str
    raw: bytes
    path: Path | None = field(default=None)
    #: Larger than FEED_MAX_BYTES: not read at all, rejected as a whole.
    oversized: bool = False

    def discard(self) -> None:
        """Delete the file: after import the database holds what is needed, and a copy of
        child data lying on disk is one more thing to leak."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)


class FeedSource(Protocol):
    label: str

    def batches(self) -> Iterator[FeedFile]: ...


@dataclass
class DropDirectorySource:
    directory: Path
    max_bytes: int
    label: str = "drop-directory"
    #: The configured drop directory is consumed; a folder named on the command line is not.
    delete_processed: bool = True

    def batches(self) -> Iterator[FeedFile]:
        if not self.directory.is_dir():
            raise SourceError(f"The drop directory {self.directory} does not exist.")
        for path in sorted(self.directory.glob("*.jsonl")):
            owned = path if self.delete_processed else None
            if path.stat().st_size > self.max_bytes:
                yield FeedFile(path.name, b"", owned, oversized=True)
                continue
            yield FeedFile(path.name, path.read_bytes(), owned)


@dataclass
class HttpsSource:
    url: str
    token: str
    timeout: float
    max_bytes: int
    label: str = "https"

    def batches(self) -> Iterator[FeedFile]:
        if not self.url.startswith(("https://", "http://")):
            raise SourceError("FEED_URL must be an https:// address.")
        request = urllib.request.Request(  # noqa: S310 - scheme checked
            self.url,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Accept": "application/x-ndjson",
            },
        )
        context = ssl.create_default_context()
        try:
            with urllib.request.urlopen(  # noqa: S310  # nosec B310 - scheme checked above
                request,
                timeout=self.timeout,
                context=context if self.url.startswith("https") else None,
            ) as response:
                raw = response.read(self.max_bytes + 1)
        except OSError as error:
            if isinstance(error, urllib.error.HTTPError):
                error.close()  # its body is an open socket
            raise SourceError(f"The feed could not be fetched ({type(error).__name__}).") from error
        if len(raw) > self.max_bytes:
            yield FeedFile("https", b"", oversized=True)
            return
        yield FeedFile("https", raw)


@dataclass
class SingleFileSource:
    path: Path
    label: str = "cli"

    def batches(self) -> Iterator[FeedFile]:
        yield FeedFile(self.path.name, self.path.read_bytes())
