"""genarc doctor: what protects this repository, and what does not.

Everything is read with the repository's own credentials through the store's
:class:`~archiver.store.Inspector`. On S3 the inspector also runs the **delete probe**
(``archiver/admin/probe.py``): a DeleteObject on a random key that was never written,
whose answer says whether the backup key can delete; no data can be touched by it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .config import Config
from .errors import GenarcError
from .clock import format_time
from .generation import expires_from, lifecycle_age_days
from .layout import manifests_prefix, parse_manifest_key
from .longterm import job_names, lock_cap_days, policy_of
from .plan import check_expiry, expiry_days, job_prefixes
from .repository import first_version, listing
from .store import Inspector, KeyRights, Store, inspector_for


@dataclass
class Check:
    name: str
    status: str  # "ok" | "warn" | "fail" | "unknown"
    detail: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class DoctorReport:
    repository: str
    store: str
    checks: list[Check] = field(default_factory=list)

    @property
    def safe(self) -> bool:
        """Ransomware-safe: nothing failed. Warnings cost money or comfort, not data."""
        return bool(self.checks) and not any(c.status in ("fail", "unknown") and c.name in _CRITICAL
                                             for c in self.checks) and not any(c.status == "fail" for c in self.checks)

    def add(self, name: str, status: str, detail: str) -> None:
        self.checks.append(Check(name, status, detail))


_CRITICAL = {"versioning", "object lock", "delete probe", "key capabilities", "local repository"}
_DANGEROUS = ("deleteFiles", "writeBuckets", "deleteBuckets", "bypassGovernance", "writeBucketRetentions",
              "deleteKeys", "writeKeys")


def diagnose(config: Config, store: Store, now: datetime, probe_delete: bool = True) -> DoctorReport:
    inspector = inspector_for(store)
    caps = store.capabilities
    report = DoctorReport(config.repository_url, caps.description)
    if not caps.lockable:
        report.add("local repository", "fail", caps.unprotected or "this store cannot lock objects")
        return report
    rights = inspector.key_rights()
    if rights is not None:
        _check_rights(rights, report)
    _check_versioning(inspector, report)
    _check_lock(config, inspector, report)
    _check_lifecycle(config, inspector, report, now)
    if rights is None and probe_delete:
        _check_delete(config, inspector, report)
        _check_cap(config, inspector, report, now)
    _check_holds(config, store, report, now)
    _check_tripwire(config, rights, report)
    return report


def _check_tripwire(config: Config, rights: KeyRights | None, report: DoctorReport) -> None:
    """Can a trip protect the last clean point? It extends locks with the backup key."""
    settings = config.tripwire
    fallback = "an administrator's `genarc hold` is then the only way to keep the last clean point"
    if not settings.enabled:
        report.add("tripwire", "warn", "the tripwire is off ([tripwire] enabled = false): a poisoned source is backed "
                   "up as normal changes until the clean generations expire (`genarc watch` still measures it)")
    elif config.lock_mode == "none":
        report.add("tripwire", "warn", f"lock_mode = \"none\": a trip cannot extend any lock; {fallback}")
    elif rights is not None and "writeFileRetentions" not in rights.capabilities:
        report.add("tripwire", "warn", f"the key lacks writeFileRetentions, so a trip cannot extend locks; {fallback}")
    elif rights is None and not config.store_options.retention_updates:
        report.add("tripwire", "warn", "retention_updates = false: the key may not extend a lock, so a trip cannot "
                   f"protect the last clean point; {fallback}")
    else:
        report.add("tripwire", "ok", f"on; a trip extends the last clean point's locks to {settings.protect_days} "
                   f"days from then, within the {lock_cap_days(config)}-day cap `genarc policy` sets")


def expected_age(config: Config) -> int:
    return lifecycle_age_days(config.retention)


def _lock_name(inspector: Inspector) -> str:
    return "File Lock" if inspector.kind == "b2" else "Object Lock"


def _check_rights(rights: KeyRights, report: DoctorReport) -> None:
    dangerous = [c for c in rights.capabilities if c in _DANGEROUS]
    report.add("key capabilities", "fail" if dangerous else "ok",
               f"the key has {', '.join(dangerous)}: it can destroy data or settings" if dangerous
               else f"the key has only {', '.join(rights.capabilities)}; no deleteFiles")
    report.add("key scope", "ok" if rights.bucket else "warn",
               f"restricted to bucket {rights.bucket}" + (f", prefix {rights.name_prefix}" if rights.name_prefix else "")
               if rights.bucket else "the key is not restricted to one bucket")


def _check_versioning(inspector: Inspector, report: DoctorReport) -> None:
    try:
        enabled = inspector.versioning()
    except GenarcError as exc:
        report.add("versioning", "unknown", f"cannot read it ({exc.message})")
        return
    report.add("versioning", "ok" if enabled else "fail",
               "versioning is on: overwrites and deletes leave the old versions" if enabled
               else "versioning is off: an overwrite replaces data")


def _check_lock(config: Config, inspector: Inspector, report: DoctorReport) -> None:
    name = _lock_name(inspector)
    try:
        settings = inspector.lock_settings()
    except GenarcError as exc:
        report.add("object lock", "unknown", f"cannot read it ({exc.message})")
        return
    mode = config.lock_mode
    if not settings.enabled:
        report.add("object lock", "fail", f"{name} is off" + _unlocked_window(inspector))
    elif mode == "compliance":
        report.add("object lock", "ok", f"{name} is on; genarc locks every object in compliance mode, "
                   "which nobody, not even the bucket owner, can shorten")
    elif mode == "governance":
        report.add("object lock", "warn", f"{name} is on in governance mode: anyone with the right to bypass "
                   "governance retention can remove the locks")
    else:
        report.add("object lock", "warn", f"{name} is on but lock_mode = \"none\": genarc writes no locks")
    if not settings.enabled:
        return
    if settings.default_days:
        verdict = "warn" if settings.default_days > expected_age(config) else "ok"
        report.add("default retention", verdict,
                   f"bucket default {settings.default_mode} {settings.default_days} days" +
                   (f": longer than the lifecycle age {expected_age(config)}, so storage is reclaimed late"
                    if verdict == "warn" else "; genarc's own per-object lock takes precedence"))
    else:
        report.add("default retention", "ok", "no bucket default retention; genarc sets every object's lock")


def _unlocked_window(inspector: Inspector) -> str:
    """Without a lock, how long a hidden (B2) or delete-marked (S3) object can still be recovered."""
    if inspector.kind != "b2":
        return ""
    try:
        days = [r.noncurrent_days for r in inspector.lifecycle_rules() or [] if r.covers(inspector.prefix)]
    except GenarcError:
        days = []
    known = [d for d in days if d]
    return (": a key with writeFiles can hide files, and B2 deletes hidden files " +
            (f"{min(known)} days later: notice an attack within that window" if known
             else "after the lifecycle's daysFromHidingToDeleting"))


def _check_lifecycle(config: Config, inspector: Inspector, report: DoctorReport, now: datetime) -> None:
    try:
        rules = inspector.lifecycle_rules() or []
    except GenarcError as exc:
        report.add("lifecycle", "unknown", f"cannot read it ({exc.message})")
        return
    # Each job's own prefix, as `plan --apply` writes its rules, with the tier policy for long-term points;
    # a rule on the repository prefix covers them all, and one on a narrower prefix counts too.
    levels = {"ok": "ok", "warning": "warn", "error": "fail"}
    found = []
    for job, prefix in _job_prefixes(config, inspector.prefix):
        finding = check_expiry(policy_of(config, job), expiry_days(rules, prefix), [], now)
        found.append((levels[finding.level], job, finding.message))
        if not any(r.noncurrent_days for r in rules if r.covers(prefix)):
            report.add("lifecycle noncurrent", "warn", f"{job}: no rule removes noncurrent (or hidden) versions: "
                       "expired data stays stored behind delete markers")
    worst = max(found, key=lambda f: ["ok", "warn", "fail"].index(f[0]))[0]
    report.add("lifecycle", worst, "; ".join(f"{job}: {message}" if len(found) > 1 else message
                                             for status, job, message in found if status == worst))


def _job_prefixes(config: Config, repository_prefix: str) -> list[tuple[str, str]]:
    jobs = job_names(config)
    return list(zip(jobs, job_prefixes(repository_prefix, jobs)))  # job_prefixes keeps sorted order


def _check_holds(config: Config, store: Store, report: DoctorReport, now: datetime) -> None:
    """Objects under a legal hold (`genarc hold`) outlive their lock and the lifecycle until released: say which
    generations are held, and which of them the lifecycle would already have removed (they are still billed)."""
    held: list[str] = []
    overdue = 0
    try:
        for job in job_names(config):
            generations: dict[tuple[int, datetime], int] = {}
            for key, infos in listing(store, manifests_prefix(job)).items():
                name, original = parse_manifest_key(key), first_version(infos)
                if name is None or original is None or name.job != job:
                    continue
                if store.stat(key, version_id=original.version_id).legal_hold:
                    generations[name.gseq, name.gstart] = generations.get((name.gseq, name.gstart), 0) + 1
            for (gseq, gstart), points in sorted(generations.items()):
                expiry = expires_from(gstart, policy_of(config, job))
                overdue += expiry <= now
                held.append(f"job {job} generation {gseq} ({points} point(s); the lifecycle "
                            f"{'would have removed it from' if expiry <= now else 'may remove it from'} "
                            f"{format_time(expiry)})")
    except GenarcError as exc:
        report.add("legal holds", "unknown", f"cannot read them ({exc.message})")
        return
    if not held:
        report.add("legal holds", "ok", "no restore point is held; the lifecycle removes generations as planned")
        return
    report.add("legal holds", "warn" if overdue else "ok",
               "held until released, whatever the lock and the lifecycle say (and billed until then): "
               + "; ".join(held) + ". Release with `genarc hold JOB --generation N --release` and admin credentials.")


def _check_delete(config: Config, inspector: Inspector, report: DoctorReport) -> None:
    try:
        can = inspector.can_delete(under=f"{min(config.jobs)}/")  # a marker it leaves, the job's rule removes
    except GenarcError as exc:
        report.add("delete probe", "unknown", f"inconclusive ({exc.message})")
        return
    if can is None:
        return
    report.add("delete probe", "fail" if can else "ok",
               "this key CAN delete objects (DeleteObject on a never-written key succeeded); give the backup "
               "machine the policy from `genarc policy`" if can else "this key cannot delete objects (AccessDenied)")


def _check_cap(config: Config, inspector: Inspector, report: DoctorReport, now: datetime) -> None:
    """Does the server refuse a lock longer than any run asks for? `genarc policy` caps it with a condition
    that not every server evaluates; the probe leaves a few bytes under a job prefix where it does not."""
    cap = lock_cap_days(config)
    try:
        refused = inspector.probe_retention_cap(now + timedelta(days=cap + 2), under=f"{min(config.jobs)}/")
    except GenarcError as exc:
        report.add("retention cap", "unknown", f"inconclusive ({exc.message})")
        return
    if refused is None:
        return
    if refused:
        report.add("retention cap", "ok", f"the server refuses a lock longer than the {cap} days a run asks for")
        return
    risk = ("with retention_updates = false the key cannot lengthen existing locks" if not
            config.store_options.retention_updates else
            "and where the server also stores dates in 32 bits (Ceph RGW 16), the key can unlock an object by "
            "\"extending\" its lock past 2106: set retention_updates = false and apply the policy `genarc policy` "
            "then prints (docs/stores.md)")
    report.add("retention cap", "warn", f"the server stored an object locked {cap + 2} days, beyond the {cap}-day cap "
               "in the policy: it does not evaluate s3:object-lock-remaining-retention-days, so a stolen key can lock "
               f"junk for years (a cost attack; `genarc audit` names such locks); {risk}")


def as_dict(report: DoctorReport) -> dict[str, Any]:
    return {"repository": report.repository, "store": report.store, "safe": report.safe,
            "checks": [{"name": c.name, "status": c.status, "detail": c.detail} for c in report.checks]}
