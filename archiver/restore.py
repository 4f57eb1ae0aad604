"""Restore: replay a point's chain, then write files, links and directories into a target.

Every file's xxh3 is checked as it is written; every volume's SHA-256 is checked
before it is opened. Writes go through :class:`archiver.target.Target`, which cannot
leave the target. One bad entry never stops a restore: a damaged volume, an unsafe
entry in the point (``archiver/hazards.py``) or a link already in the target is
named, and everything else is restored.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import errno
import multiprocessing
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from . import chain as chain_mod
from . import interrupt
from .catalog import TreeTable, path_name
from .clock import format_time
from .errors import EXIT_INTEGRITY, EXIT_PARTIAL, GenarcError, IntegrityError, LocalIOError, UsageError
from .hazards import unsafe_entries
from .history import History, Point
from .names import escape
from .parts import parts_digest
from .repository import Repository
from .scan import glob_regex
from .sevenzip import EntryTooLarge, HashSink, extract_entries, prepare_key
from .store import sha256_of
from .restore_parts import unreadable, write_parts
from .target import NewFile, Refused, Target, stops_everything

Progress = Callable[[str, dict[str, Any]], None]


@dataclass
class RestoreReport:
    job: str
    generation: int
    point: int
    time: str
    target: str
    stored: str | None = None  # when the server stored the point's manifest
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)  # the point's fault: content that fails its check, unsafe entries
    blocked: list[str] = field(default_factory=list)  # the target's: a link or file in the way, a write it refuses
    changed_while_read: list[str] = field(default_factory=list)  # files stored as last read (names escaped)
    unset: dict[str, int] = field(default_factory=dict)  # extended attributes the target refused, by kind
    read: dict[str, int] = field(default_factory=dict)  # from the repository: {"objects": gets, "bytes": bytes}

    def refused_metadata(self, kinds: list[str]) -> None:
        for kind in kinds:
            self.unset[kind] = self.unset.get(kind, 0) + 1


class _Selection:
    def __init__(self, includes: list[str]) -> None:
        try:
            self.patterns = [glob_regex(p.strip("/")) for p in includes]
            self.includes = list(includes)
        except ValueError as exc:
            raise UsageError(f"--include {exc}.") from None

    def scope(self) -> chain_mod.Scope | None:
        """What the patterns can match: every path starting with a pattern's literal start (before its first
        wildcard, class or escape), with its ancestors. None (the whole tree) when a pattern starts with one."""
        return chain_mod.Scope.of([re.split(r"[*?\[\\]", p.strip("/"), maxsplit=1)[0] for p in self.includes]) \
            if self.includes else None

    def wants(self, name: str) -> bool:
        if not self.patterns:
            return True
        parts = name.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        return any(p.match(prefix) for p in self.patterns for prefix in prefixes)


def restore(repo: Repository, history: History, point: Point, *, target: Path, includes: list[str], overwrite: bool,
            workdir: Path, progress: Progress | None = None, workers: int = 1) -> RestoreReport:
    emit = progress or (lambda event, data: None)
    workdir.mkdir(parents=True, exist_ok=True)
    name = point.name
    report = RestoreReport(history.job, name.gseq, name.pseq, format_time(name.point_time), str(target),
                           stored=format_time(point.stored) if point.stored else None)
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    job = history.job
    with chain_mod.scratch_tree(workdir, "restore.sqlite") as tree:
        selection = _Selection(includes)
        chain_mod.replay(repo, history, point, tree, workdir, scope=selection.scope(), every_digest=False)
        unsafe = {p: why for p, why in unsafe_entries(tree) if selection.wants(path_name(p))}
        report.errors += [f"{path_name(p)}: refused: {reason}" for p, reason in unsafe.items()]
        selected = _select(tree, selection, f"point {name.gseq}.{name.pseq} of job {job!r}", set(unsafe))
        report.changed_while_read = [escape(path_name(row[0])) for row in selected.conn.execute(
            f"SELECT path FROM {selected.name} WHERE torn = 1 ORDER BY path")]
        if not is_root:  # only root can give a file away: named once, not per file
            others = selected.conn.execute(f"SELECT count(*) FROM {selected.name} WHERE uid IS NOT NULL AND uid != ?",
                                           (os.getuid(),)).fetchone()[0]
            if others:
                report.unset["owners (only root can set them; the restoring user owns these)"] = others
        if os.path.lexists(target) and not os.path.isdir(target):
            raise UsageError(f"The restore target {target} exists and is not a directory; choose a directory.")
        try:
            with Target(target, overwrite=overwrite, is_root=is_root) as dest:
                if not overwrite:
                    _refuse_clashes(selected, dest, target)
                firsts = {row[0] for row in selected.conn.execute(
                    "SELECT DISTINCT link FROM selected WHERE link IS NOT NULL")}
                written: set[bytes] = set()  # first names of hard-linked files this restore wrote
                _restore_entries(selected, dest, report, firsts, written)
                tasks: list[Any] = _volume_tasks(selected, workdir, firsts)
                tasks += _parted_tasks(selected, selected.rows(f"parts IS NOT NULL AND size > 0 AND NOT {_LINKED}"),
                                       workdir, firsts)
                emit("planned", {"files": sum(len(t.rows) for t in tasks),
                                 "bytes": sum(r["size"] for t in tasks for r in t.rows)})
                _restore_volumes(repo, dest, tasks, workers, report, emit, written)
                alone = _restore_links(selected, dest, report, written)
                _restore_entries_alone(repo, dest, selected, alone, workdir, workers, report, emit)
                emit("done", {})
                _finish_dirs(selected, dest, report)
        except OSError as exc:
            raise LocalIOError(f"Cannot write into the restore target {target}: {exc.strerror}; "
                               f"{_target_advice(exc)}.") from exc
    got = repo.store.counts.snapshot()
    report.read = {"objects": got["gets"] + report.read.get("objects", 0),
                   "bytes": got["bytes_got"] + report.read.get("bytes", 0)}
    if report.errors or report.blocked:
        raise RestoreFailed(report)
    return report


def _target_advice(exc: OSError) -> str:
    """What to do when the target cannot be written: advice that fits the error, not one answer for all."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free space, then rerun with --overwrite to finish what was started"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "choose a target you can write to, or fix its permissions"
    if exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.ELOOP):
        return "a file stands where a directory of the target's path should be; choose another target"
    return "fix the target or choose another (with --overwrite to finish a restore that wrote part of it)"


def _select(tree: TreeTable, selection: _Selection, what: str, unsafe: set[bytes]) -> TreeTable:
    """The rows the --include patterns ask for, in a table of their own, without the unsafe ones."""
    TreeTable.drop(tree.conn, "selected")  # a reused workdir must not leak an earlier selection
    selected = TreeTable(tree.conn, "selected")
    tree.conn.execute("BEGIN")
    wanted = 0
    if not selection.patterns:  # the whole point: copied by sqlite, without a Python object per row
        wanted = tree.conn.execute(f"INSERT INTO {selected.name} SELECT * FROM {tree.name}").rowcount
        tree.conn.executemany(f"DELETE FROM {selected.name} WHERE path = ?", [(path,) for path in unsafe])
    else:
        for row in tree.rows():
            if selection.wants(path_name(row["path"])):
                wanted += 1
                if row["path"] not in unsafe:
                    selected.put(dict(row))
    tree.conn.execute(f"INSERT INTO {selected.parts_name} SELECT p.* FROM {tree.parts_name} AS p "
                      f"JOIN {selected.name} AS s ON s.path = p.path")
    tree.conn.execute("COMMIT")
    if wanted == 0:
        raise UsageError(f"Nothing in {what} matches the --include patterns.")
    return selected


def _refuse_clashes(selected: TreeTable, dest: Target, target: Path) -> None:
    if dest.empty():
        return  # nothing there to clash with (and a restore that adds to an empty target checks nothing per file)
    clashes = [path_name(r["path"]) for r in selected.rows("type != 'dir'") if dest.exists(path_name(r["path"]))]
    if clashes:
        raise UsageError(
            f"The target already holds {len(clashes)} of the files to restore (first: {target / clashes[0]}); "
            "pass --overwrite or choose an empty target."
        )


def _attempt(report: RestoreReport, name: str, action: Callable[[], None]) -> bool:
    """Do one entry's write; what the target blocks is named in ``report`` and the restore goes on."""
    try:
        action()
        return True
    except Refused as refused:
        report.blocked.append(str(refused))
    except OSError as exc:
        if stops_everything(exc):
            raise
        report.blocked.append(f"{name}: cannot be written into the target ({exc.strerror})")
    return False


def _restore_entries(selected: TreeTable, dest: Target, report: RestoreReport, firsts: set[bytes],
                     written: set[bytes]) -> None:
    """Directories, symlinks and empty files: everything that needs no volume."""
    for row in selected.rows("type = 'dir'"):
        name = path_name(row["path"])
        _attempt(report, name, lambda: dest.make_dir(name))
    for row in selected.rows("type = 'symlink'"):
        name = path_name(row["path"])
        if _attempt(report, name, lambda: dest.make_symlink(name, row["target"], row)):
            report.symlinks += 1
    for row in selected.rows(f"type = 'file' AND NOT size AND NOT {_LINKED}"):
        if _empty_file(dest, row, report) and row["path"] in firsts:
            written.add(row["path"])


def _empty_file(dest: Target, row: Any, report: RestoreReport) -> bool:
    name = path_name(row["path"])
    if _attempt(report, name, lambda: report.refused_metadata(dest.empty_file(name, row))):
        report.files += 1
        return True
    return False


# A file restored as another name of a file this restore writes: its first name is selected, is a file with the
# same content, and is no other file's second name (a forged manifest may claim anything; those restore alone).
_LINKED = """(link IS NOT NULL AND EXISTS (SELECT 1 FROM selected AS first WHERE first.path = selected.link
             AND first.type = 'file' AND first.link IS NULL AND first.xxh3 IS selected.xxh3))"""


def _restore_links(selected: TreeTable, dest: Target, report: RestoreReport, written: set[bytes]) -> list[dict]:
    """Hard links: every further name of a file whose first name this restore wrote. The others (their first
    name failed or was in the way) are returned, to be restored on their own from their own content: a link
    is never made to something this restore did not write."""
    alone = []
    for row in selected.rows(f"type = 'file' AND {_LINKED}"):
        if row["link"] not in written:
            alone.append(dict(row))
            continue
        name, first = path_name(row["path"]), path_name(row["link"])
        if _attempt(report, name, lambda: dest.hard_link(name, first)):
            report.files += 1
    return alone


def _restore_entries_alone(repo: Repository, dest: Target, selected: TreeTable, rows: list[dict], workdir: Path,
                           workers: int, report: RestoreReport, emit: Progress) -> None:
    for row in rows:
        if not row["size"]:
            _empty_file(dest, row, report)
    volumes: dict[str, list[dict]] = {}
    for row in rows:
        if row["size"] and not row["parts"]:
            volumes.setdefault(row["obj_key"], []).append(row)
    tasks: list[Any] = [_VolumeTask(key, members[0]["obj_version"], members[0]["obj_sha256"], members,
                                    workdir / f"alone{i}") for i, (key, members) in enumerate(sorted(volumes.items()))]
    tasks += _parted_tasks(selected, [r for r in rows if r["size"] and r["parts"]], workdir, set(), "alone-parted")
    _restore_volumes(repo, dest, tasks, workers, report, emit, set())


def _finish_dirs(selected: TreeTable, dest: Target, report: RestoreReport) -> None:
    """Directories get their own mode and times last, deepest first, once nothing more is written inside."""
    for row in sorted(selected.rows("type = 'dir'"), key=lambda r: r["path"], reverse=True):
        name = path_name(row["path"])
        try:
            report.refused_metadata(dest.finish_dir(name, row))
            report.dirs += 1
        except (Refused, FileNotFoundError):
            pass  # the directory itself was refused or not made: already named
        except OSError as exc:
            if stops_everything(exc):
                raise
            report.blocked.append(f"{name}: its mode or times cannot be set in the target ({exc.strerror})")


def _volume_tasks(selected: TreeTable, workdir: Path, firsts: set[bytes]) -> list["_VolumeTask"]:
    by_volume: dict[tuple[str, str | None, str], list[dict[str, Any]]] = {}
    for row in selected.conn.execute(f"SELECT * FROM selected WHERE type = 'file' AND size > 0 AND parts IS NULL "
                                     f"AND NOT {_LINKED} ORDER BY obj_key, path"):
        volume = (row["obj_key"], row["obj_version"], row["obj_sha256"])  # a forged chain may name a key twice
        by_volume.setdefault(volume, []).append({**dict(row), "first": row["path"] in firsts})
    return [_VolumeTask(key, version, sha256, rows, workdir / f"v{index}")
            for index, ((key, version, sha256), rows) in enumerate(by_volume.items())]


def _parted_tasks(selected: TreeTable, rows: Iterable[Any], workdir: Path, firsts: set[bytes],
                  name: str = "parted") -> list["_PartedTask"]:
    """One task per file stored in parts: its parts in order, each with its volume and offset."""
    tasks = []
    for index, row in enumerate(list(rows)):
        parts, offset = [], 0
        for part in selected.parts_of(row["path"]):
            parts.append({**dict(part), "offset": offset})
            offset += part["size"]
        tasks.append(_PartedTask(path_name(row["path"]), {**dict(row), "first": row["path"] in firsts}, parts,
                                 workdir / f"{name}{index}"))
    return tasks


class RestoreFailed(IntegrityError):
    """Some entries were not restored; everything else was. Exit 7 when the point is at fault, 1 for the target."""

    def __init__(self, report: RestoreReport) -> None:
        self.report = report
        self.exit_code = EXIT_INTEGRITY if report.errors else EXIT_PARTIAL
        parts = []
        if report.errors:
            parts.append(f"{_count(report.errors)} of the point could not be restored intact (first: "
                         f"{report.errors[0]}); try an older restore point for them")
        if report.blocked:
            parts.append(f"{_count(report.blocked)} could not be written because of what is in the target (first: "
                         f"{report.blocked[0]})")
        super().__init__("; ".join(parts) + ". Each is named above; everything else was restored.")


def _count(items: list[str]) -> str:
    return "1 entry" if len(items) == 1 else f"{len(items)} entries"


@dataclass
class _VolumeTask:
    key: str
    version_id: str | None
    sha256: str
    rows: list[dict[str, Any]]
    workdir: Path


@dataclass
class _PartedTask:
    """A file stored in parts: written part by part at each part's offset, checked part by part, and put in
    place only when every part is there and intact."""

    key: str  # its path, for progress
    row: dict[str, Any]
    parts: list[dict[str, Any]]
    workdir: Path

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [self.row]


@dataclass
class _VolumeResult:
    files: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    unset: list[str] = field(default_factory=list)
    written: list[bytes] = field(default_factory=list)  # first names of hard-linked files, once committed
    read: tuple[int, int] = (0, 0)  # (objects, bytes) a worker process got from the repository


def _restore_volume(repo: Repository, dest: Target, task: _VolumeTask) -> _VolumeResult:
    key, rows, result = task.key, task.rows, _VolumeResult()
    task.workdir.mkdir(parents=True, exist_ok=True)
    local = task.workdir / "volume.7z"
    try:
        repo.store.download(key, local, version_id=task.version_id)
    except GenarcError as exc:
        why = unreadable(repo, key, task.version_id, exc)
        result.errors.extend(f"{path_name(r['path'])}: object {key} {why}" for r in rows)
        return result
    try:
        if sha256_of(local) != task.sha256:
            result.errors.extend(
                f"{path_name(r['path'])}: object {key} does not match its recorded SHA-256 (corrupt or altered)"
                for r in rows)
            return result
        _extract(repo, dest, task, local, result)
    finally:
        shutil.rmtree(task.workdir, ignore_errors=True)
    return result


def _restore_parted(repo: Repository, dest: Target, task: _PartedTask) -> _VolumeResult:
    row, result, name = task.row, _VolumeResult(), task.key
    stop: list[OSError] = []
    new = _new_file(dest, row, result, stop)
    if stop:
        raise stop[0]
    if new is None:
        return result
    new.holes = True  # its length is set when it is committed: a hole at the end is not written
    volumes: dict[str, list[dict[str, Any]]] = {}
    for part in task.parts:
        volumes.setdefault(part["obj_key"], []).append(part)
    task.workdir.mkdir(parents=True, exist_ok=True)
    key = ""
    try:
        for key, members in volumes.items():
            interrupt.check()
            problem = write_parts(repo, new, row, key, members, task.workdir)
            if problem is not None:
                new.discard()
                result.errors.append(f"{name}: {problem}")
                return result
        if parts_digest((p["size"], p["xxh3"]) for p in task.parts) != row["xxh3"] or \
                sum(p["size"] for p in task.parts) != row["size"]:
            new.discard()
            result.errors.append(f"{name}: its parts do not give its recorded hash and size")
            return result
        _keep_if_intact(row, new, None, key, dest.is_root, result)
    except OSError:
        new.discard()
        raise
    finally:
        shutil.rmtree(task.workdir, ignore_errors=True)
    return result


def _extract(repo: Repository, dest: Target, task: _VolumeTask, local: Path, result: _VolumeResult) -> None:
    """Stream the volume's wanted entries into new files; each is kept, or dropped, as soon as it is written."""
    by_entry: dict[str, list[dict[str, Any]]] = {}
    for row in task.rows:  # several paths may share one entry
        by_entry.setdefault(row["entry"], []).append(row)
    pending: dict[str, list[tuple[dict[str, Any], NewFile]]] = {}
    done: set[str] = set()
    stop: list[OSError] = []

    def finish(entry: str, sink: HashSink) -> None:
        for row, new in pending.pop(entry, []):
            _keep_if_intact(row, new, sink, task.key, dest.is_root, result)
        done.add(entry)

    def make(entry: str) -> HashSink | None:
        if entry not in by_entry or entry in done or stop:
            return None
        opened = [(row, new) for row in by_entry[entry] if (new := _new_file(dest, row, result, stop)) is not None]
        if not opened:
            done.add(entry)
            return None
        pending[entry] = opened
        return HashSink([new.sparse() if row["sparse"] else new.out for row, new in opened],
                        on_close=lambda sink: finish(entry, sink),
                        limit=max(row["size"] for row, _ in opened))

    try:
        extract_entries(local, repo.keys.password, list(by_entry), task.workdir / "x", make)
    except Exception as exc:  # py7zr raises many unrelated types for damaged data
        _drop(pending)
        if stop or isinstance(exc, OSError):
            raise stop[0] if stop else exc
        why = "holds more bytes than recorded" if isinstance(exc, EntryTooLarge) else f"cannot be decoded ({type(exc).__name__})"
        result.errors.extend(f"{path_name(r['path'])}: object {task.key} {why}"
                             for entry, rows in by_entry.items() if entry not in done for r in rows)
        return
    _drop(pending)
    if stop:
        raise stop[0]
    result.errors.extend(f"{path_name(r['path'])}: its content is missing from object {task.key}"
                         for entry, rows in by_entry.items() if entry not in done for r in rows)


def _drop(pending: dict[str, list[tuple[dict[str, Any], NewFile]]]) -> None:
    for opened in pending.values():
        for _, new in opened:
            new.discard()
    pending.clear()


def _new_file(dest: Target, row: dict[str, Any], result: _VolumeResult, stop: list[OSError]) -> NewFile | None:
    """A new file for ``row``, or None when the target blocks it (named in ``result``) or the disk is full."""
    name = path_name(row["path"])
    try:
        return dest.new_file(name)
    except Refused as refused:
        result.blocked.append(str(refused))
    except OSError as exc:
        if stops_everything(exc):
            stop.append(exc)  # raised once py7zr has let go
        else:
            result.blocked.append(f"{name}: cannot be written into the target ({exc.strerror})")
    return None


def _keep_if_intact(row: dict[str, Any], new: NewFile, sink: HashSink | None, key: str, is_root: bool,
                    result: _VolumeResult) -> None:
    name = path_name(row["path"])
    if sink is not None and not sink.matches(row["xxh3"], row["size"]):
        new.discard()  # never leave bytes that failed their check where the file belongs
        result.errors.append(f"{name}: content from object {key} fails its xxh3 check")
        return
    try:
        result.unset.extend(new.commit(row, is_root))
    except Refused as refused:
        result.blocked.append(str(refused))
        return
    except OSError as exc:
        new.discard()
        if stops_everything(exc):
            raise
        result.blocked.append(f"{name}: cannot be written into the target ({exc.strerror})")
        return
    result.files += 1
    result.bytes += row["size"]
    if row.get("first"):
        result.written.append(row["path"])


_WORKER: tuple[Repository, Target] | None = None  # in a restore worker process only: set by its initializer


def _worker_init(repo: Repository, dest: Target, parent: int) -> None:
    global _WORKER
    interrupt.worker_init(parent)
    _WORKER = (repo, dest)


def _restore_task(repo: Repository, dest: Target, task: "_VolumeTask | _PartedTask") -> _VolumeResult:
    if isinstance(task, _PartedTask):
        return _restore_parted(repo, dest, task)
    return _restore_volume(repo, dest, task)


def _restore_in_worker(task: "_VolumeTask | _PartedTask") -> _VolumeResult:
    assert _WORKER is not None
    before = _WORKER[0].store.counts.snapshot()
    result = _restore_task(*_WORKER, task)
    after = _WORKER[0].store.counts.snapshot()
    result.read = (after["gets"] - before["gets"], after["bytes_got"] - before["bytes_got"])
    return result


def _restore_volumes(repo: Repository, dest: Target, tasks: list[_VolumeTask], workers: int, report: RestoreReport,
                     emit: Progress, written: set[bytes]) -> None:
    """Volumes are independent: restore them in parallel processes (py7zr holds the GIL)."""

    def tally(result: _VolumeResult, key: str) -> None:
        report.files += result.files
        report.bytes += result.bytes
        report.errors.extend(result.errors)
        report.blocked.extend(result.blocked)
        report.refused_metadata(result.unset)
        written.update(result.written)
        if result.read != (0, 0):  # a worker's reads: the parent's counts do not see them
            report.read = {"objects": report.read.get("objects", 0) + result.read[0],
                           "bytes": report.read.get("bytes", 0) + result.read[1]}
        emit("volume", {"key": key, "files_done": report.files, "packed": report.bytes})

    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            interrupt.check()
            tally(_restore_task(repo, dest, task), task.key)
        return
    prepare_key(repo.keys.password)
    # With fork, the initializer's arguments reach the workers by inheritance, not by pickling.
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_init,
                                                initargs=(repo, dest, os.getpid())) as pool:
        futures = {}
        try:
            for task in tasks:
                futures[pool.submit(_restore_in_worker, task)] = task.key
            for future in concurrent.futures.as_completed(futures):
                interrupt.check()
                tally(future.result(), futures[future])
        except concurrent.futures.process.BrokenProcessPool:
            interrupt.check()
            raise LocalIOError("A restore process died (out of memory?); rerun the restore with --overwrite.") from None
        except BaseException:
            for future in futures:
                future.cancel()
            raise
