"""Kill a process exactly where it parks (donorhub/park_for_kill.py), never after a delay.

    with ParkingSpot() as spot:
        process = subprocess.Popen(..., env={**env, **spot.env("stripe-call", nth=3,
                                                                 match="DELETE /v1/")})
        spot.kill_when_parked(process)   # SIGKILL while it waits inside the 3rd arrival

The process connects to the spot's Unix socket when it reaches the point and blocks there, so
the kill lands at that point however slow or busy the machine is. The only clock here is a
guard that turns a hang (a process that neither parks nor ends) into a failure.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

#: Only for a process that neither parks nor ends: a failure instead of a hang.
HANG_GUARD_SECONDS = 600


class ProcessEndedFirst(AssertionError):
    """The process ended before it reached the point it was to park at."""


class ParkingSpot:
    """The Unix socket a process parks on (DONORHUB_TEST_PARK_SOCKET)."""

    def __init__(self) -> None:
        # A short directory of its own: Unix socket paths are limited to 107 bytes.
        self.directory = tempfile.mkdtemp(prefix="dh-park-")
        self.path = os.path.join(self.directory, "spot")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(8)
        self.parked: socket.socket | None = None

    def __enter__(self) -> ParkingSpot:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def env(self, point: str, nth: int = 1, match: str = "") -> dict[str, str]:
        """The environment that makes a process park at the `nth` arrival at `point`."""
        return {
            "DONORHUB_TEST_PARK_AT": point,
            "DONORHUB_TEST_PARK_NTH": str(nth),
            "DONORHUB_TEST_PARK_MATCH": match,
            "DONORHUB_TEST_PARK_SOCKET": self.path,
        }

    def wait(self, process: subprocess.Popen) -> str | None:
        """Block until `process` parks (its "parked ..." line) or ends (None)."""
        pidfd = os.pidfd_open(process.pid)
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self.listener, selectors.EVENT_READ, "parked")
                selector.register(pidfd, selectors.EVENT_READ, "ended")
                ready = {key.data for key, _ in selector.select(HANG_GUARD_SECONDS)}
        finally:
            os.close(pidfd)
        if "parked" in ready:
            self.parked, _ = self.listener.accept()
            with self.parked.makefile("r") as lines:
                line = lines.readline().strip()
            assert line.startswith("parked "), line
            return line
        if "ended" in ready:
            process.wait(timeout=HANG_GUARD_SECONDS)
            return None
        raise AssertionError(f"the process neither parked nor ended in {HANG_GUARD_SECONDS} s")

    def release(self) -> None:
        """Let a parked process go on."""
        if self.parked is not None:
            self.parked.sendall(b"go\n")
            self.parked.close()
            self.parked = None

    def kill_when_parked(
        self, process: subprocess.Popen, log: Path | None = None, may_finish: bool = False
    ) -> bool:
        """SIGKILL `process` while it is parked. True when killed; False when it ended first
        with exit 0 and `may_finish` (otherwise that is a failure)."""
        try:
            line = self.wait(process)
            if line is None:
                if may_finish and process.returncode == 0:
                    return False
                output = log.read_text()[-3000:] if log else ""
                raise ProcessEndedFirst(
                    f"the process ended (exit {process.returncode}) before "
                    f"the kill point:\n{output}"
                )
            process.send_signal(signal.SIGKILL)
        finally:
            if process.poll() is None and self.parked is None:
                process.kill()
            process.wait(timeout=HANG_GUARD_SECONDS)
            if self.parked is not None:
                self.parked.close()
                self.parked = None
        assert process.returncode == -signal.SIGKILL, process.returncode
        return True

    def close(self) -> None:
        self.release()
        self.listener.close()
        shutil.rmtree(self.directory, ignore_errors=True)
