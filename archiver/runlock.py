"""The run lock: one genarc run per repository on this machine at a time.

An advisory ``flock`` on a file in the state directory, keyed by the repository URL. The file
names its holder (pid, process start time, since when). The kernel drops the lock when the
process that took it dies; forked workers close their copy of the descriptor at once, so they
never keep it for a dead run. If some leftover process still holds the lock of a run that no
longer exists, the next run takes it over (under a short guard lock, so two runs cannot both do
so) and says so. A lock whose holder still runs is "busy": exit 4, naming the holder.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from .errors import BusyError, LocalIOError
from . import processes

_HELD: set[int] = set()  # lock descriptors this process holds; a forked worker closes its copies
_GUARD_WAIT = 10.0


def close_inherited() -> None:
    """In a forked worker: drop the copies of the parent's lock descriptors (the parent keeps its lock)."""
    for fd in list(_HELD):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


@dataclass
class Holder:
    """The run named in the lock file: ``pid start since space boot`` (see processes.Identity)."""

    pid: int
    start: int | None
    since: str | None
    space: str | None = None
    boot: str | None = None

    @classmethod
    def parse(cls, text: str) -> "Holder | None":
        fields = text.split()
        try:
            pid, start = int(fields[0]), int(fields[1]) if len(fields) > 1 else None
        except (IndexError, ValueError):
            return None
        since, space, boot = (fields[2:5] + [None, None, None])[:3]
        return cls(pid, start, since, space, boot)

    @classmethod
    def line(cls, since: str) -> str:
        me = processes.me()
        return f"{me.pid} {me.start} {since} {me.space} {me.boot}\n"

    def running(self) -> bool:
        if self.space and self.boot:
            return processes.holds(processes.Identity(self.space, self.boot, self.pid, self.start or 0))
        return processes.running(self.pid, self.start)  # written by an older genarc

    def describe(self) -> str:
        return f"pid {self.pid}" + (f", started {self.since}" if self.since else "")


class RunLock:
    def __init__(self, state_dir: Path, repository_url: str) -> None:
        digest = hashlib.sha256(repository_url.encode()).hexdigest()[:24]
        self.path = state_dir / "locks" / f"{digest}.lock"
        self.guard = self.path.with_suffix(".guard")
        self.url = repository_url
        self.fd: int | None = None
        self.notes: list[str] = []

    def __enter__(self) -> "RunLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LocalIOError(f"Cannot create the lock folder {self.path.parent}: {exc.strerror}.") from exc
        guard = self._open(self.guard)
        try:
            self._wait(guard)
            fd = self._take()
            os.ftruncate(fd, 0)
            os.pwrite(fd, Holder.line(datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")).encode(), 0)
        finally:
            os.close(guard)
        self.fd = fd
        _HELD.add(fd)
        return self

    def _wait(self, guard: int) -> None:
        """The guard is held for a moment by whoever takes (or takes over) the lock."""
        deadline = time.monotonic() + _GUARD_WAIT
        while True:
            try:
                fcntl.flock(guard, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BusyError(f"Another genarc run is taking the lock of the repository {self.url}; "
                                    "this run did nothing.") from None
                time.sleep(0.05)

    @staticmethod
    def _open(path: Path, flags: int = 0) -> int:
        """A lock file, never through a link (a link there would make genarc write to wherever it points)."""
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | flags, 0o600)
        except OSError as exc:
            raise LocalIOError(f"Cannot open the lock file {path}: {exc.strerror}; remove what is there or make the "
                               "state directory writable.") from exc

    @staticmethod
    def _holder(fd: int) -> Holder | None:
        return Holder.parse(os.pread(fd, 128, 0).decode(errors="replace"))

    def _take(self) -> int:
        fd = self._open(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)  # written under the guard, which this run now holds
            if holder is None or holder.running():
                os.close(fd)
                who = holder.describe() if holder else "pid unknown"
                raise BusyError(f"Another genarc run ({who}) is using the repository {self.url}; "
                                "this run did nothing.") from None
            # The run that took the lock is gone, yet something it left (a worker of an older genarc, a
            # hook it started in the background) still holds the file: take over with a new one.
            os.close(fd)
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise LocalIOError(f"The run lock {self.path} is held by what a run that no longer exists "
                                   f"({holder.describe()}) left behind, and cannot be replaced: {exc.strerror}. "
                                   "Stop the leftover processes (fuser -v on the file names them).") from exc
            fd = self._open(self.path, os.O_EXCL)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.notes.append(f"took over the run lock of a run that no longer exists ({holder.describe()}); "
                              "a process it left behind still held it")
            return fd
        holder = self._holder(fd)  # read once the lock is ours: a clean exit empties the file before unlocking
        if holder is not None and holder.since:
            self.notes.append(f"the previous run ({holder.describe()}) was killed or crashed before it finished; "
                              "what it had not committed is left as unreferenced objects")
        return fd

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.fd is not None:
            _HELD.discard(self.fd)
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
