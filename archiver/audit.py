"""genarc audit: what happened to the repository, read from the server's version listings.

Verify asks "does every object still hold what the manifests recorded?". Audit asks "did
anyone other than genarc write here?", from what an attacker who holds the keys and the
password cannot rewrite: every version the server keeps, with its upload time, and the
order in which the server stored the points (``archiver/history.py``). It names:

- keys written over (and which version genarc recorded, the one restores read), keys
  hidden by a delete marker or a B2 hide marker, and recorded versions that are gone (lost);
- suspect points: dated in the future, backdated, after their upload, forking a chain,
  unreadable, continuing one of those, or holding entries a restore refuses; and, where
  this machine has a catalog, points written by a run this machine never started;
- objects no manifest refers to: orphans of a known run (a run that died before its
  commit; harmless, removed by the lifecycle rule) apart from unknown objects;
- an overwritten ``genarc-repository.json``, and objects (or a bucket) readable by anyone;
- on a bucket with locks, every live object's lock as the server reports it: missing, shorter
  than its point planned or in a weaker mode, longer than the cap (a cost attack: junk locked
  for years), or a date that makes no sense (before the object was stored, as a 32-bit date
  past 2106 wraps to on some servers, or past 2106 itself).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from . import chain as chain_mod
from .catalog import Catalog, path_name
from .clock import Clock, format_time, parse_time
from .errors import GenarcError
from .hazards import newly_unsafe
from .history import History, describe
from .layout import PROBE_PREFIX, REPOSITORY_CONFIG_KEY, parse_manifest_key
from .manifest import Manifest
from .repository import Repository, first_version, listing
from .store import ObjectInfo, Retention, inspector_for

_RUN_OF_VOLUME = re.compile(r"^(?P<job>[^/]+)/volumes/g\d{6}-\d{8}T\d{6}Z/p\d{6}-(?P<run>[0-9a-f]{16})/v\d{6}\.7z$")


@dataclass
class Finding:
    kind: str  # overwritten | hidden | lost | suspect | unknown-run | unsafe | unknown-object | repository-file | public
    #          | lock
    key: str
    message: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class AuditReport:
    jobs: list[str] = field(default_factory=list)
    points: int = 0
    objects: int = 0
    findings: list[Finding] = field(default_factory=list)
    orphans: list[dict[str, Any]] = field(default_factory=list)  # of a known run: reported, not a finding
    notes: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # live versions under a legal hold (`genarc hold`): kept until released

    @property
    def ok(self) -> bool:
        return not self.findings


def audit(repo: Repository, jobs: list[str], *, clock: Clock, workdir: Path, state_dir: Path | None = None,
          trusted_before: datetime | None = None, whole: bool = True,
          cap_days: Callable[[str], int] | None = None) -> AuditReport:
    """Audit ``jobs``; ``whole``: also every other object in the repository (else only the jobs' own keys).
    ``cap_days(job)``: the longest lock a run of the job asks for, in days (``genarc policy`` caps it)."""
    report = AuditReport(jobs=list(jobs))
    workdir.mkdir(parents=True, exist_ok=True)
    everything = listing(repo.store, "")
    if not whole:
        everything = {k: v for k, v in everything.items()
                      if k == REPOSITORY_CONFIG_KEY or any(k.startswith(f"{job}/") for job in jobs)}
    report.objects = len(everything)
    _repository_file(everything.get(REPOSITORY_CONFIG_KEY, []), report)
    recorded: dict[str, str | None] = {}  # every object a readable manifest records, with its version
    planned: dict[str, Retention] = {}  # the lock each recorded object's point planned for it
    runs: set[str] = set()
    for job in jobs:
        history = History.read(repo, job, clock)
        history.check(repo, workdir)
        known = _catalog_runs(state_dir, repo, job)
        report.points += len(history.points)
        for point in history.stored_before(trusted_before):
            runs.add(point.name.run_id)
            recorded[point.key] = point.name.version_id
            if point.suspect:
                report.findings.append(Finding("suspect", point.key, describe(point),
                                               {"flags": dict(point.flags), "stored": _time(point.stored),
                                                "claimed": format_time(point.claimed)}))
            elif known is not None and point.name.run_id not in known[0] and point.claimed >= known[1]:
                report.findings.append(Finding(
                    "unknown-run", point.key, f"point {point.label()} ({point.key}) was written by run "
                    f"{point.name.run_id}, which this machine's catalog never started",
                    {"stored": _time(point.stored)}))
        if known is not None:
            runs |= known[0]
        _objects_and_unsafe(repo, history, workdir, recorded, planned, report, trusted_before)
        history.drop(workdir)
    for key, infos in everything.items():
        if key == REPOSITORY_CONFIG_KEY:
            continue
        if key in recorded:
            _versions(key, infos, recorded[key], report)
        else:
            _unreferenced(repo, key, infos, runs, jobs, report)
    for key, version in sorted(recorded.items()):
        if key not in everything:
            report.findings.append(Finding("lost", key, f"{key} is lost: the bucket no longer holds it",
                                           {"recorded_version": version}))
    _public(repo, sorted(k for k, infos in everything.items() if first_version(infos) is not None), report)
    if repo.store.capabilities.object_lock:
        # Under an injected clock, locks are planned from simulated dates: no cap to compare with upload times.
        _locks(repo, everything, recorded, planned, jobs, None if getattr(clock, "injected", False) else cap_days,
               report)
    return report


def _time(when: datetime | None) -> str | None:
    return format_time(when) if when else None


def _catalog_runs(state_dir: Path | None, repo: Repository, job: str) -> tuple[set[str], datetime] | None:
    """The runs this machine's catalog started for ``job``, and when the first began; None without a catalog."""
    if state_dir is None or "~" in job:
        return None
    path = Catalog.location(state_dir, repo.id, job)
    if not path.exists():
        return None
    catalog = Catalog(path)
    try:
        rows = catalog.conn.execute("SELECT run_id, started FROM runs ORDER BY started").fetchall()
    finally:
        catalog.close()
    if not rows:
        return None
    return {row[0] for row in rows}, parse_time(rows[0][1])


def _repository_file(infos: list[ObjectInfo], report: AuditReport) -> None:
    original = first_version(infos)
    later = [i for i in infos if i is not original]
    if original is None:
        report.findings.append(Finding("repository-file", REPOSITORY_CONFIG_KEY,
                                       f"{REPOSITORY_CONFIG_KEY} is missing or hidden"))
    elif later:
        report.findings.append(Finding(
            "repository-file", REPOSITORY_CONFIG_KEY,
            f"{REPOSITORY_CONFIG_KEY} was written over {len(later)} time(s) after init (first at "
            f"{_time(later[0].modified)}); genarc reads the original version {original.version_id}",
            {"recorded_version": original.version_id, "later_versions": [_version(i) for i in later]}))


def _version(info: ObjectInfo) -> dict[str, Any]:
    return {"version_id": info.version_id, "size": info.size, "stored": _time(info.modified),
            "marker": info.is_delete_marker or info.hidden}


def _versions(key: str, infos: list[ObjectInfo], version_id: str | None, report: AuditReport) -> None:
    """A recorded object: is its recorded version still there, and did anything come after it?"""
    real = [i for i in infos if not i.is_delete_marker and not i.hidden]
    if version_id is not None and not any(i.version_id == version_id for i in real):
        report.findings.append(Finding("lost", key, f"{key} is lost: the bucket no longer holds the recorded version "
                                                    f"{version_id}", {"recorded_version": version_id}))
        return
    recorded = next((i for i in real if i.version_id == version_id), real[0] if real else None)
    after = infos[infos.index(recorded) + 1:] if recorded is not None else infos  # oldest first, by the server
    markers = [i for i in after if i.is_delete_marker or i.hidden]
    writes = [i for i in after if not (i.is_delete_marker or i.hidden)]
    if writes:
        report.findings.append(Finding(
            "overwritten", key, f"{key} was written over {len(writes)} time(s) (first at {_time(writes[0].modified)}); "
            f"restores read the recorded version {version_id}",
            {"recorded_version": version_id, "later_versions": [_version(i) for i in writes]}))
    if markers:
        report.findings.append(Finding(
            "hidden", key, f"{key} is hidden by a delete or hide marker (at {_time(markers[-1].modified)}); "
            f"the recorded version {version_id} is intact", {"recorded_version": version_id}))


def _unreferenced(repo: Repository, key: str, infos: list[ObjectInfo], runs: set[str], jobs: list[str],
                  report: AuditReport) -> None:
    match = _RUN_OF_VOLUME.match(key)
    real = [i for i in infos if not i.is_delete_marker and not i.hidden]
    if not real:
        return  # only markers: a lifecycle rule removed the object and left its marker
    if _is_probe(key, real):
        report.notes.append(f"{key}: a probe by genarc init or doctor ({len(real)} version(s))")
        return
    if match and match["job"] in jobs and match["run"] in runs:
        for info in real:
            report.orphans.append({"key": key, "run": match["run"], **_version(info)})
        return
    manifest = parse_manifest_key(key)
    if manifest is not None and manifest.job in jobs:
        return  # a point of a job audited above, stored after --trusted-before
    for info in real:
        lock = _lock_of(repo, key, info)
        report.findings.append(Finding(
            "unknown-object", key, f"{key} ({info.size} bytes, stored {_time(info.modified)}{lock}) is not genarc's: "
            "no manifest refers to it and no known run wrote it", {**_version(info), "lock": lock.strip(", ") or None}))


def _is_probe(key: str, infos: list[ObjectInfo]) -> bool:
    """A few bytes genarc init or doctor wrote to learn what the server enforces (layout.PROBE_PREFIX)."""
    return (key.startswith(PROBE_PREFIX) or f"/{PROBE_PREFIX}" in key) and all(i.size <= 64 for i in infos)


def _lock_of(repo: Repository, key: str, info: ObjectInfo) -> str:
    try:
        stat = repo.store.stat(key, version_id=info.version_id)
    except GenarcError:
        return ""
    if stat.retention is None:
        return ", not locked"
    return f", locked ({stat.retention.mode}) until {format_time(stat.retention.until)}"


def _objects_and_unsafe(repo: Repository, history: History, workdir: Path, recorded: dict[str, str | None],
                        planned: dict[str, Retention], report: AuditReport, trusted_before: datetime | None) -> None:
    """Replay every chain: the objects its manifests record, and entries a restore would refuse."""
    seen: set[tuple[bytes, str]] = set()
    with chain_mod.scratch_tree(workdir, "audit.sqlite") as tree:
        for tip in history.leaves(trusted_before):

            def record(manifest: Manifest) -> None:
                plan = _plan_of(manifest.header)
                for obj in manifest.objects:
                    recorded.setdefault(obj["key"], obj.get("version_id"))
                    if plan is not None:
                        planned.setdefault(obj["key"], plan)
                if plan is not None:
                    planned.setdefault(manifest.key, plan)
                for path, reason in newly_unsafe(tree, seen):
                    report.findings.append(Finding("unsafe", manifest.key, f"{manifest.key} holds an entry a "
                                                   f"restore refuses: {path_name(path)}: {reason}"))

            try:
                chain_mod.replay(repo, history, tip, tree, workdir, on_point=record)
            except GenarcError:
                pass  # the point is flagged broken or unreadable already


def _plan_of(header: dict[str, Any]) -> Retention | None:
    lock = header.get("lock") or {}
    if lock.get("mode") not in ("compliance", "governance") or not isinstance(lock.get("until"), str):
        return None
    try:
        return Retention(lock["mode"], parse_time(lock["until"]))
    except ValueError:
        return None


_WRAP = datetime(2106, 2, 7, 6, 28, 15, tzinfo=timezone.utc)  # the last second a 32-bit unsigned time can hold


def _locks(repo: Repository, everything: dict[str, list[ObjectInfo]], recorded: dict[str, str | None],
           planned: dict[str, Retention], jobs: list[str], cap_days: Callable[[str], int] | None,
           report: AuditReport) -> None:
    """Read the lock of every live version (the current one, and the one a manifest recorded)."""
    for key, infos in everything.items():
        if key == REPOSITORY_CONFIG_KEY:
            continue
        if _is_probe(key, infos):
            continue  # doctor's retention-cap probe is locked past the cap on purpose
        job = key.split("/", 1)[0]
        cap = None
        if cap_days is not None and jobs:
            cap = cap_days(job) if job in jobs else max(cap_days(j) for j in jobs)
        for info in infos:
            is_recorded = key in recorded and recorded[key] in (None, info.version_id)
            if info.is_delete_marker or info.hidden or not (info.is_latest or is_recorded):
                continue
            try:
                stat = repo.store.stat(key, version_id=info.version_id)
            except GenarcError as exc:
                report.notes.append(f"the lock of {key} was not read: {exc.message}")
                continue
            lock = stat.retention
            if stat.legal_hold:
                report.held.append(key)
            for problem in _lock_problems(lock, planned.get(key) if is_recorded else None, info.modified, cap):
                report.findings.append(Finding("lock", key, f"{key} (version {info.version_id}): {problem}",
                                               {"version_id": info.version_id, "mode": lock.mode if lock else None,
                                                "until": _time(lock.until) if lock else None}))


def _lock_problems(lock: Retention | None, plan: Retention | None, stored: datetime | None,
                   cap: int | None) -> list[str]:
    problems = []
    if plan is not None and (lock is None or not lock.covers(plan)):
        problems.append("not locked" if lock is None else
                        f"locked ({lock.mode}) until {format_time(lock.until)}, less than its point planned "
                        f"({plan.mode} until {format_time(plan.until)})")
    if lock is None:
        return problems
    if stored is not None and lock.until < stored:
        problems.append(f"its lock ends {format_time(lock.until)}, before it was stored: a date that makes no sense "
                        "(a date past 2106 wraps to the past on some servers)")
    elif lock.until > _WRAP:
        problems.append(f"locked until {format_time(lock.until)}, past 2106, which some servers cannot store")
    elif cap is not None and stored is not None and lock.until - stored > timedelta(days=cap):
        problems.append(f"locked until {format_time(lock.until)}, longer than the {cap} days a run asks for "
                        "(someone extended it, or it is junk: it is kept, and paid for, that long)")
    return problems


def _public(repo: Repository, keys: list[str], report: AuditReport) -> None:
    try:
        exposed = inspector_for(repo.store).public_objects(keys)
    except GenarcError as exc:
        report.notes.append(f"who may read the objects was not checked: {exc.message}")
        return
    for key, why in exposed:
        report.findings.append(Finding("public", key, f"{key or 'the bucket'} can be read by anyone: {why}"))
