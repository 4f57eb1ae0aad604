"""What a killed genarc leaves behind, and how the next one knows it is safe to take over.

A process is named by its host and pid namespace, the machine's boot, its pid and its start time
(``/proc/<pid>/stat``, field 22), so a pid the kernel has since given to another program is not
mistaken for the genarc that wrote it, and a process of another container or host is never judged
dead from here. Worker
processes die with the process that forked them (``PR_SET_PDEATHSIG``), and temporary
directories carry their owner's identity so the next run can remove what a killed one left.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import pickle
import re
import shutil
import signal
import socket
import stat
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NoReturn

_PR_SET_PDEATHSIG = 1
TAG = r"([0-9a-f]{8})-([0-9a-f]{8})-(\d+)-(\d+)"  # Identity.tag(), as a pattern
_TEMP_NAME = re.compile(rf"^genarc-[a-z]+-{TAG}-")


@dataclass(frozen=True)
class Identity:
    """Who a process is, for a later process to tell whether it still runs.

    ``space`` hashes the host name and the pid namespace: a process of another host or container cannot be
    judged from here, so it is taken to be running. ``boot`` hashes the kernel's boot id: a process of an
    earlier boot has stopped. ``start`` is the start time in clock ticks (0 when unknown), so a pid the kernel
    has given to another program since is not mistaken for it."""

    space: str
    boot: str
    pid: int
    start: int

    def tag(self) -> str:
        return f"{self.space}-{self.boot}-{self.pid}-{self.start}"

    @classmethod
    def from_match(cls, match: re.Match) -> "Identity":
        return cls(match.group(1), match.group(2), int(match.group(3)), int(match.group(4)))


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _stat_fields(pid: int) -> list[bytes] | None:
    """Fields 3.. of /proc/<pid>/stat (state first); None where /proc cannot say (or it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or parentheses itself.
    return raw[raw.rfind(b")") + 2:].split()


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot; None where /proc cannot say (or it is gone)."""
    fields = _stat_fields(pid)
    try:
        return int(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None


_ME: dict[int, Identity] = {}


_OURS: dict[int, bool] = {}


def _proc_is_ours() -> bool:
    """Whether /proc shows this pid namespace (``unshare --pid`` without a /proc of its own shows the host's)."""
    pid = os.getpid()
    if pid not in _OURS:
        try:
            with open("/proc/self/stat", "rb") as fh:
                _OURS[pid] = int(fh.read().split(b" ", 1)[0]) == pid
        except (OSError, ValueError):
            _OURS[pid] = False
    return _OURS[pid]


def me() -> Identity:
    """This process's identity (a forked worker has its own). Where /proc does not show this process's own pid
    namespace, its start is 0 and ``running`` cannot judge anyone: everything counts as running."""
    pid = os.getpid()
    if pid not in _ME:
        try:
            namespace = os.readlink("/proc/self/ns/pid")
        except OSError:
            namespace = ""
        machine = _read("/etc/machine-id")  # cloned hosts of one name differ here, at least once regenerated
        _ME[pid] = Identity(_hash(f"{socket.gethostname()}\0{machine}\0{namespace}"),
                            _hash(_read("/proc/sys/kernel/random/boot_id")), pid,
                            (start_time(pid) or 0) if _proc_is_ours() else 0)
    return _ME[pid]


def identity() -> str:
    return me().tag()


def running(pid: int, start: int | None) -> bool:
    """Whether ``pid`` (started at ``start``, when known) still runs on this host and in this pid namespace.
    A zombie has stopped: it holds no file and no lock. Where it cannot be told, it runs."""
    if pid <= 0:
        return False
    if not _proc_is_ours():
        return True
    fields = _stat_fields(pid)
    if fields is not None:
        if fields[0] in (b"Z", b"X"):
            return False
        return not start or start_time(pid) == start
    try:  # no /proc entry: gone, or hidden from this user (hidepid), where the kernel still answers
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def alive(other: Identity) -> bool:
    """For what a process left on disk: a process of another host or container cannot be judged (it runs); one
    of an earlier boot of this machine has stopped."""
    mine = me()
    if other.space != mine.space:
        return True
    if other.boot != mine.boot:
        return False
    return running(other.pid, other.start)


def holds(other: Identity) -> bool:
    """For a lock that is still held: a holder of an earlier boot cannot hold it, so a boot id that differs means
    another machine sharing the file (a home on NFS), which cannot be judged from here."""
    mine = me()
    if other.space != mine.space or other.boot != mine.boot:
        return True
    return running(other.pid, other.start)


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


# -- work on another core -------------------------------------------------------------------------
# Forked processes that hold no state worth keeping: each dies with this process however that dies, is
# stopped when its owner stops early (an error, an interrupt), and never touches what it inherited (the
# catalog's sqlite connection among it). Items and answers are plain data (they are pickled).

def generate_in_child(produce: Callable[[], Iterable[Any]], batch: int = 1000) -> Iterator[Any]:
    """What ``produce()`` yields, produced in a forked process (so on another core, while this one consumes
    it) and passed back in batches, in order. An exception in the child is raised here (its text, where it
    cannot be pickled); a child that dies without a word raises :class:`LocalIOError`. At most a batch and a
    pipe's buffer are ahead of the consumer."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_produce, args=(produce, send, receive, batch, os.getpid()), daemon=True,
                            name="genarc-producer")
    child.start()
    send.close()
    try:
        while True:
            try:
                kind, payload = receive.recv()
            except EOFError:
                _died(child)
            if kind == "error":
                raise payload
            if kind == "done":
                return
            yield from payload
    finally:
        receive.close()
        _stop(child)


_AHEAD = 64  # batches a producer may have made that its consumer has not taken yet (a batch of scanned rows:
# about 150 KB): room for the consumer's longer pauses (a table dropped meanwhile) without stopping the producer


def _produce(produce: Callable[[], Iterable[Any]], send: Any, inherited: Any, batch: int, parent: int) -> None:
    """The child of :func:`generate_in_child`: batches are pickled here and written to the pipe by a thread, so
    the producer goes on while the consumer is busy, at most :data:`_AHEAD` batches ahead."""
    import queue
    import threading
    from multiprocessing.reduction import ForkingPickler

    from . import interrupt

    interrupt.worker_init(parent)
    inherited.close()  # the consumer's end: once the consumer closes it, sending fails here
    outbox: queue.Queue[bytes | None] = queue.Queue(maxsize=_AHEAD)
    gone = threading.Event()  # the consumer stopped

    def write() -> None:
        while (data := outbox.get()) is not None:
            if not gone.is_set():
                try:
                    send.send_bytes(data)
                except (BrokenPipeError, ConnectionResetError):
                    gone.set()

    writer = threading.Thread(target=write, name="genarc-producer-writer", daemon=True)
    writer.start()

    def post(message: tuple[str, Any]) -> None:
        if gone.is_set():
            raise BrokenPipeError
        outbox.put(bytes(ForkingPickler.dumps(message)))

    items: list[Any] = []
    try:
        for item in produce():
            items.append(item)
            if len(items) >= batch:
                post(("items", items))
                items = []
        post(("items", items))
        post(("done", None))
    except BrokenPipeError:  # the consumer stopped
        pass
    except Exception as exc:  # noqa: BLE001 - any failure is the consumer's to report
        if not gone.is_set():
            outbox.put(bytes(ForkingPickler.dumps(("error", _portable(exc)))))
    finally:
        outbox.put(None)
        writer.join()


class ChildSink:
    """Items sent, in order, to a forked process that consumes them as they come (on another core, while
    this one goes on), and its answer: ``consume(items)``'s return value. Use as a context manager: leaving
    it without :meth:`answer` stops the child."""

    def __init__(self, consume: Callable[[Iterator[Any]], Any]) -> None:
        import multiprocessing

        context = multiprocessing.get_context("fork")
        items_in, self._items = context.Pipe(duplex=False)
        self._answers, answer_out = context.Pipe(duplex=False)
        self._child = context.Process(target=_consume, args=(consume, items_in, answer_out, (self._items, self._answers),
                                                             os.getpid()), daemon=True, name="genarc-consumer")
        self._child.start()
        items_in.close()
        answer_out.close()

    def __enter__(self) -> "ChildSink":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def send(self, item: Any) -> None:
        try:
            self._items.send(("item", item))
        except (BrokenPipeError, ConnectionResetError):
            self._answer()  # the child stopped: its error, or that it died, is raised here

    def answer(self) -> Any:
        """Wait for the child to consume everything sent, and return its answer (or raise its error)."""
        try:
            self._items.send(("end", None))
        except (BrokenPipeError, ConnectionResetError):
            pass
        return self._answer()

    def _answer(self) -> Any:
        try:
            kind, payload = self._answers.recv()
        except EOFError:
            _died(self._child)
        finally:
            self.close()
        if kind == "error":
            raise payload
        return payload

    def close(self) -> None:
        self._items.close()
        self._answers.close()
        _stop(self._child)


def _consume(consume: Callable[[Iterator[Any]], Any], items_in: Any, answer_out: Any, inherited: tuple[Any, ...],
             parent: int) -> None:
    """The child of :class:`ChildSink`."""
    from . import interrupt

    interrupt.worker_init(parent)
    for connection in inherited:  # the owner's ends: once the owner is gone, receiving ends here
        connection.close()

    ended = False

    def items() -> Iterator[Any]:
        nonlocal ended
        while True:
            kind, payload = items_in.recv()
            if kind == "end":
                ended = True
                return
            yield payload

    try:
        answer = ("answer", consume(items()))
        if not ended:  # the owner would take an answer for items it never consumed
            answer = ("error", RuntimeError("internal: a consumer process answered before the items sent to it ended"))
    except EOFError:  # the owner stopped
        return
    except Exception as exc:  # noqa: BLE001 - any failure is the owner's to report
        answer = ("error", _portable(exc))
    try:
        answer_out.send(answer)
    except (BrokenPipeError, ConnectionResetError):
        pass


def _portable(exc: Exception) -> Exception:
    """An exception that survives the trip to another process: itself, or its text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _died(child: Any) -> NoReturn:
    """A child ended without a word: stopped with the run by a signal (say so), or died."""
    from . import interrupt
    from .errors import LocalIOError

    child.join()
    interrupt.check()  # signalled along with the run (systemd stops every process of a service)
    raise LocalIOError(f"A genarc process died (exit status {child.exitcode}; out of memory?); nothing was "
                       "committed, rerun.") from None


def _stop(child: Any) -> None:
    if child.is_alive():
        child.terminate()
    child.join()


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
        if match is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():  # only folders this user's genarc made
            continue
        owner = Identity.from_match(match)
        if alive(owner):
            continue
        size = _size(Path(entry.path))
        shutil.rmtree(entry.path, ignore_errors=True)
        if not os.path.lexists(entry.path):
            swept.directories += 1
            swept.bytes += size
            owners.add(owner.pid)
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
