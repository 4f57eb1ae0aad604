"""One run of one job: scan, decide, pack, upload volumes, then commit with the manifest.

Write ordering (docs/design.md): every volume is uploaded and checked first; the
manifest, uploaded last, is the commit. A run that dies before that leaves only
orphan volumes, which no manifest refers to and the lifecycle rule removes.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import contextlib
import dataclasses
import multiprocessing
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

from . import chain as chain_mod
from . import interrupt, processes, tripwire
from .catalog import PARALLEL_DIGEST_ROWS, Catalog, TreeDigest, TreeTable, path_name
from .changes import Op, ScanTable, Sharing, scanned
from .clock import Clock, format_time
from .config import Config, JobConfig
from .errors import IntegrityError, LocalIOError, StoreError
from .history import History, Point, describe
from .generation import GenerationRef, RunDecision, decide_run, expires_from
from .layout import new_run_id
from .pack import PackedVolume, PlannedFile, plan_volumes, source_root, write_volume
from .point import CommittedPoint, PointWriter, lock_plan
from .repository import Repository
from .scan import check_sources
from .sevenzip import prepare_key
from .store import SpoolFile
from .synthetic import synthesize
from .tripwire import Measurer, Profile, Protection, TripState, Verdict
from .units import human_bytes
from .uploads import UploadQueue

Progress = Callable[[str, dict[str, Any]], None]
# A file whose ctime is this close to (or after) the start of the scan that read it is confirmed by content next run:
# a write just after the read, in the same tick of a coarse file-system clock, leaves the stat the scan saw.
RACY_MARGIN_NS = 2 * 10**9


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
    unprotected: str = ""  # why nothing is locked or expired here (a local directory); "" on a store that locks
    files_scanned: int = 0
    bytes_scanned: int = 0
    added: int = 0
    changed: int = 0
    metadata_changed: int = 0
    removed: int = 0
    bytes_packed: int = 0
    bytes_uploaded: int = 0
    shared_files: int = 0  # moved, renamed or copied: referred to content the generation stores, not uploaded
    shared_bytes: int = 0
    volumes: int = 0
    duration_s: float = 0.0
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)
    longterm: list[dict] = field(default_factory=list)
    kind_detail: str = ""
    synthetic: dict[str, Any] = field(default_factory=dict)
    suspicion: dict[str, Any] = field(default_factory=dict)  # the tripwire's profile, score and protection

    @property
    def partial(self) -> bool:
        return bool(self.warnings)

    @property
    def suspicious(self) -> bool:
        return bool(self.suspicion.get("suspicious"))


def job_config(config: Config, job: JobConfig) -> dict[str, Any]:
    """The job config in force, recorded in every manifest so that drift can be seen later."""
    return {"sources": list(job.sources), "exclude": list(job.exclude), "one_file_system": job.one_file_system,
            "compression": config.volumes.compression, "level": config.volumes.level, "volume_size": config.volumes.size,
            "tripwire": config.tripwire.enabled}


def sync_catalog(repo: Repository, catalog: Catalog, history: History, latest: Point | None, workdir: Path) -> bool:
    """Make the catalog reflect ``latest`` (the newest trusted point). Returns False when its chain is broken."""
    if latest is None:
        if catalog.tip is not None:
            catalog.tree.clear()
            catalog.set_meta({"tip_key": None, "tip_sha256": None, "tip_version": None})
        return True
    if catalog.tip == latest.key and not history.gaps(latest):
        return True
    return rebuild_catalog(repo, catalog, history, latest, workdir)


def rebuild_catalog(repo: Repository, catalog: Catalog, history: History, latest: Point, workdir: Path) -> bool:
    """Replay ``latest``'s chain into the catalog. Stat data is lost, so the next scan re-hashes."""
    catalog.conn.execute("BEGIN")
    try:
        catalog.conn.execute("DELETE FROM objects")
        tip = chain_mod.replay(repo, history, latest, catalog.tree, workdir,
                               on_point=lambda m: catalog.record_objects(m.objects))
    except (IntegrityError, StoreError):
        catalog.conn.execute("ROLLBACK")
        catalog.conn.execute("BEGIN")
        catalog.tree.clear()
        catalog.set_meta({"tip_key": None, "tip_sha256": None, "tip_version": None, "broken_key": latest.key})
        catalog.conn.execute("COMMIT")
        return False
    catalog.set_meta({"tip_key": tip.key, "tip_sha256": tip.sha256, "tip_version": tip.version_id,
                      "gseq": str(latest.name.gseq), "gstart": format_time(latest.name.gstart), "broken_key": None,
                      "read_from_ns": None})
    catalog.conn.execute("COMMIT")
    return True


@dataclass
class _Run:
    """The state of one run as it goes through its phases."""

    repo: Repository
    config: Config
    job: JobConfig
    catalog: Catalog
    spool: Path
    report: RunReport
    emit: Progress
    warn: Callable[[str], None]
    now: datetime
    decision: RunDecision
    writer: PointWriter
    chain_ok: bool
    trips: TripState
    baseline: str | None = None  # the point this run follows (the previous generation's tip for a full)
    scan: ScanTable | None = None
    previous: TreeTable | None = None  # the baseline an incremental lists its changes against
    profile: Profile | None = None
    verdict: Verdict | None = None
    scan_started_ns: int = 0

    @property
    def full(self) -> bool:
        return self.decision.kind == "full"

    @property
    def roots(self) -> tuple[str, ...]:
        return tuple(os.path.normpath(s) for s in self.job.sources)


def run_job(repo: Repository, config: Config, job: JobConfig, *, clock: Clock, state_dir: Path, force_full: bool = False,
            full_mode: str = "auto", progress: Progress | None = None, spool_parent: str | None = None) -> RunReport:
    """Back up one job: scan, classify, (synthesize,) pack and upload, then commit with the manifest."""
    started = time.monotonic()
    requests_before = repo.store.counts.snapshot()
    check_sources(job, str(config.path))
    report = RunReport(job=job.name)
    emit = progress or (lambda event, data: None)

    def warn(message: str) -> None:
        report.warnings.append(message)
        emit("warning", {"message": message})

    swept = processes.sweep_temp(spool_parent)
    if swept.directories:
        report.notes.append(f"removed {human_bytes(swept.bytes)} of temporary files in {swept.directories} folder(s) "
                            f"left by genarc processes that were killed (pid {', '.join(map(str, swept.owners))})")
    spool = _spool(spool_parent)
    catalog = Catalog(Catalog.location(state_dir, repo.id, job.name))
    try:
        trips = TripState.load(TripState.location(state_dir, repo.id, job.name), warn)
        run = _begin(repo, config, job, catalog, spool, clock, report, emit, warn, force_full, trips)
        _scan(run)
        synthetic = _classify(run, full_mode)
        if synthetic:
            _synthesize(run)
        _pack_and_upload(run, first_index=report.synthetic.get("next_index", 1))
        _settle_parts(run)
        committed = _commit(run)
        _adopt(run, committed)
        _tripwire(run, committed, clock)
        report.requests = {k: v - requests_before[k] for k, v in repo.store.counts.snapshot().items()}
        report.duration_s = round(time.monotonic() - started, 3)
        emit("done", {"report": report})
        return report
    finally:
        if catalog.conn.in_transaction:
            catalog.conn.execute("ROLLBACK")
        catalog.close()
        shutil.rmtree(spool, ignore_errors=True)


def _spool(parent: str | None) -> Path:
    try:
        return processes.make_temp("run", parent)
    except OSError as exc:
        raise LocalIOError(f"Cannot create a temporary directory for volumes: {exc.strerror}; set TMPDIR to a writable disk.") from exc


def _begin(repo: Repository, config: Config, job: JobConfig, catalog: Catalog, spool: Path, clock: Clock,
           report: RunReport, emit: Progress, warn: Callable[[str], None], force_full: bool, trips: TripState) -> _Run:
    """Bring the catalog to the newest trusted point, decide full or incremental, and plan the point's lock."""
    now = clock.now()
    history = History.read(repo, job.name, clock)
    newest = history.newest(repo, spool, known=catalog.tip)
    after = history.points.index(newest) if newest is not None else -1
    for index, point in enumerate(history.points):
        if point.suspect and index > after:
            warn(f"this run does not continue the newer {describe(point)}; run `genarc audit {job.name}`")
    if newest is not None and catalog.tip is not None and catalog.tip != newest.key and not catalog.knows_run(newest.name.run_id):
        warn(f"the newest restore point {newest.key} was not written by a run of this machine; this run continues it, "
             f"but check it with `genarc audit {job.name}`")
    own = [p for p in history.points if catalog.knows_run(p.name.run_id)]
    if own and "skewed" in own[-1].flags:
        warn(f"this machine's clock was ahead of the server's at its last run ({own[-1].flags['skewed']}); such points "
             "are suspect and never restored by default: set the clock right (NTP)")
    latest = newest.name if newest is not None else None
    chain_ok = sync_catalog(repo, catalog, history, newest, spool)
    if not chain_ok:
        warn(f"the chain of the newest generation ({catalog.get_meta('broken_key')}) is broken; this run opens a new generation with a full")
    latest_ref = GenerationRef(latest.gseq, latest.gstart) if latest else None
    decision = decide_run(now, latest_ref, config.retention, force_full=force_full, chain_ok=chain_ok)
    gen = decision.generation
    pseq = latest.pseq + 1 if decision.kind == "incremental" and latest else 1
    lock = lock_plan(repo, config, gen.start, config.retention)
    writer = PointWriter(repo, job.name, gen, pseq, new_run_id(), lock, spool, full=decision.kind == "full")
    catalog.record_run(writer.run_id, format_time(now))
    report.kind, report.reason, report.generation, report.point = decision.kind, decision.reason, gen.seq, pseq
    report.generation_start, report.time = format_time(gen.start), format_time(now)
    report.unprotected = repo.store.capabilities.unprotected
    report.lock_mode = lock.mode
    report.lock_until = format_time(lock.until) if lock.mode != "none" else ""  # "": nothing is locked
    report.expires_from = "" if report.unprotected else format_time(expires_from(gen.start, config.retention))
    emit("start", {"job": job.name, "kind": decision.kind, "generation": gen.seq, "point": pseq})
    return _Run(repo, config, job, catalog, spool, report, emit, warn, now, decision, writer, chain_ok, trips,
                baseline=catalog.tip if chain_ok else None)


def _scan(run: _Run) -> None:
    """Walk the sources into a fresh scan table; the catalog's tree is still the previous point."""
    notes = run.report.notes

    def on_scan(level: str, message: str) -> None:
        (run.warn if level == "warning" else notes.append)(message)

    run.scan = ScanTable(run.catalog.conn)
    run.scan_started_ns = time.time_ns()  # the real clock, as the kernel's ctimes (never GENARC_NOW)
    # With a core to spare, the walk runs in a process of its own while this one writes the rows.
    found = processes.generate_in_child(lambda: scanned(run.job)) if run.config.volumes.effective_workers > 1 \
        else scanned(run.job)
    with contextlib.closing(found):  # an error here stops the walk at once
        run.catalog.conn.execute("BEGIN")
        run.scan.fill(found, on_scan, meanwhile=run.catalog.drop_retired)
        run.catalog.conn.execute("COMMIT")
    run.report.files_scanned, run.report.bytes_scanned = run.scan.totals()


def _classify(run: _Run, full_mode: str) -> bool:
    """Give every scanned entry its op. Returns True when this full opens synthetic."""
    assert run.scan is not None
    run.previous = run.catalog.tree if not run.full else None
    synthetic = run.full and _synthetic_allowed(run, full_mode)
    # An incremental refers to content its generation already stores (a moved, renamed or copied file); a full
    # opens a generation, which shares nothing with the one before.
    sharing = None if run.full else Sharing(run.writer.volume_prefix,
                                            lambda key: run.catalog.object_record(key) is not None)
    run.catalog.conn.execute("BEGIN")
    read_from = run.catalog.get_meta("read_from_ns")  # when the catalog's tree was scanned (absent: unknown)
    run.scan.classify(run.catalog.tree if synthetic else run.previous, run.warn, run.roots, sharing,
                      volume_size=run.config.volumes.size, seed=run.repo.keys.content_seed,
                      racy_from_ns=int(read_from) - RACY_MARGIN_NS if read_from else None)
    run.catalog.conn.execute("COMMIT")
    run.report.shared_files, run.report.shared_bytes = run.scan.shared_files, run.scan.shared_bytes
    if run.full:
        run.report.kind_detail = "synthetic full" if synthetic else "active full"
    run.emit("scanned", {"files": run.report.files_scanned, "bytes": run.report.bytes_scanned})
    return synthetic


def _synthetic_allowed(run: _Run, full_mode: str) -> bool:
    """A new generation opens synthetic unless an active full is asked for, due, or impossible."""
    fulls, gen = run.config.fulls, run.decision.generation
    if full_mode == "active" or not fulls.synthetic or run.catalog.tip is None or not run.chain_ok:
        return False
    if fulls.active_every and gen.seq % fulls.active_every == 0:
        run.report.notes.append(f"generation {gen.seq} opens with an active full (every {fulls.active_every})")
        return False
    if not run.repo.store.capabilities.server_side_copy:
        run.report.notes.append("the store has no server-side copy: this generation opens with an active full")
        return False
    return True


def _synthesize(run: _Run) -> None:
    assert run.scan is not None
    run.catalog.conn.execute("BEGIN")
    result = synthesize(run.writer, run.scan, run.catalog.content_bytes(), run.config.fulls.copy_threshold,
                        run.report.notes.append, run.catalog.packing(), run.catalog.object_sizes())
    run.catalog.conn.execute("COMMIT")
    run.report.synthetic = dataclasses.asdict(result)


def _planned(scan: ScanTable, roots: tuple[str, ...]) -> Iterator[PlannedFile]:
    for row in scan.to_pack():
        path = "/" + path_name(row["path"])
        if row["parts"]:
            for index, offset, size in scan.planned_parts(row["path"]):
                yield PlannedFile(path, size, source_root(path, roots), part=index, offset=offset,
                                  identity=(row["ino"], row["dev"]))
        else:
            yield PlannedFile(path, row["size"], source_root(path, roots))


# Packed here rather than in worker processes (whose start and end cost more than they save): this few files and
# bytes, a typical daily incremental's.
SMALL_PACK = (500, 8 << 20)


def _pack_and_upload(run: _Run, first_index: int = 1) -> None:
    """Pack the content to store into volumes (in worker processes) and upload each as it is finished."""
    assert run.scan is not None
    files, size = run.scan.pack_totals()
    run.emit("planned", {"files": files, "bytes": size})
    settings = run.config.volumes
    plans = plan_volumes(_planned(run.scan, run.roots), method=settings.compression, level=settings.level,
                         volume_size=settings.size, max_files=settings.max_files, first_index=first_index,
                         tag=f"{run.writer.run_id}-", seed=run.repo.keys.content_seed)
    password = run.repo.keys.password
    with _uploads(run) as uploads:
        if settings.effective_workers <= 1 or (files <= SMALL_PACK[0] and size <= SMALL_PACK[1]):
            for plan in plans:
                interrupt.check()
                uploads.add(write_volume(plan, str(run.spool / f"v{plan.index:06d}.7z"), password))
            return
        _pack_in_workers(run, plans, settings.effective_workers, password, uploads)


def _pack_in_workers(run: _Run, plans: Iterator[Any], workers: int, password: str | None,
                     uploads: UploadQueue[PackedVolume, Any]) -> None:
    # At most 2 x `workers` volumes are packed or waiting here, and UPLOADS_IN_FLIGHT sent, at once: each is on
    # local disk. A worker that finishes starts its queued plan at once rather than waiting while this thread
    # records one volume and plans another; while this thread waits for an upload slot, the queued plans become
    # volumes too (docs/design.md, step 5, states the bound).
    prepare_key(password)
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                                initializer=interrupt.worker_init, initargs=(os.getpid(),)) as pool:
        pending: set[concurrent.futures.Future] = set()
        try:
            for plan in plans:
                interrupt.check()
                pending.add(pool.submit(write_volume, plan, str(run.spool / f"v{plan.index:06d}.7z"), password))
                if len(pending) >= 2 * workers:
                    done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                    for future in done:
                        uploads.add(future.result())
            while pending:
                done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    uploads.add(future.result())
        except concurrent.futures.process.BrokenProcessPool:
            interrupt.check()  # the workers were signalled along with us: report the interruption
            raise LocalIOError("A volume packing process died (out of memory?); nothing was committed, rerun.") from None
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def _settle_parts(run: _Run) -> None:
    """Files stored in parts are stored once every part is; name what kept changing or could not be read."""
    assert run.scan is not None
    run.scan.conn.execute("BEGIN")
    for path, what, kept in run.scan.settle_parts(run.previous, run.roots):
        if what.startswith("kept changing"):
            run.warn(f"{path} {what}; stored as last read, and flagged in the manifest "
                     "(`genarc ls` and `genarc restore` name it)")
        elif kept:
            run.warn(f"{path}: a part of it {what}; the previous version is kept")
        else:
            run.warn(f"{path}: a part of it {what}; it is not in this restore point")
    run.scan.conn.execute("COMMIT")


def _uploads(run: _Run) -> UploadQueue[PackedVolume, Any]:
    """Volumes go up in threads while the next ones are packed, and are recorded here as each one lands."""
    return UploadQueue(lambda volume: _send(run, volume), lambda volume, info: _record(run, volume, info),
                       lambda volume: os.unlink(volume.path))


def _send(run: _Run, volume: PackedVolume) -> Any:
    """Upload one packed volume with the point's lock (in an upload thread: a store call and nothing else)."""
    try:
        if not any(f.stored for f in volume.files):
            return None
        return run.writer.send_volume(run.writer.volume_key(volume.index), SpoolFile(volume.path), volume.sha256)
    finally:
        os.unlink(volume.path)


def _record(run: _Run, volume: PackedVolume, info: Any) -> None:
    """Record an uploaded volume in the point, and where each of its files now lives."""
    assert run.scan is not None
    report = run.report
    key, version_id = run.writer.volume_key(volume.index), None
    if info is not None:
        version_id = run.writer.record_volume(key, info, volume.sha256, method=volume.method,
                                              content_bytes=sum(f.size for f in volume.files if f.stored),
                                              dense=volume.dense).version_id
        report.volumes += 1
        report.bytes_uploaded += volume.size
    run.scan.conn.execute("BEGIN")
    run.scan.stored([f for f in volume.files if f.part is None and f.stored], run.previous, key, version_id,
                    volume.sha256)
    for packed in volume.files:
        if packed.part is not None:  # a part of a large file: the file is settled once all its parts are
            if packed.stored:
                run.scan.stored_part(packed, key, version_id, volume.sha256)
                report.bytes_packed += packed.size
            else:
                run.scan.not_stored(packed, run.previous)
            continue
        if packed.stored:
            report.bytes_packed += packed.size
            if packed.status == "torn":
                run.warn(f"{packed.path} {packed.message}; stored as last read, and flagged in the manifest "
                         "(`genarc ls` and `genarc restore` name it)")
        elif run.scan.not_stored(packed, run.previous):
            run.warn(f"{packed.path} {packed.message}; the previous version is kept")
        else:
            run.warn(f"{packed.path} {packed.message}; it is not in this restore point")
    run.scan.conn.execute("COMMIT")
    run.emit("volume", {"index": volume.index, "bytes": volume.size, "files": len(volume.files),
                        "uploaded": report.bytes_uploaded, "packed": report.bytes_packed})


def _commit(run: _Run) -> CommittedPoint:
    """List the point's entries and upload its manifest, last: the commit."""
    assert run.scan is not None
    report, writer, catalog = run.report, run.writer, run.catalog
    # The tripwire measures this point against the one it follows (for a full: the previous generation's tip).
    # The measurer reads the writer's records as they grow: an entry may refer to a volume listed as shared below.
    measurer = Measurer(catalog.tree if run.baseline else None, {k: d for k, (_, d) in catalog.packing().items()},
                        writer.records, run.config.volumes.compression, ordered=run.full)
    if run.previous is not None:
        for path in run.scan.removed_since(run.previous):
            writer.add_removal(path)
            measurer.removal(path_name(path))
            report.removed += 1
    elif run.baseline:
        for path in run.scan.removed_since(catalog.tree):
            measurer.removal(path_name(path))
    # A full lists every row, in path order: the tree digest is taken in the same pass (on another core, when
    # there is one to spare and many rows).
    spare = run.config.volumes.effective_workers > 1
    with TreeDigest(parallel=run.full and spare and report.files_scanned >= PARALLEL_DIGEST_ROWS) as full_digest:
        for row, op in run.scan.listed(full=run.full):
            if run.full:
                full_digest.add(row)
            parts = run.scan.parts_of(row["path"]) if row["parts"] and op in (Op.ADD, Op.CHANGE) else []
            for key in [row["obj_key"]] + [p["obj_key"] for p in parts]:
                if op in (Op.ADD, Op.CHANGE) and key is not None and not writer.holds(key):
                    writer.refer(_shared_record(catalog, key))  # content an earlier point of the generation stored
            measurer.entry(writer.add_row(row, op.value, parts))
            if not run.full:
                report.added += op == Op.ADD
                report.changed += op == Op.CHANGE
                report.metadata_changed += op == Op.META
        tree_digest = full_digest.hexdigest() if run.full else run.scan.digest(parallel=spare, rows=report.files_scanned)
    if run.full:
        report.added = writer.entries
    run.profile = measurer.finish()
    if run.baseline:
        run.verdict = tripwire.judge(run.profile, run.trips.profiles, run.config.tripwire)
    verdict = run.verdict
    tip = {"key": catalog.tip, "sha256": catalog.get_meta("tip_sha256")}
    interrupt.check()
    committed = writer.commit(
        kind=run.decision.kind, reason=run.decision.reason, point_time=run.now, policy=run.config.retention,
        job_config=job_config(run.config, run.job),
        parent=None if run.full else {**tip, "version_id": catalog.get_meta("tip_version")},
        previous_generation_tip=tip if run.full and catalog.tip else None,
        tree={"digest": tree_digest,
              "entries": run.scan.count(), "bytes": report.bytes_scanned},
        warnings=len(report.warnings), profile=run.profile.as_dict(),
        tripwire={"enabled": run.config.tripwire.enabled, "score": verdict.score if verdict else None,
                  "suspicious": bool(verdict and verdict.suspicious), "reasons": verdict.reasons if verdict else []})
    report.manifest_key = committed.key
    report.bytes_uploaded += committed.size
    return committed


def _shared_record(catalog: Catalog, key: str) -> dict[str, Any]:
    record = catalog.object_record(key)
    if record is None:  # classify only shares content of objects the catalog records
        raise IntegrityError(f"internal: the catalog no longer records {key}, which this point refers to")
    return record


def _adopt(run: _Run, committed: CommittedPoint) -> None:
    """The catalog follows the repository: the scanned tree becomes the tip."""
    assert run.scan is not None
    gen = run.decision.generation
    run.catalog.adopt(run.scan, [o.record() for o in run.writer.objects], replace=run.full,
                      tip={"tip_key": committed.key, "tip_sha256": committed.sha256,
                           "tip_version": committed.version_id, "gseq": str(gen.seq),
                           "gstart": format_time(gen.start), "broken_key": None,
                           "read_from_ns": str(min(run.scan_started_ns, time.time_ns()))})  # a clock set back


def _tripwire(run: _Run, committed: CommittedPoint, clock: Clock) -> None:
    """Judge the committed point; on a trip (or while one is unacknowledged) protect the last clean point."""
    settings, state, report = run.config.tripwire, run.trips, run.report
    profile, verdict = run.profile, run.verdict
    assert profile is not None
    tripped = verdict is not None and verdict.suspicious
    report.suspicion = {"enabled": settings.enabled, "score": verdict.score if verdict else 0.0,
                        "suspicious": False, "reasons": list(verdict.reasons) if verdict else [],
                        "profile": profile.as_dict()}
    if not settings.enabled:
        if tripped:
            report.notes.append("the tripwire is off, and this point would have tripped it: "
                                + "; ".join(verdict.reasons))  # type: ignore[union-attr]
        else:
            state.profiles.append(profile)
        state.save()
        return
    if state.trip is None and not tripped:
        state.profiles.append(profile)
        state.save()
        return
    if state.trip is None:
        state.trip = {"since": format_time(run.now), "point": committed.key, "reasons": verdict.reasons,  # type: ignore
                      "protected": {"point": run.baseline}}
        state.save()  # the trip is known before anything else can fail
    else:
        report.suspicion["reasons"] = [*report.suspicion["reasons"],
                                       f"the trip at {state.trip.get('point')} ({state.trip.get('since')}) is not "
                                       f"acknowledged: `genarc acknowledge {run.job.name}` once the source is clean"]
    report.suspicion.update(suspicious=True, since=state.trip.get("since"), first=state.trip.get("point"))
    protected = state.trip.get("protected") if isinstance(state.trip.get("protected"), dict) else {}
    day = run.config.retention.days(1)
    if protected.get("point") and tripwire.needs_renewal(protected, run.now, settings, day):
        state.trip["protected"] = _protect(run, protected["point"], clock).as_dict()
        state.save()
    protected = state.trip["protected"] if isinstance(state.trip.get("protected"), dict) else {}
    report.suspicion["protected"] = protected
    if not protected.get("point"):
        report.suspicion["protected"] = {"error": "there was no earlier point to protect"}
    elif protected.get("error"):
        run.warn(f"the last clean point {protected['point']} could not be protected: {protected['error']}")


def _protect(run: _Run, key: str, clock: Clock) -> Protection:
    """Lock every object ``key``'s restore needs until ``protect_days`` from now (never shortening a lock)."""
    history = History.read(run.repo, run.job.name, clock)
    point = history.by_key(key)
    protection = Protection(key, point.label() if point is not None else key)
    hold = (f"have an administrator keep it with `genarc hold {run.job.name} --generation "
            f"{point.name.gseq if point else '?'} --point {point.name.pseq if point else '?'}`")
    if point is None:
        protection.error = f"it is no longer in the repository listing; {hold}"
        return protection
    if run.writer.lock.mode == "none":
        protection.error = ("this repository has no object locks, so nothing can keep it from being deleted; "
                            "copy it somewhere safe")
        return protection
    try:
        needed = history.needed(run.repo, [point], run.spool)
    except (IntegrityError, StoreError) as exc:
        protection.error = f"its chain cannot be read ({exc.message}); {hold}"
        return protection
    finally:
        history.drop(run.spool)
    until = tripwire.protect_until(run.now, run.config.tripwire, run.config.retention.days(1))
    tripwire.protect(run.repo.store, needed, run.writer.lock.mode, until, protection)
    if protection.error:
        protection.error += f"; {hold}, and check the key's rights with `genarc doctor`"
    return protection
