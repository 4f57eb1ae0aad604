"""What a killed genarc leaves behind, and how the next one knows it is safe to take over.

A process is named by its pid and its start time (``/proc/<pid>/stat``, field 22), so a pid the
kernel has since given to another program is not mistaken for the genarc that wrote it. Worker
processes die with the process that forked them (``PR_SET_PDEATHSIG``), and temporary
directories carry their owner's identity so the next run can remove what a killed one left.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

_PR_SET_PDEATHSIG = 1
_TEMP_NAME = re.compile(r"^genarc-[a-z]+-(\d+)-(\d+)-")


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot; None where /proc cannot say (or it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or parentheses itself.
    fields = stat[stat.rfind(b")") + 2:].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def identity() -> str:
    """``pid-start`` of this process (start 0 where /proc is not there)."""
    return f"{os.getpid()}-{start_time(os.getpid()) or 0}"


def alive(pid: int, start: int | None) -> bool:
    """Whether the process that had ``pid`` (and started at ``start``, when known) still runs."""
    if pid <= 0:
        return False
    now = start_time(pid)
    if now is not None:
        return not start or now == start
    if Path("/proc/self/stat").exists():  # /proc is there and has no entry for pid: gone
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def die_with_parent(parent: int | None) -> None:
    """In a forked worker: be killed when the process that forked it dies, however it dies.

    Without this a SIGKILLed run leaves its workers running as orphans, writing volumes nobody will upload."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the parent pipe still ends the pool's workers
        pass
    if parent is not None and os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


# -- temporary directories ------------------------------------------------------------------------
def make_temp(kind: str, parent: str | os.PathLike | None = None) -> Path:
    """A private temporary directory named for this process, so a later run can tell it was left by a dead one."""
    return Path(tempfile.mkdtemp(prefix=f"genarc-{kind}-{identity()}-", dir=parent))


@contextmanager
def temp_dir(kind: str, parent: str | os.PathLike | None = None) -> Iterator[Path]:
    path = make_temp(kind, parent)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class Swept:
    directories: int = 0
    bytes: int = 0
    owners: tuple[int, ...] = ()


def sweep_temp(parent: str | os.PathLike | None = None) -> Swept:
    """Remove the temporary directories that genarc processes which no longer run left in ``parent``."""
    folder = Path(parent) if parent else Path(tempfile.gettempdir())
    swept = Swept()
    owners: set[int] = set()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return swept
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None or not entry.is_dir(follow_symlinks=False):
            continue
        pid, start = int(match.group(1)), int(match.group(2))
        if alive(pid, start):
            continue
        size = _size(Path(entry.path))
        shutil.rmtree(entry.path, ignore_errors=True)
        if not os.path.lexists(entry.path):
            swept.directories += 1
            swept.bytes += size
            owners.add(pid)
    swept.owners = tuple(sorted(owners))
    return swept


def _size(path: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total
