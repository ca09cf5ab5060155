"""Where batches come from: a drop directory, or the partner's HTTPS endpoint."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol


class SourceError(Exception):
    """The source could not be read; the message says why, without any feed content."""


class FileFate(StrEnum):
    """What becomes of a batch's file once it is processed, as staff are told it."""

    DELETED = "deleted"  # the configured drop directory is consumed
    KEPT = "kept"  # a file or folder named on the command line, or a dry run
    NEVER_STORED = "never_stored"  # fetched over HTTPS into memory only

    def sentence(self) -> str:
        return {
            FileFate.DELETED: "Nothing was imported and the file was deleted.",
            FileFate.KEPT: (
                "Nothing was imported. The file was kept where it was given on the command "
                "line: delete it, because it holds what the partner should not have sent."
            ),
            FileFate.NEVER_STORED: (
                "Nothing was imported and the batch was never written to disk."
            ),
        }[self]


@dataclass
class FeedFile:
    name: str
    raw: bytes
    #: The file to delete once it is processed; None when it is not ours to delete.
    path: Path | None = field(default=None)
    #: Larger than FEED_MAX_BYTES: not read at all, rejected as a whole.
    oversized: bool = False
    #: Read from a file on this machine (rather than fetched into memory).
    on_disk: bool = False

    def fate(self, dry_run: bool = False) -> FileFate:
        if self.path is not None and not dry_run:
            return FileFate.DELETED
        return FileFate.KEPT if self.on_disk else FileFate.NEVER_STORED

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
                yield FeedFile(path.name, b"", owned, oversized=True, on_disk=True)
                continue
            yield FeedFile(path.name, path.read_bytes(), owned, on_disk=True)


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
        yield FeedFile(self.path.name, self.path.read_bytes(), on_disk=True)
