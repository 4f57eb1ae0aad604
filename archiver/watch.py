"""genarc watch: a watchdog for a *different* machine, with a read-only key.

An attacker who owns the backup client can stop good backups, or quietly change
what is backed up. The watchdog notices, from elsewhere, before the good
generations expire:

- **stale**: the newest trusted restore point was stored longer ago than the threshold
  (by the server's upload time: a forged future date cannot make it look fresh);
- **suspect**: a point is forged-looking (``archiver/history.py``): dated in the future,
  backdated, forking a chain, unreadable, or continuing one of those;
- **chain**: the newest generation's chain is broken (a manifest missing, altered or
  failing its HMAC);
- **lock**: the newest point's objects are not locked into the future;
- **drift**: the job config recorded in the newest point differs from the point
  before it (sources, excludes, one_file_system), or the tripwire was switched off: what an
  attacker changes first;
- **suspicious**: a point of the newest generation changed what ransomware changes
  (``archiver/tripwire.py``), measured here from the manifests whatever the client's tripwire
  said or whether it was on. A full's changes are measured by the client against the previous
  generation; watch reads that claim from its manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from . import chain as chain_mod
from .clock import Clock, format_time, parse_time
from .history import History, Point, describe
from .errors import GenarcError
from .manifest import Manifest
from .repository import Repository
from .catalog import TreeTable, dense_object
from .tripwire import Measurer, Profile, TripwireSettings, judge

WATCHED_CONFIG = ("sources", "exclude", "one_file_system", "tripwire")


@dataclass
class Finding:
    job: str
    kind: str  # "unprotected" | "stale" | "suspect" | "chain" | "lock" | "drift" | "suspicious"
    message: str


def watch(repo: Repository, jobs: list[str], clock: Clock, max_age: timedelta, workdir: Path,
          trusted_before: datetime | None = None, tripwire: TripwireSettings | None = None,
          max_age_text: str | None = None) -> list[Finding]:
    """What is wrong with ``jobs``; ``max_age_text`` is the age as the user wrote it (``26h``), for the message."""
    findings: list[Finding] = []
    workdir.mkdir(parents=True, exist_ok=True)
    now = clock.now()
    unprotected = repo.store.capabilities.unprotected
    if unprotected:  # what `genarc doctor` fails on, said here too
        findings.append(Finding("", "unprotected", unprotected))
    for job in jobs:
        history = History.read(repo, job, clock)
        history.check(repo, workdir)
        for point in history.stored_before(trusted_before):
            if set(point.flags) == {"broken"}:
                findings.append(Finding(job, "chain", f"the chain of {job}'s point {point.label()} is broken: "
                                                      f"{point.flags['broken']}"))
            elif point.suspect:
                findings.append(Finding(job, "suspect", f"{job}: suspect {describe(point)}"))
        trusted = history.trusted(trusted_before)
        if not trusted:
            findings.append(Finding(job, "stale", f"job {job} has no trusted restore point at all"))
            history.drop(workdir)
            continue
        newest = trusted[-1]
        longterm = "~" in job
        when = history.time_of(newest)
        if not longterm and now - when > max_age:
            findings.append(Finding(job, "stale", f"the newest trusted restore point of {job} was stored "
                                                  f"{format_time(when)}, older than {max_age_text or max_age}"))
        headers: list[dict] = []
        profiles = _Profiles(job, tripwire or TripwireSettings(), findings)
        with chain_mod.scratch_tree(workdir, f"watch-{job.replace('~', '_')}.sqlite") as tree:
            try:
                chain_mod.replay(repo, history, newest, tree, workdir, on_point=lambda m: headers.append(m.header),
                                 before_point=None if longterm else profiles.measure)
            except GenarcError as exc:
                findings.append(Finding(job, "chain", f"the chain of {job}'s newest generation is broken: {exc.message}"))
        if headers:
            _check_lock(repo, job, newest.name, headers[-1], now, findings)
            previous = headers[-2] if len(headers) > 1 else _previous_generation_tip(repo, history, newest, workdir)
            if previous is not None and not longterm:
                _check_drift(job, previous, headers[-1], findings)
        history.drop(workdir)
    return findings


class _Profiles:
    """The tripwire's measure of each point of a chain, judged against the chain's earlier untripped points."""

    def __init__(self, job: str, settings: TripwireSettings, findings: list[Finding]) -> None:
        self.job, self.settings, self.findings = job, settings, findings
        self.history: list[Profile] = []
        self.dense: dict[str, bool] = {}

    def measure(self, manifest: Manifest, before: TreeTable) -> None:
        header = manifest.header
        objects = manifest.objects
        if header.get("kind") == "full":
            profile = Profile.from_dict(header.get("profile"))  # measured by the client against the last generation
            claimed = " (as the client measured it)"
        else:
            measurer = Measurer(before, self.dense, objects, str((header.get("config") or {}).get("compression")))
            for entry in manifest.entries():
                measurer.entry(entry)
            profile, claimed = measurer.finish(), ""
        self.dense.update({o["key"]: dense_object(o) for o in objects if isinstance(o.get("method"), str)})
        if profile is None or not profile.files_before:
            return
        verdict = judge(profile, self.history, self.settings)
        if not verdict.suspicious:
            self.history.append(profile)
            return
        point = header.get("point") or {}
        self.findings.append(Finding(self.job, "suspicious", (
            f"{self.job}'s point {header.get('generation', {}).get('seq')}.{point.get('seq')} ({manifest.key}, "
            f"{point.get('time')}) looks like ransomware{claimed}, score {verdict.score}: " + "; ".join(verdict.reasons))))


def _check_lock(repo: Repository, job: str, newest, header: dict, now: datetime, findings: list[Finding]) -> None:
    lock = header.get("lock") if isinstance(header.get("lock"), dict) else {}
    if lock.get("mode", "none") == "none":
        if repo.store.capabilities.lockable:
            findings.append(Finding(job, "lock", f"the newest point of {job} was written without an object lock"))
        return
    try:
        planned = parse_time(str(lock.get("until")))
    except GenarcError:
        findings.append(Finding(job, "lock", f"the newest point of {job} records no lock date genarc writes"))
        return
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


def _previous_generation_tip(repo: Repository, history: History, newest: Point, workdir: Path) -> dict | None:
    """The header of the newest trusted point of an older generation, if any."""
    older = [p for p in history.trusted() if p.name.gseq < newest.name.gseq]
    if not older:
        return None
    try:
        return history.load(repo, older[-1], workdir).header
    except GenarcError:
        return None


def _check_drift(job: str, before: dict, after: dict, findings: list[Finding]) -> None:
    old = before.get("config") if isinstance(before.get("config"), dict) else {}
    new = after.get("config") if isinstance(after.get("config"), dict) else {}
    # The tripwire counts when it is switched off (points from before it existed do not record it).
    changes = [f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in WATCHED_CONFIG if old.get(key) != new.get(key)
               and (key != "tripwire" or (new.get(key) is False and old.get(key) is not False))]
    if changes:
        findings.append(Finding(job, "drift", f"the job config of {job} changed at the newest point "
                                              f"({after['point']['time']}): " + "; ".join(changes)))
