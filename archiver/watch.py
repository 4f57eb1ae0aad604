"""genarc watch: a watchdog for a *different* machine, with a read-only key.

An attacker who owns the backup client can stop good backups, or quietly change
what is backed up. The watchdog notices, from elsewhere, before the good
generations expire:

- **stale**: the newest restore point is older than the threshold;
- **chain**: the newest generation's chain is broken (a manifest missing, altered or
  failing its HMAC);
- **lock**: the newest point's objects are not locked into the future;
- **drift**: the job config recorded in the newest point differs from the point
  before it (sources, excludes, one_file_system): what an attacker changes first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from . import chain as chain_mod
from . import manifest as manifest_mod
from .clock import format_time, parse_time
from .errors import GenarcError
from .repository import Repository

WATCHED_CONFIG = ("sources", "exclude", "one_file_system")


@dataclass
class Finding:
    job: str
    kind: str  # "stale" | "chain" | "lock" | "drift"
    message: str


def watch(repo: Repository, jobs: list[str], now: datetime, max_age: timedelta, workdir: Path) -> list[Finding]:
    findings: list[Finding] = []
    workdir.mkdir(parents=True, exist_ok=True)
    for job in jobs:
        names = repo.manifest_names(job)
        if not names:
            findings.append(Finding(job, "stale", f"job {job} has no restore point at all"))
            continue
        newest = names[-1]
        longterm = "~" in job
        if not longterm and now - newest.point_time > max_age:
            findings.append(Finding(job, "stale", f"the newest restore point of {job} is from "
                                                  f"{format_time(newest.point_time)}, older than {max_age}"))
        headers: list[dict] = []
        with chain_mod.scratch_tree(workdir, f"watch-{job.replace('~', '_')}.sqlite") as tree:
            try:
                chain_mod.replay(repo, names, newest, tree, workdir, on_point=lambda m: headers.append(m.header))
            except GenarcError as exc:
                findings.append(Finding(job, "chain", f"the chain of {job}'s newest generation is broken: {exc.message}"))
        if headers:
            _check_lock(repo, job, newest, headers[-1], now, findings)
            previous = headers[-2] if len(headers) > 1 else _previous_generation_tip(repo, names, newest, workdir)
            if previous is not None and not longterm:
                _check_drift(job, previous, headers[-1], findings)
    return findings


def _check_lock(repo: Repository, job: str, newest, header: dict, now: datetime, findings: list[Finding]) -> None:
    lock = header.get("lock") or {}
    if lock.get("mode", "none") == "none":
        if repo.store.capabilities.lockable:
            findings.append(Finding(job, "lock", f"the newest point of {job} was written without an object lock"))
        return
    planned = parse_time(lock["until"])
    if planned <= now:
        findings.append(Finding(job, "lock", f"the newest point of {job} is locked only until {lock['until']}, "
                                             "which has passed"))
        return
    try:
        info = repo.store.stat(newest.key, version_id=newest.version_id)
    except GenarcError as exc:
        findings.append(Finding(job, "lock", f"cannot read the lock of {newest.key}: {exc.message}"))
        return
    if info.retention is None or info.retention.until <= now:
        findings.append(Finding(job, "lock", f"the server reports no lock in the future on {newest.key}"))


def _previous_generation_tip(repo: Repository, names: list, newest, workdir: Path) -> dict | None:
    older = [n for n in names if n.gseq < newest.gseq]
    if not older:
        return None
    try:
        return manifest_mod.load(repo, older[-1], workdir).header
    except GenarcError:
        return None


def _check_drift(job: str, before: dict, after: dict, findings: list[Finding]) -> None:
    old, new = before.get("config", {}), after.get("config", {})
    changes = [f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in WATCHED_CONFIG if old.get(key) != new.get(key)]
    if changes:
        findings.append(Finding(job, "drift", f"the job config of {job} changed at the newest point "
                                              f"({after['point']['time']}): " + "; ".join(changes)))
