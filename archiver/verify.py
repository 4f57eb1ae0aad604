"""Verify: the manifest chains, their HMACs and tree digests, and every object they need.

Plain verify checks that each referenced object exists with its size and SHA-256
(from the store's own checksum where it reports one, else by reading it). ``--deep``
also decrypts every volume and checks every entry's xxh3. Objects that no
manifest refers to (left by crashed runs) are reported as orphans: harmless,
never referenced, and removed by the lifecycle rule.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from . import chain as chain_mod
from . import interrupt
from .catalog import TreeTable, connect, path_key, path_name
from .errors import GenarcError
from .hazards import newly_unsafe
from .clock import Clock
from .history import History, Point, describe
from .layout import parse_manifest_key, volume_generation_prefix, volumes_prefix
from .manifest import Manifest
from .repository import Repository
from .sevenzip import EntryTooLarge, HashSink, extract_entries
from .store import sha256_of

Progress = Callable[[str, dict[str, Any]], None]


@dataclass
class VerifyReport:
    jobs: list[str] = field(default_factory=list)
    generations: int = 0
    points: int = 0
    objects: int = 0
    bytes: int = 0
    entries_checked: int = 0
    orphans: list[str] = field(default_factory=list)
    tampered: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(repo: Repository, jobs: list[str], *, deep: bool, workdir: Path, clock: Clock,
           progress: Progress | None = None, trusted_before: datetime | None = None) -> VerifyReport:
    emit = progress or (lambda event, data: None)
    report = VerifyReport(jobs=list(jobs))
    workdir.mkdir(parents=True, exist_ok=True)
    conn = connect(workdir / "verify.sqlite")
    for table in ("objects", "expect"):
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    TreeTable.drop(conn, "replay")
    conn.execute("CREATE TABLE objects (key TEXT PRIMARY KEY, version_id TEXT, size INTEGER, sha256 TEXT, gseq INTEGER)")
    conn.execute("CREATE TABLE expect (key TEXT, entry TEXT, xxh3 TEXT, size INTEGER, path BLOB, "
                 "PRIMARY KEY (key, entry, path))")  # several paths may share one entry
    try:
        for job in jobs:
            history = History.read(repo, job, clock)
            _verify_chains(repo, history, conn, workdir, report, trusted_before)
            known = {row[0] for row in conn.execute("SELECT key FROM objects")}
            for info in repo.store.list(volumes_prefix(job)):
                if info.key not in known:
                    report.orphans.append(info.key)
            for key in history.versions:
                if parse_manifest_key(key) is None:
                    report.orphans.append(key)
            if repo.store.capabilities.versioning:
                _find_tampering(repo, history, conn, report)
        for row in conn.execute("SELECT key, version_id, size, sha256 FROM objects ORDER BY key").fetchall():
            interrupt.check()
            _verify_object(repo, conn, row, deep, workdir, report)
            emit("object", {"key": row[0], "checked": report.objects})
    finally:
        conn.close()
    return report


def _find_tampering(repo: Repository, history: History, conn: Any, report: VerifyReport) -> None:
    """Keys whose newest version is not the one genarc wrote: overwritten, delete-marked or hidden since.

    Reads are pinned to the recorded version, so restore is unaffected; but someone with write
    access tried to change history, and the user must hear of it.
    """
    recorded = {row[0]: row[1] for row in conn.execute("SELECT key, version_id FROM objects")}
    for point in history.points:
        recorded.setdefault(point.key, point.name.version_id)
    newest = {info.key: info for info in repo.store.list_versions(f"{history.job}/") if info.is_latest}
    found = 0
    for key, version_id in sorted(recorded.items()):
        latest = newest.get(key)
        if latest is None or version_id is None:
            continue
        if latest.is_delete_marker or latest.hidden:
            report.tampered.append(f"{key}: a delete marker or hide marker now hides it (the recorded version is intact)")
            found += 1
        elif latest.version_id != version_id:
            report.tampered.append(f"{key}: a newer version was written over it (the recorded version is intact)")
            found += 1
    if found:
        report.problems.append(f"{found} object(s) of job {history.job} were overwritten or hidden after genarc wrote "
                               "them; restores read the recorded versions, but check who holds this repository's keys")


def _verify_chains(repo: Repository, history: History, conn: Any, workdir: Path, report: VerifyReport,
                   trusted_before: datetime | None) -> None:
    """Every chain, followed by parent hashes from each point no other point continues."""
    job = history.job
    if not history.points:
        report.problems.append(f"job {job}: no restore points")
        return
    history.check(repo, workdir)
    for warning in history.warnings:
        report.problems.append(f"job {job}: {warning}")
    for point in history.stored_before(trusted_before):
        if point.suspect and "unreadable" not in point.flags:
            report.problems.append(f"job {job}: suspect {describe(point)}")
    verified: set[str] = set()
    for tip in history.leaves(trusted_before):
        _verify_chain(repo, history, tip, conn, workdir, report, verified)
    report.generations += len({(p.name.gseq, p.name.gstart) for p in history.points if p.key in verified})
    history.drop(workdir)


def _verify_chain(repo: Repository, history: History, tip: Point, conn: Any, workdir: Path, report: VerifyReport,
                  verified: set[str]) -> None:
    prefix = volume_generation_prefix(history.job, tip.name.gseq, tip.name.gstart)
    tree = TreeTable(conn, "replay")
    unsafe_seen: set[tuple[bytes, str]] = set()

    def record(manifest: Manifest) -> None:
        if manifest.key not in verified:
            report.points += 1
            verified.add(manifest.key)
        for path, reason in newly_unsafe(tree, unsafe_seen):  # the tree as of this point, before anyone restores it
            report.problems.append(f"manifest {manifest.key}: unsafe entry {path_name(path)}: {reason}")
        for obj in manifest.objects:
            if not obj["key"].startswith(prefix):
                report.problems.append(f"manifest {manifest.key} refers to {obj['key']}, outside its own generation")
            conn.execute("INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?)",
                         (obj["key"], obj.get("version_id"), obj["size"], obj["sha256"], tip.name.gseq))
        for entry in manifest.entries():
            if "obj" in entry:
                key = manifest.objects[entry["obj"]]["key"]
                conn.execute("INSERT OR REPLACE INTO expect VALUES (?, ?, ?, ?, ?)",
                             (key, entry["entry"], entry["xxh3"], entry["size"], path_key(entry["path"])))
            for part in entry.get("parts") or ():  # a file larger than a volume: each part is an entry of its own
                conn.execute("INSERT OR REPLACE INTO expect VALUES (?, ?, ?, ?, ?)",
                             (manifest.objects[part["obj"]]["key"], part["entry"], part["xxh3"], part["size"],
                              path_key(entry["path"])))

    try:
        chain_mod.replay(repo, history, tip, tree, workdir, on_point=record)
    except GenarcError as exc:
        report.problems.append(f"job {history.job}, generation {tip.name.gseq}: {exc.message}")
    finally:
        TreeTable.drop(conn, "replay")


def _verify_object(repo: Repository, conn: Any, row: Any, deep: bool, workdir: Path, report: VerifyReport) -> None:
    key, version_id, size, sha256 = row
    report.objects += 1
    try:
        info = repo.store.stat(key, version_id=version_id)
    except GenarcError as exc:
        report.problems.append(f"object {key}: {exc.message}")
        return
    if info.size != size:
        report.problems.append(f"object {key}: {info.size} bytes stored, {size} recorded")
        return
    report.bytes += size
    if info.sha256 and not deep:
        if info.sha256 != sha256:
            report.problems.append(f"object {key}: SHA-256 reported by the store differs from the recorded one")
        return
    local = workdir / "object.bin"
    try:
        repo.store.download(key, local, version_id=version_id)
        if sha256_of(local) != sha256:
            report.problems.append(f"object {key}: content does not match its recorded SHA-256 (corrupt or altered)")
            return
        if deep:
            _verify_entries(repo, conn, key, local, workdir, report)
    except GenarcError as exc:
        report.problems.append(f"object {key}: {exc.message}")
    finally:
        local.unlink(missing_ok=True)


def _verify_entries(repo: Repository, conn: Any, key: str, local: Path, workdir: Path, report: VerifyReport) -> None:
    expected = conn.execute("SELECT entry, xxh3, size, path FROM expect WHERE key = ?", (key,)).fetchall()
    sizes: dict[str, int] = {}
    for entry, _, size, _ in expected:
        sizes[entry] = max(size, sizes.get(entry, 0))
    try:
        sinks = extract_entries(local, repo.keys.password, sorted(sizes), workdir / "x",
                                lambda entry: HashSink(limit=sizes[entry]) if entry in sizes else None)
    except Exception as exc:  # py7zr raises many unrelated types for damaged data
        why = ("holds an entry larger than recorded" if isinstance(exc, EntryTooLarge)
               else f"cannot be decrypted or decoded ({type(exc).__name__})")
        report.problems.append(f"object {key}: {why}")
        return
    finally:
        shutil.rmtree(workdir / "x", ignore_errors=True)
    for entry, xxh3, size, path in expected:
        sink = sinks.get(entry)
        report.entries_checked += 1
        if sink is None or not sink.matches(xxh3, size):
            report.problems.append(f"object {key}: the content of {path_name(path)} fails its xxh3 check")
