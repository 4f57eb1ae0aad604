"""Restore: replay a point's chain, then write files, links and directories into a target.

Every file's xxh3 is checked as it is written; every volume's SHA-256 is checked
before it is opened. A damaged volume does not stop the restore: everything else
is restored, and each file that could not be is named at the end.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import multiprocessing
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from . import chain as chain_mod
from . import interrupt
from .catalog import TreeTable, path_name
from .clock import format_time
from .errors import IntegrityError, LocalIOError, ObjectNotFound, StoreError, UsageError
from .layout import ManifestName
from .repository import Repository
from .scan import glob_regex
from .sevenzip import HashSink, extract_entries, prepare_key
from .store import sha256_of

Progress = Callable[[str, dict[str, Any]], None]


@dataclass
class RestoreReport:
    job: str
    generation: int
    point: int
    time: str
    target: str
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)


def resolve_point(names: list[ManifestName], job: str, generation: int | None = None, point: int | None = None,
                  at: datetime | None = None) -> ManifestName:
    """Pick a restore point: the newest, the newest of a generation, a given point, or the newest at a time."""
    if not names:
        raise UsageError(f"Job {job!r} has no restore points in this repository.")
    chosen = names
    if generation is not None:
        chosen = [n for n in chosen if n.gseq == generation]
        if not chosen:
            raise UsageError(f"Job {job!r} has no generation {generation}; `genarc list {job}` shows them.")
    if point is not None:
        chosen = [n for n in chosen if n.pseq == point]
        if not chosen:
            raise UsageError(f"Job {job!r} has no point {point} in that generation; `genarc list {job}` shows them.")
    if at is not None:
        chosen = [n for n in chosen if n.point_time <= at]
        if not chosen:
            raise UsageError(f"Job {job!r} has no restore point at or before {format_time(at)}.")
    return max(chosen, key=lambda n: (n.point_time, n.gseq, n.pseq))


class _Selection:
    def __init__(self, includes: list[str]) -> None:
        self.patterns = [glob_regex(p.strip("/")) for p in includes]

    def wants(self, name: str) -> bool:
        if not self.patterns:
            return True
        parts = name.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        return any(p.match(prefix) for p in self.patterns for prefix in prefixes)


def _safe_destination(target: Path, name: str) -> Path:
    parts = name.split("/")
    if not name or any(p in ("", ".", "..") for p in parts):
        raise IntegrityError(f"The manifest names an unsafe path {name!r}; refusing to restore it.")
    return target.joinpath(*parts)


def _open_destination(dest: Path) -> HashSink:
    """A sink that writes one restored file straight to its place, hashing as it goes."""
    if dest.is_symlink():
        dest.unlink()
    return HashSink(open(dest, "wb"))


def _apply_metadata(dest: Path, row: Any, is_root: bool) -> None:
    if is_root and row["uid"] is not None:
        try:
            os.lchown(dest, row["uid"], row["gid"])
        except OSError:
            pass
    if row["type"] != "symlink":
        os.chmod(dest, row["mode"])
    os.utime(dest, ns=(row["mtime_ns"], row["mtime_ns"]), follow_symlinks=False)


def restore(repo: Repository, job: str, name: ManifestName, names: list[ManifestName], *, target: Path,
            includes: list[str], overwrite: bool, workdir: Path, progress: Progress | None = None,
            workers: int = 1) -> RestoreReport:
    emit = progress or (lambda event, data: None)
    workdir.mkdir(parents=True, exist_ok=True)
    report = RestoreReport(job, name.gseq, name.pseq, format_time(name.point_time), str(target))
    with chain_mod.scratch_tree(workdir, "restore.sqlite") as tree:
        chain_mod.replay(repo, names, name, tree, workdir)
        selected = _select(tree, includes, f"point {name.gseq}.{name.pseq} of job {job!r}")
        if not overwrite:
            _refuse_clashes(selected, target)
        is_root = hasattr(os, "geteuid") and os.geteuid() == 0
        try:
            target.mkdir(parents=True, exist_ok=True)
            _restore_entries(selected, target, is_root, report)
            tasks = _volume_tasks(selected, target, workdir, is_root)
            emit("planned", {"files": sum(len(t.rows) for t in tasks),
                             "bytes": sum(r["size"] for t in tasks for r in t.rows)})
            _restore_volumes(repo, tasks, workers, report, emit)
            emit("done", {})
            for row in sorted(selected.rows("type = 'dir'"), key=lambda r: r["path"], reverse=True):
                _apply_metadata(_safe_destination(target, path_name(row["path"])), row, is_root)
                report.dirs += 1
        except OSError as exc:
            raise LocalIOError(f"Cannot write into the restore target {target}: {exc.strerror} ({exc.filename}); "
                               "free space or fix permissions, then rerun with --overwrite.") from exc
    if report.errors:
        raise RestoreFailed(report)
    return report


def _select(tree: TreeTable, includes: list[str], what: str) -> TreeTable:
    """The rows the --include patterns ask for, in a table of their own."""
    selection = _Selection(includes)
    tree.conn.execute("DROP TABLE IF EXISTS selected")  # a reused workdir must not leak an earlier selection
    selected = TreeTable(tree.conn, "selected")
    tree.conn.execute("BEGIN")
    for row in tree.rows():
        if selection.wants(path_name(row["path"])):
            selected.put(dict(row))
    tree.conn.execute("COMMIT")
    if selected.count() == 0:
        raise UsageError(f"Nothing in {what} matches the --include patterns.")
    return selected


def _refuse_clashes(selected: TreeTable, target: Path) -> None:
    clashes = [path_name(r["path"]) for r in selected.rows("type != 'dir'")
               if os.path.lexists(_safe_destination(target, path_name(r["path"])))]
    if clashes:
        raise UsageError(
            f"The target already holds {len(clashes)} of the files to restore (first: {target / clashes[0]}); "
            "pass --overwrite or choose an empty target."
        )


def _restore_entries(selected: TreeTable, target: Path, is_root: bool, report: RestoreReport) -> None:
    """Directories, symlinks and empty files: everything that needs no volume."""
    for row in selected.rows("type = 'dir'"):
        _safe_destination(target, path_name(row["path"])).mkdir(parents=True, exist_ok=True)
    for row in selected.rows("type != 'dir'"):
        dest = _safe_destination(target, path_name(row["path"]))
        dest.parent.mkdir(parents=True, exist_ok=True)
        if row["type"] == "symlink":
            if os.path.lexists(dest):
                dest.unlink()
            os.symlink(row["target"], dest)
            _apply_metadata(dest, row, is_root)
            report.symlinks += 1
        elif not row["size"]:
            if dest.is_symlink():
                dest.unlink()
            dest.write_bytes(b"")
            _apply_metadata(dest, row, is_root)
            report.files += 1


def _volume_tasks(selected: TreeTable, target: Path, workdir: Path, is_root: bool) -> list["_VolumeTask"]:
    conn = selected.conn
    volumes = conn.execute(
        "SELECT DISTINCT obj_key, obj_version, obj_sha256 FROM selected WHERE type = 'file' AND size > 0 ORDER BY obj_key"
    ).fetchall()
    tasks = []
    for index, volume in enumerate(volumes):
        rows = conn.execute("SELECT * FROM selected WHERE obj_key = ? AND type = 'file' AND size > 0",
                            (volume["obj_key"],)).fetchall()
        tasks.append(_VolumeTask(volume["obj_key"], volume["obj_version"], volume["obj_sha256"],
                                 [dict(r) for r in rows], target, workdir / f"v{index}", is_root))
    return tasks


class RestoreFailed(IntegrityError):
    def __init__(self, report: RestoreReport) -> None:
        self.report = report
        super().__init__(
            f"{len(report.errors)} file(s) could not be restored intact; first: {report.errors[0]}. "
            "Everything else was restored; try an older restore point for these files."
        )


@dataclass
class _VolumeTask:
    key: str
    version_id: str | None
    sha256: str
    rows: list[dict[str, Any]]
    target: Path
    workdir: Path
    is_root: bool


@dataclass
class _VolumeResult:
    files: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)


def _restore_volume(repo: Repository, task: _VolumeTask) -> _VolumeResult:
    key, rows, result = task.key, task.rows, _VolumeResult()
    task.workdir.mkdir(parents=True, exist_ok=True)
    local = task.workdir / "volume.7z"
    try:
        repo.store.download(key, local, version_id=task.version_id)
    except (ObjectNotFound, StoreError) as exc:
        result.errors.extend(f"{path_name(r['path'])}: object {key} cannot be read ({exc.message})" for r in rows)
        return result
    try:
        if sha256_of(local) != task.sha256:
            result.errors.extend(
                f"{path_name(r['path'])}: object {key} does not match its recorded SHA-256 (corrupt or altered)"
                for r in rows)
            return result
        wanted = {r["entry"]: _safe_destination(task.target, path_name(r["path"])) for r in rows}
        made: dict[str, HashSink] = {}

        def make(entry: str) -> HashSink | None:
            if entry in wanted:
                made[entry] = _open_destination(wanted[entry])
            return made.get(entry)

        try:
            extract_entries(local, repo.keys.password, list(wanted), task.workdir / "x", make)
        except OSError:
            raise
        except Exception as exc:  # py7zr raises many unrelated types for damaged data
            result.errors.extend(
                f"{path_name(r['path'])}: object {key} cannot be decoded ({type(exc).__name__})" for r in rows)
            return result
        finally:
            for sink in made.values():
                sink.close()
        for row in rows:
            _check_restored(row, made.get(row["entry"]), wanted[row["entry"]], key, task.is_root, result)
    finally:
        shutil.rmtree(task.workdir, ignore_errors=True)
    return result


def _check_restored(row: dict[str, Any], made: HashSink | None, dest: Path, key: str, is_root: bool,
                    result: _VolumeResult) -> None:
    if made is None or not made.matches(row["xxh3"], row["size"]):
        result.errors.append(f"{path_name(row['path'])}: content from object {key} fails its xxh3 check")
        if made is not None:
            dest.unlink(missing_ok=True)  # never leave bytes that failed their check where the file belongs
        return
    _apply_metadata(dest, row, is_root)
    result.files += 1
    result.bytes += row["size"]


_WORKER_REPO: Repository | None = None  # in a restore worker process only: set by its initializer


def _worker_init(repo: Repository) -> None:
    global _WORKER_REPO
    interrupt.worker_init()
    _WORKER_REPO = repo


def _restore_in_worker(task: _VolumeTask) -> _VolumeResult:
    assert _WORKER_REPO is not None
    return _restore_volume(_WORKER_REPO, task)


def _restore_volumes(repo: Repository, tasks: list[_VolumeTask], workers: int, report: RestoreReport,
                     emit: Progress) -> None:
    """Volumes are independent: restore them in parallel processes (py7zr holds the GIL)."""

    def tally(result: _VolumeResult, key: str) -> None:
        report.files += result.files
        report.bytes += result.bytes
        report.errors.extend(result.errors)
        emit("volume", {"key": key, "files_done": report.files, "packed": report.bytes})

    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            interrupt.check()
            tally(_restore_volume(repo, task), task.key)
        return
    prepare_key(repo.keys.password)
    # With fork, the initializer's arguments reach the workers by inheritance, not by pickling.
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_init,
                                                initargs=(repo,)) as pool:
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
