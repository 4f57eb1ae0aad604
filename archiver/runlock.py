"""The run lock: one genarc run per repository on this machine at a time.

An advisory ``flock`` on a file in the state directory, keyed by the repository
URL. The kernel drops it when the process dies, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path
from types import TracebackType

from .errors import BusyError, LocalIOError


class RunLock:
    def __init__(self, state_dir: Path, repository_url: str) -> None:
        digest = hashlib.sha256(repository_url.encode()).hexdigest()[:24]
        self.path = state_dir / "locks" / f"{digest}.lock"
        self.url = repository_url
        self.fd: int | None = None

    def __enter__(self) -> "RunLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise LocalIOError(f"Cannot create the lock file {self.path}: {exc.strerror}.") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise BusyError(
                f"Another genarc run (pid {holder}) is using the repository {self.url}; this run did nothing."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
