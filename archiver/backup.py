"""One run of one job: scan, decide, pack, upload volumes, then commit with the manifest.

Write ordering (docs/design.md): every volume is uploaded and checked first; the
manifest, uploaded last, is the commit. A run that dies before that leaves only
orphan volumes, which no manifest refers to and the lifecycle rule removes.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import concurrent.futures.process
import multiprocessing
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import xxhash

from . import chain as chain_mod
from . import interrupt
from .catalog import Catalog, TreeTable, path_key, path_name
from .clock import Clock, format_time
from .config import Config, JobConfig
from .errors import IntegrityError, LocalIOError, StoreError
from .generation import GenerationRef, decide_run, expires_from, lock_until
from .layout import manifest_key, new_run_id, volume_key
from .manifest import ManifestWriter, build_header, entry_of, prepare_key
from .synthetic import synthesize
from .pack import PackedVolume, PlannedFile, plan_volumes, write_volume, xxh3_file
from .repository import Repository, effective_lock_mode
from .scan import Entry, check_sources, walk
from .store import Retention, sha256_of

EMPTY_XXH3 = xxhash.xxh3_128(b"").hexdigest()
Progress = Callable[[str, dict[str, Any]], None]


@dataclass
class RunReport:
    job: str
    kind: str = ""
    reason: str = ""
    generation: int = 0
    generation_start: str = ""
    point: int = 0
    time: str = ""
    manifest_key: str = ""
    lock_mode: str = "none"
    lock_until: str = ""
    expires_from: str = ""
    files_scanned: int = 0
    bytes_scanned: int = 0
    added: int = 0
    changed: int = 0
    metadata_changed: int = 0
    removed: int = 0
    bytes_packed: int = 0
    bytes_uploaded: int = 0
    volumes: int = 0
    duration_s: float = 0.0
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)
    longterm: list[dict] = field(default_factory=list)
    kind_detail: str = ""
    synthetic: dict[str, Any] = field(default_factory=dict)

    @property
    def partial(self) -> bool:
        return bool(self.warnings)


def job_config(config: Config, job: JobConfig) -> dict[str, Any]:
    """The job config in force, recorded in every manifest so that drift can be seen later."""
    return {"sources": list(job.sources), "exclude": list(job.exclude), "one_file_system": job.one_file_system,
            "compression": config.volumes.compression, "level": config.volumes.level, "volume_size": config.volumes.size}


def sync_catalog(repo: Repository, catalog: Catalog, names: list, workdir: Path) -> bool:
    """Make the catalog reflect the newest committed point of ``names``. Returns False when that chain is broken."""
    latest = names[-1] if names else None
    if latest is None:
        if catalog.tip is not None:
            catalog.tree.clear()
            catalog.set_meta({"tip_key": None, "tip_sha256": None, "tip_version": None})
        return True
    if chain_mod.missing_points(names, latest):
        catalog.set_meta({"broken_key": latest.key})
        return False
    if catalog.tip == latest.key:
        return True
    return rebuild_catalog(repo, catalog, names, workdir)


def rebuild_catalog(repo: Repository, catalog: Catalog, names: list, workdir: Path) -> bool:
    """Replay the newest generation's chain into the catalog. Stat data is lost, so the next scan re-hashes."""
    latest = names[-1]
    catalog.conn.execute("BEGIN")
    try:
        catalog.conn.execute("DELETE FROM objects")
        tip = chain_mod.replay(repo, names, latest, catalog.tree, workdir,
                               on_point=lambda m: catalog.record_objects(m.objects))
    except (IntegrityError, StoreError):
        catalog.conn.execute("ROLLBACK")
        catalog.conn.execute("BEGIN")
        catalog.tree.clear()
        catalog.set_meta({"tip_key": None, "tip_sha256": None, "tip_version": None, "broken_key": latest.key})
        catalog.conn.execute("COMMIT")
        return False
    catalog.set_meta({"tip_key": tip.key, "tip_sha256": tip.sha256, "tip_version": tip.version_id,
                      "gseq": str(latest.gseq), "gstart": format_time(latest.gstart), "broken_key": None})
    catalog.conn.execute("COMMIT")
    return True


def _row_from_entry(entry: Entry) -> dict[str, Any]:
    return {"path": path_key(entry.name), "type": entry.type, "size": entry.size, "mtime_ns": entry.mtime_ns,
            "mode": entry.mode, "uid": entry.uid, "gid": entry.gid, "dev": entry.dev, "ino": entry.ino,
            "target": entry.target, "xxh3": EMPTY_XXH3 if entry.type == "file" and entry.size == 0 else None}


def _meta_differs(new: Any, old: Any) -> bool:
    return (new["mtime_ns"], new["mode"], new["uid"], new["gid"], new["target"]) != (
        old["mtime_ns"], old["mode"], old["uid"], old["gid"], old["target"])


_META_SAME = " AND ".join(f"scan.{c} IS t.{c}" for c in ("mtime_ns", "mode", "uid", "gid", "target"))


def classify(scan: TreeTable, previous: TreeTable | None, report: RunReport, warn: Callable[[str], None]) -> None:
    """Set each scanned row's op: "pack" (content to store), "add"/"change"/"meta" (manifest only) or NULL.

    The common cases are settled in SQL in one pass; only rows that need a decision per file
    (new, changed size, or same size with another mtime or inode) come back to Python.
    """
    conn = scan.conn
    count, total = conn.execute("SELECT count(*), coalesce(sum(size), 0) FROM scan").fetchone()
    report.files_scanned, report.bytes_scanned = count, total
    if previous is None:
        conn.execute("UPDATE scan SET op = CASE WHEN type = 'file' AND size > 0 THEN 'pack' ELSE 'add' END")
        return
    # Same type and identical stat (files) or same type (dirs, links): unchanged, or metadata only.
    # '=' marks a settled row until the end of classification.
    conn.execute(f"""
        UPDATE scan SET xxh3 = t.xxh3, obj_key = t.obj_key, obj_version = t.obj_version,
               obj_sha256 = t.obj_sha256, entry = t.entry,
               op = CASE WHEN {_META_SAME} THEN '=' ELSE 'meta' END
        FROM tree AS t
        WHERE t.path = scan.path AND t.type = scan.type AND (scan.type != 'file' OR (
              t.size = scan.size AND t.mtime_ns = scan.mtime_ns AND t.ino = scan.ino AND t.dev = scan.dev))""")
    for row in scan.rows("op IS NULL"):
        interrupt.check()
        new = dict(row)
        old = previous.get(row["path"])
        if old is None or old["type"] != new["type"]:
            new["op"] = "pack" if new["type"] == "file" and new["size"] > 0 else ("add" if old is None else "change")
        elif new["size"] != old["size"]:
            new["op"] = "pack" if new["size"] > 0 else "change"
        else:
            # Same size, other mtime or inode: confirm by content before storing it again.
            absolute = "/" + path_name(new["path"])
            try:
                digest = xxh3_file(absolute) if new["size"] else EMPTY_XXH3
            except OSError as exc:
                warn(f"{absolute} cannot be read ({exc.strerror}); the previous version is kept")
                scan.put({**dict(old), "op": "="})
                continue
            if digest == old["xxh3"]:
                new.update({k: old[k] for k in ("xxh3", "obj_key", "obj_version", "obj_sha256", "entry")})
                new["op"] = "meta" if _meta_differs(new, old) else "="
            else:
                new["op"] = "pack"
        scan.put(new)
    conn.execute("UPDATE scan SET op = NULL WHERE op = '='")


def _planned(scan: TreeTable) -> Iterator[PlannedFile]:
    for row in scan.rows("op = 'pack'"):
        yield PlannedFile("/" + path_name(row["path"]), row["size"])


def run_job(
    repo: Repository,
    config: Config,
    job: JobConfig,
    *,
    clock: Clock,
    state_dir: Path,
    force_full: bool = False,
    full_mode: str = "auto",
    progress: Progress | None = None,
    spool_parent: str | None = None,
) -> RunReport:
    started = time.monotonic()
    requests_before = repo.store.counts.snapshot()
    check_sources(job, str(config.path))
    report = RunReport(job=job.name)
    emit = progress or (lambda event, data: None)

    def warn(message: str) -> None:
        report.warnings.append(message)
        emit("warning", {"message": message})

    def on_scan(level: str, message: str) -> None:
        (warn if level == "warning" else report.notes.append)(message)

    try:
        spool = Path(tempfile.mkdtemp(prefix="genarc-run-", dir=spool_parent))
    except OSError as exc:
        raise LocalIOError(f"Cannot create a temporary directory for volumes: {exc.strerror}; set TMPDIR to a writable disk.") from exc
    catalog = Catalog(Catalog.location(state_dir, repo.id, job.name))
    try:
        names = repo.manifest_names(job.name)
        latest = names[-1] if names else None
        chain_ok = sync_catalog(repo, catalog, names, spool)
        if not chain_ok:
            warn(f"the chain of the newest generation ({catalog.get_meta('broken_key')}) is broken; this run opens a new generation with a full")
        now = clock.now()
        tip_key = catalog.tip
        latest_ref = GenerationRef(latest.gseq, latest.gstart) if latest else None
        decision = decide_run(now, latest_ref, config.retention, force_full=force_full, chain_ok=chain_ok)
        gen = decision.generation
        pseq = latest.pseq + 1 if decision.kind == "incremental" and latest else 1
        run_id = new_run_id()
        lock_date = lock_until(gen.start, config.retention)
        lock_mode = effective_lock_mode(config.lock_mode, repo.store.capabilities, config.repository_url)
        retention = Retention(lock_mode, lock_date) if lock_mode != "none" else None
        report.kind, report.reason, report.generation, report.point = decision.kind, decision.reason, gen.seq, pseq
        report.generation_start, report.time = format_time(gen.start), format_time(now)
        report.lock_mode, report.lock_until = lock_mode, format_time(lock_date)
        report.expires_from = format_time(expires_from(gen.start, config.retention))
        emit("start", {"job": job.name, "kind": decision.kind, "generation": gen.seq, "point": pseq})

        # Scan into a fresh table; the catalog's tree is the previous point.
        catalog.conn.execute("DROP TABLE IF EXISTS scan")
        scan = TreeTable(catalog.conn, "scan")
        catalog.conn.execute("BEGIN")
        for entry in walk(job, on_scan):
            interrupt.check()
            scan.put(_row_from_entry(entry))
        catalog.conn.execute("COMMIT")
        previous = catalog.tree if decision.kind == "incremental" else None
        synthetic = decision.kind == "full" and _synthetic_allowed(config, repo, catalog, chain_ok, gen, full_mode,
                                                                   report)
        catalog.conn.execute("BEGIN")
        classify(scan, catalog.tree if synthetic else previous, report, warn)
        catalog.conn.execute("COMMIT")
        emit("scanned", {"files": report.files_scanned, "bytes": report.bytes_scanned})

        objects: list[dict[str, Any]] = []
        if synthetic:
            catalog.conn.execute("BEGIN")
            result = synthesize(repo, job.name, scan, catalog.content_bytes(), gen, run_id, retention,
                                config.fulls.copy_threshold, objects, report.notes.append)
            catalog.conn.execute("COMMIT")
            report.synthetic = dataclasses.asdict(result)
            report.kind_detail = "synthetic full"
        elif decision.kind == "full":
            report.kind_detail = "active full"
        to_pack = catalog.conn.execute("SELECT count(*), coalesce(sum(size), 0) FROM scan WHERE op = 'pack'").fetchone()
        emit("planned", {"files": to_pack[0], "bytes": to_pack[1]})
        _pack_and_upload(repo, config, job, scan, previous, objects, gen, pseq, run_id, retention, spool, report, warn,
                         emit, first_index=report.synthetic.get("next_index", 1))

        writer = ManifestWriter(spool)
        if previous is not None:
            for old in previous.rows():
                if scan.get(old["path"]) is None:
                    writer.add({"op": "remove", "path": path_name(old["path"])})
                    report.removed += 1
        obj_index = {o["key"]: i for i, o in enumerate(objects)}
        for row in scan.rows():
            op = "add" if previous is None else row["op"]
            if op is None:
                continue
            entry = entry_of(row, path_name(row["path"]), op, obj_index)
            if "obj" not in entry and previous is None and row["type"] == "file" and row["size"]:
                raise IntegrityError(f"internal: a full lists {entry['path']!r} without a volume of its own generation")
            writer.add(entry)
            if previous is not None:
                report.added += op == "add"
                report.changed += op == "change"
                report.metadata_changed += op == "meta"
        if previous is None:
            report.added = writer.count
        header = build_header(
            job=job.name, repository=repo.id, kind=decision.kind, reason=decision.reason,
            generation_seq=gen.seq, generation_start=format_time(gen.start), point_seq=pseq,
            point_time=format_time(now), run_id=run_id,
            parent=None if decision.kind == "full" else {
                "key": tip_key, "sha256": catalog.get_meta("tip_sha256"), "version_id": catalog.get_meta("tip_version")},
            previous_generation_tip=({"key": tip_key, "sha256": catalog.get_meta("tip_sha256")}
                                     if decision.kind == "full" and tip_key else None),
            lock_mode=lock_mode, lock_until=format_time(lock_date), policy=config.retention,
            job_config=job_config(config, job), objects=objects,
            tree={"digest": scan.digest(), "entries": scan.count(), "bytes": report.bytes_scanned},
            warnings=len(report.warnings))
        packed = writer.finish(header, repo.keys)
        interrupt.check()
        mkey = manifest_key(job.name, gen.seq, gen.start, pseq, now, run_id)
        info = repo.store.put(mkey, packed, sha256=sha256_of(packed), retention=retention)  # the commit
        report.manifest_key = mkey
        report.bytes_uploaded += info.size

        # The catalog follows the repository: the scanned tree becomes the tip.
        catalog.conn.execute("BEGIN")
        catalog.record_objects(objects, replace=decision.kind == "full")
        catalog.conn.execute("UPDATE scan SET op = NULL")
        catalog.conn.execute("DROP TABLE tree")
        catalog.conn.execute("ALTER TABLE scan RENAME TO tree")
        catalog.set_meta({"tip_key": mkey, "tip_sha256": sha256_of(packed), "tip_version": info.version_id,
                          "gseq": str(gen.seq), "gstart": format_time(gen.start), "broken_key": None})
        catalog.conn.execute("COMMIT")
        report.requests = {k: v - requests_before[k] for k, v in repo.store.counts.snapshot().items()}
        report.duration_s = round(time.monotonic() - started, 3)
        emit("done", {"report": report})
        return report
    finally:
        if catalog.conn.in_transaction:
            catalog.conn.execute("ROLLBACK")
        catalog.close()
        shutil.rmtree(spool, ignore_errors=True)


def _synthetic_allowed(config: Config, repo: Repository, catalog: Catalog, chain_ok: bool, gen: GenerationRef,
                       full_mode: str, report: RunReport) -> bool:
    """A new generation opens synthetic unless an active full is asked for, due, or impossible."""
    if full_mode == "active" or not config.fulls.synthetic or catalog.tip is None or not chain_ok:
        return False
    if config.fulls.active_every and gen.seq % config.fulls.active_every == 0:
        report.notes.append(f"generation {gen.seq} opens with an active full (every {config.fulls.active_every})")
        return False
    if not repo.store.capabilities.server_side_copy:
        report.notes.append("the store has no server-side copy: this generation opens with an active full")
        return False
    return True


def _pack_and_upload(repo: Repository, config: Config, job: JobConfig, scan: TreeTable, previous: TreeTable | None,
                     objects: list[dict[str, Any]], gen: GenerationRef, pseq: int, run_id: str,
                     retention: Retention | None, spool: Path, report: RunReport,
                     warn: Callable[[str], None], emit: Progress, first_index: int = 1) -> None:
    settings = config.volumes
    plans = plan_volumes(_planned(scan), method=settings.compression, level=settings.level,
                         volume_size=settings.size, max_files=settings.max_files, first_index=first_index)
    workers = settings.effective_workers
    password = repo.keys.password

    def upload(volume: PackedVolume) -> None:
        try:
            interrupt.check()
            ok = [f for f in volume.files if f.status == "ok"]
            key = volume_key(job.name, gen.seq, gen.start, pseq, run_id, volume.index)
            if ok:
                info = repo.store.put(key, Path(volume.path), sha256=volume.sha256, retention=retention)
                objects.append({"key": key, "size": volume.size, "sha256": volume.sha256,
                                "version_id": info.version_id, "method": volume.method,
                                "content_bytes": sum(f.size for f in ok)})
                report.volumes += 1
                report.bytes_uploaded += volume.size
        finally:
            os.unlink(volume.path)
        catalog_conn = scan.conn
        catalog_conn.execute("BEGIN")
        for packed in volume.files:
            name = packed.path.lstrip("/")
            pkey = path_key(name)
            if packed.status == "ok":
                row = dict(scan.get(pkey))
                old = previous.get(pkey) if previous is not None else None
                row.update(xxh3=packed.xxh3, size=packed.size, mtime_ns=packed.mtime_ns, mode=packed.mode,
                           uid=packed.uid, gid=packed.gid, dev=packed.dev, ino=packed.ino, obj_key=key,
                           obj_version=info.version_id, obj_sha256=volume.sha256, entry=packed.entry,
                           op="add" if old is None else "change")
                scan.put(row)
                report.bytes_packed += packed.size
                continue
            warn(f"{packed.path} {packed.message}" + ("; the previous version is kept" if previous is not None and previous.get(pkey) else "; it is not in this restore point"))
            old = previous.get(pkey) if previous is not None else None
            if old is not None:
                scan.put({**dict(old), "op": None})
            else:
                scan.remove(pkey)
        catalog_conn.execute("COMMIT")
        emit("volume", {"index": volume.index, "bytes": volume.size, "files": len(volume.files),
                        "uploaded": report.bytes_uploaded, "packed": report.bytes_packed})

    plan_list_iter = iter(plans)
    if workers <= 1:
        for plan in plan_list_iter:
            interrupt.check()
            upload(write_volume(plan, str(spool / f"v{plan.index:06d}.7z"), password))
        return
    # At most `workers` volumes exist on local disk at once: a finished one is uploaded before the next is planned.
    prepare_key(password)
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                                initializer=interrupt.worker_init) as pool:
        pending: set[concurrent.futures.Future] = set()
        try:
            for plan in plan_list_iter:
                interrupt.check()
                pending.add(pool.submit(write_volume, plan, str(spool / f"v{plan.index:06d}.7z"), password))
                if len(pending) >= workers:
                    done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                    for future in done:
                        upload(future.result())
            while pending:
                done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    upload(future.result())
        except concurrent.futures.process.BrokenProcessPool:
            interrupt.check()  # the workers were signalled along with us: report the interruption
            raise LocalIOError("A volume packing process died (out of memory?); nothing was committed, rerun.") from None
        except BaseException:
            for future in pending:
                future.cancel()
            raise
