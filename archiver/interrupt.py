"""Graceful stop: SIGTERM or SIGINT set a flag that the run checks at safe points.

Raising from inside a signal handler would unwind through py7zr and sqlite at an
arbitrary instruction; a flag checked between files and volumes stops the run
where nothing is half-written. The uncommitted run leaves only orphans. A second
SIGINT stops at once.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from .errors import Interrupted

_requested: str | None = None


def _handler(signum: int, frame: Any) -> None:
    global _requested
    name = signal.Signals(signum).name
    if _requested is not None and signum == signal.SIGINT:
        raise KeyboardInterrupt
    _requested = name


def install() -> dict[int, Any]:
    """Install the handlers (main thread only). Returns the previous handlers for restore()."""
    global _requested
    _requested = None
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _handler) for sig in (signal.SIGTERM, signal.SIGINT)}


def restore(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def requested() -> str | None:
    return _requested


def check() -> None:
    if _requested is not None:
        raise Interrupted(f"Stopped by signal {_requested}; nothing from the interrupted run was committed.")


def worker_init(parent: int | None = None) -> None:
    """Workers die at once on a signal, and with the process that forked them (``parent``), however it dies;
    they drop their copy of its run lock. The main process decides what a signal means."""
    from . import processes, runlock

    processes.die_with_parent(parent)
    runlock.close_inherited()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
