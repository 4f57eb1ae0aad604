"""genarc doctor: what protects this repository, and what does not.

This module reads bucket settings with the repository's own credentials, and for
S3 it runs the one delete genarc ever sends: the **delete probe**, a DeleteObject
on a random key that was never written. Its answer (204 or AccessDenied) says
whether the backup key can delete; no data can be touched by it. It lives here,
apart from the client Store, which has no delete at all.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .config import Config
from .generation import lifecycle_age_days
from .plan import check_expiry, expiry_days_from_b2, expiry_days_from_s3
from .store import LocalStore, Store, backend_of
from .store.b2 import B2Store
from .store.s3 import S3Store, translate


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


def diagnose(config: Config, store: Store, now: datetime, probe_delete: bool = True) -> DoctorReport:
    backend = backend_of(store)
    report = DoctorReport(config.repository_url, type(backend).__name__)
    if isinstance(backend, LocalStore):
        report.add("local repository", "fail", "a local directory has no object lock: anyone with this machine's rights "
                   "can delete it; use S3 with Object Lock or B2 with File Lock for ransomware-proof backups")
        return report
    if isinstance(backend, S3Store):
        _diagnose_s3(config, backend, report, probe_delete, now)
    elif isinstance(backend, B2Store):
        _diagnose_b2(config, backend, report, now)
    return report


def expected_age(config: Config) -> int:
    return lifecycle_age_days(config.retention)


def _rule_covers(prefix: str, rule: dict) -> bool:
    rule_prefix = rule.get("Prefix")
    if rule_prefix is None:
        flt = rule.get("Filter") or {}
        rule_prefix = flt.get("Prefix", (flt.get("And") or {}).get("Prefix", ""))
    return prefix.startswith(rule_prefix or "")


def _diagnose_s3(config: Config, store: S3Store, report: DoctorReport, probe_delete: bool, now: datetime) -> None:
    client, bucket = store.client, store.bucket
    try:
        status = client.get_bucket_versioning(Bucket=bucket).get("Status")
        report.add("versioning", "ok" if status == "Enabled" else "fail",
                   "versioning is on: overwrites and deletes leave the old versions" if status == "Enabled"
                   else f"versioning is {status or 'off'}: an overwrite replaces data")
    except Exception as exc:
        report.add("versioning", "unknown", f"cannot read it ({translate(exc, 'versioning').message})")
    try:
        conf = client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
        enabled = conf.get("ObjectLockEnabled") == "Enabled"
        mode = config.lock_mode
        if enabled and mode == "compliance":
            report.add("object lock", "ok", "Object Lock is on; genarc locks every object in compliance mode, "
                       "which nobody, not even the bucket owner, can shorten")
        elif enabled and mode == "governance":
            report.add("object lock", "warn", "Object Lock is on in governance mode: anyone with "
                       "s3:BypassGovernanceRetention can remove the locks")
        elif enabled:
            report.add("object lock", "warn", "Object Lock is on but lock_mode = \"none\": genarc writes no locks")
        else:
            report.add("object lock", "fail", "Object Lock is off")
        default = (conf.get("Rule") or {}).get("DefaultRetention")
        if default:
            days = default.get("Days") or (default.get("Years", 0) * 365)
            verdict = "warn" if days > expected_age(config) else "ok"
            report.add("default retention", verdict,
                       f"bucket default {default.get('Mode')} {days} days" +
                       (f": longer than the lifecycle age {expected_age(config)}, so storage is reclaimed late"
                        if verdict == "warn" else "; genarc's own per-object lock takes precedence"))
        else:
            report.add("default retention", "ok", "no bucket default retention; genarc sets every object's lock")
    except Exception as exc:
        error = translate(exc, "Object Lock configuration")
        status = "fail" if "ObjectLockConfigurationNotFound" in str(exc) else "unknown"
        report.add("object lock", status, "Object Lock is not configured on this bucket" if status == "fail"
                   else f"cannot read it ({error.message})")
    try:
        rules = client.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", [])
        _check_s3_lifecycle(config, store.prefix, rules, report, now)
    except Exception as exc:
        if "NoSuchLifecycleConfiguration" in str(exc):
            _lifecycle_check(config, None, report, now)
        else:
            report.add("lifecycle", "unknown", f"cannot read it ({translate(exc, 'lifecycle').message})")
    if probe_delete:
        probe_key = f"{store.prefix}genarc-delete-probe-{secrets.token_hex(12)}"
        try:
            client.delete_object(Bucket=bucket, Key=probe_key)  # a key that was never written: nothing to lose
            report.add("delete probe", "fail", "this key CAN delete objects (DeleteObject on a never-written key "
                       "succeeded); give the backup machine the policy from `genarc policy`")
        except Exception as exc:
            error = translate(exc, "delete probe")
            if type(error).__name__ == "PermissionDenied":
                report.add("delete probe", "ok", "this key cannot delete objects (AccessDenied)")
            else:
                report.add("delete probe", "unknown", f"inconclusive ({error.message})")


_LEVEL = {"ok": "ok", "warning": "warn", "error": "fail"}


def _lifecycle_check(config: Config, expiry_days: int | None, report: DoctorReport, now: datetime) -> None:
    finding = check_expiry(config.retention, expiry_days, [], now)
    report.add("lifecycle", _LEVEL[finding.level], finding.message)


def _check_s3_lifecycle(config: Config, prefix: str, rules: list[dict], report: DoctorReport, now: datetime) -> None:
    _lifecycle_check(config, expiry_days_from_s3(rules, prefix), report, now)
    mine = [r for r in rules if r.get("Status") == "Enabled" and _rule_covers(prefix, r)]
    if not any((r.get("NoncurrentVersionExpiration") or {}).get("NoncurrentDays") for r in mine):
        report.add("lifecycle noncurrent", "warn", "no rule removes noncurrent versions: expired data stays stored "
                   "behind delete markers")


def _diagnose_b2(config: Config, store: B2Store, report: DoctorReport, now: datetime) -> None:
    allowed = store.api.account_info.get_allowed() or {}
    capabilities = sorted(allowed.get("capabilities") or [])
    dangerous = [c for c in capabilities if c in ("deleteFiles", "writeBuckets", "deleteBuckets", "bypassGovernance",
                                                  "writeBucketRetentions", "deleteKeys", "writeKeys")]
    report.add("key capabilities", "fail" if dangerous else "ok",
               f"the key has {', '.join(dangerous)}: it can destroy data or settings" if dangerous
               else f"the key has only {', '.join(capabilities)}; no deleteFiles")
    restricted = allowed.get("bucketName") or allowed.get("bucketId")
    report.add("key scope", "ok" if restricted else "warn",
               f"restricted to bucket {restricted}" + (f", prefix {allowed.get('namePrefix')}" if allowed.get("namePrefix") else "")
               if restricted else "the key is not restricted to one bucket")
    lock = getattr(store.bucket, "is_file_lock_enabled", None)
    if lock is None:
        report.add("object lock", "unknown", "this key cannot read the bucket's File Lock setting (readBucketRetentions)")
    elif lock:
        report.add("object lock", "ok" if config.lock_mode == "compliance" else "warn",
                   f"File Lock is on; genarc writes {config.lock_mode} retention")
    else:
        hide_days = _b2_hide_to_delete_days(store)
        report.add("object lock", "fail", "File Lock is off: a key with writeFiles can hide files, and B2 deletes hidden "
                   "files" + (f" {hide_days} days later: notice an attack within that window" if hide_days is not None
                              else " after the lifecycle's daysFromHidingToDeleting"))
    rules = getattr(store.bucket, "lifecycle_rules", None) or []
    _lifecycle_check(config, expiry_days_from_b2(rules, store.prefix), report, now)


def _b2_hide_to_delete_days(store: B2Store) -> int | None:
    for rule in getattr(store.bucket, "lifecycle_rules", None) or []:
        if store.prefix.startswith(rule.get("fileNamePrefix", "")) and rule.get("daysFromHidingToDeleting"):
            return int(rule["daysFromHidingToDeleting"])
    return None


def as_dict(report: DoctorReport) -> dict[str, Any]:
    return {"repository": report.repository, "store": report.store, "safe": report.safe,
            "checks": [{"name": c.name, "status": c.status, "detail": c.detail} for c in report.checks]}

