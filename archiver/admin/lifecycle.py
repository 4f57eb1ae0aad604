"""Lifecycle rules, applied with ADMIN rights: the only code in genarc that removes anything.

Two things live here, both apart from the backup client (whose Store cannot delete):

- ``apply_*``: write the lifecycle configuration that ``genarc plan`` computed, with
  separate admin credentials (``genarc plan --apply``). Never with the backup key.
- ``LifecycleExecutor``: for tests and ``genarc plan --simulate``, it plays the bucket's
  lifecycle at a simulated "now", as S3 or B2 would, and honours the locks: a version
  whose retain-until date is still ahead is never removed.

S3 semantics: a current version older than the expiration days gets a delete marker
(it becomes noncurrent); a noncurrent version is removed NoncurrentDays after it became
noncurrent, once its lock has passed; a delete marker left alone is removed.
B2 semantics: a file older than daysFromUploadingToHiding is hidden; a hidden file is
deleted daysFromHidingToDeleting later, once its lock has passed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

from ..errors import ConfigError
from ..store.inspect import LifecycleRule


@dataclass
class AdminVersion:
    key: str
    version_id: str | None
    size: int
    is_delete_marker: bool = False
    retain_until: datetime | None = None
    modified: datetime | None = None


class AdminStore(Protocol):
    """What a lifecycle needs, and the backup client never gets."""

    def versions(self, prefix: str) -> list[AdminVersion]: ...

    def hide(self, key: str) -> str | None:
        """S3: place a delete marker; B2: hide; local: remove (it has no versions). Returns the marker's id."""

    def remove_version(self, key: str, version_id: str | None) -> None: ...


@dataclass
class ExecutorReport:
    hidden: int = 0
    removed: int = 0
    removed_bytes: int = 0
    kept_by_lock: int = 0
    markers_removed: int = 0


Rule = LifecycleRule  # a normalized rule (archiver/store/inspect.py); ``Rule.from_s3(configuration)``


class LifecycleExecutor:
    """Applies rules at a simulated ``now``. ``uploaded_at`` gives each version's (simulated) upload time."""

    def __init__(self, admin: AdminStore, rules: list[Rule], day: timedelta = timedelta(days=1),
                 uploaded_at: Callable[[str, str | None], datetime | None] | None = None) -> None:
        self.admin, self.rules, self.day = admin, rules, day
        self.uploaded_at = uploaded_at or (lambda key, version: None)
        self.noncurrent_since: dict[tuple[str, str | None], datetime] = {}

    def _born(self, version: AdminVersion) -> datetime:
        when = self.uploaded_at(version.key, version.version_id) or version.modified
        return when or datetime.min.replace(tzinfo=timezone.utc)

    def apply(self, now: datetime) -> ExecutorReport:
        report = ExecutorReport()
        for rule in self.rules:
            by_key: dict[str, list[AdminVersion]] = {}
            for version in self.admin.versions(rule.prefix):
                by_key.setdefault(version.key, []).append(version)
            for key, versions in by_key.items():
                self._apply_key(rule, key, versions, now, report)
        return report

    def _apply_key(self, rule: Rule, key: str, versions: list[AdminVersion], now: datetime,
                   report: ExecutorReport) -> None:
        # A marker this executor placed and the version it hid share a time: the marker is the newer.
        ordered = sorted(versions, key=lambda v: (self.noncurrent_since.get((v.key, v.version_id)) or self._born(v),
                                                  v.is_delete_marker))
        latest = ordered[-1]
        if (rule.expire_days is not None and not latest.is_delete_marker
                and now >= self._born(latest) + self.day * rule.expire_days):
            marker = self.admin.hide(key)
            self.noncurrent_since[(key, latest.version_id)] = now
            if marker is not None:
                self.noncurrent_since[(key, marker)] = now
            report.hidden += 1
            ordered.append(AdminVersion(key, marker, 0, is_delete_marker=True))
        # Everything but the newest entry is noncurrent; it became so when the next one appeared.
        remaining = []
        for older, newer in zip(ordered, ordered[1:]):
            if older.is_delete_marker:
                continue
            since = self.noncurrent_since.setdefault((key, older.version_id),
                                                     self.noncurrent_since.get((key, newer.version_id)) or self._born(newer))
            if rule.noncurrent_days is None or now < since + self.day * rule.noncurrent_days:
                remaining.append(older)
                continue
            if older.retain_until is not None and older.retain_until > now:
                report.kept_by_lock += 1  # the lock outlives the rule: nothing removes it, not even the lifecycle
                remaining.append(older)
                continue
            self.admin.remove_version(key, older.version_id)
            report.removed += 1
            report.removed_bytes += older.size
        newest = ordered[-1]
        if rule.expired_markers and newest.is_delete_marker and not remaining and len(ordered) > 1:
            self.admin.remove_version(key, newest.version_id)
            report.markers_removed += 1


# -- admin adapters ----------------------------------------------------------------------------------
class S3Admin:
    """Admin access to an S3 bucket. ``bypass_governance`` lets a simulation remove governance-locked
    versions whose *simulated* lock has passed while the server's real clock says otherwise."""

    def __init__(self, client: Any, bucket: str, bypass_governance: bool = False) -> None:
        self.client, self.bucket, self.bypass = client, bucket, bypass_governance
        self._until: dict[tuple[str, str], Any] = {}  # a version's lock can be extended, never shortened

    def _retain_until(self, key: str, version_id: str) -> Any:
        if (key, version_id) not in self._until:
            head = self.client.head_object(Bucket=self.bucket, Key=key, VersionId=version_id)
            self._until[(key, version_id)] = head.get("ObjectLockRetainUntilDate")
        return self._until[(key, version_id)]

    def versions(self, prefix: str) -> list[AdminVersion]:
        found = []
        for page in self.client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Versions", []):
                until = self._retain_until(item["Key"], item["VersionId"])
                found.append(AdminVersion(item["Key"], item["VersionId"], int(item["Size"]), False,
                                          until.astimezone(timezone.utc) if until else None, item["LastModified"]))
            for item in page.get("DeleteMarkers", []):
                found.append(AdminVersion(item["Key"], item["VersionId"], 0, True, None, item["LastModified"]))
        return found

    def hide(self, key: str) -> str | None:
        return self.client.delete_object(Bucket=self.bucket, Key=key).get("VersionId")

    def remove_version(self, key: str, version_id: str | None) -> None:
        extra = {"BypassGovernanceRetention": True} if self.bypass else {}
        self.client.delete_object(Bucket=self.bucket, Key=key, VersionId=version_id, **extra)


class LocalAdmin:
    """A local repository has no versions: expiry removes the file (the object) outright."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def versions(self, prefix: str) -> list[AdminVersion]:
        found = []
        base = self.root
        for dirpath, _, filenames in os.walk(base):
            for name in filenames:
                path = Path(dirpath) / name
                key = path.relative_to(base).as_posix()
                if key.startswith(prefix) and ".genarc-tmp-" not in name:
                    st = path.stat()
                    found.append(AdminVersion(key, None, st.st_size, False, None,
                                              datetime.fromtimestamp(st.st_mtime, timezone.utc)))
        return found

    def hide(self, key: str) -> str | None:
        self.remove_version(key, None)
        return None

    def remove_version(self, key: str, version_id: str | None) -> None:
        path = self.root.joinpath(*key.split("/"))
        path.unlink(missing_ok=True)


# -- applying the rules (genarc plan --apply) ----------------------------------------------------------
def apply_s3(client: Any, bucket: str, configuration: dict) -> None:
    client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=configuration)


def apply_b2(api: Any, bucket_name: str, rules: list[dict]) -> None:
    api.get_bucket_by_name(bucket_name).update(lifecycle_rules=rules)


def apply_rules(url: str, options: Any, admin_profile: str | None, env: Mapping[str, str], s3_rules: dict,
                b2_rules: list[dict]) -> str:
    """``genarc plan --apply``: write the rules with ADMIN credentials, never the backup key's. Returns what was done."""
    from ..store import split_bucket_url

    scheme = url.split("://", 1)[0] if "://" in url else "file"
    if scheme not in ("s3", "b2"):
        raise ConfigError("A local repository has no lifecycle rules to apply.")
    bucket = split_bucket_url(url)[0]
    if scheme == "s3":
        from ..store.s3 import translate

        try:
            apply_s3(_s3_admin_client(options, admin_profile, env), bucket, s3_rules)
        except ConfigError:
            raise
        except Exception as exc:
            raise translate(exc, "Writing the lifecycle rules") from exc
        return f"wrote {len(s3_rules['Rules'])} lifecycle rule(s) to s3://{bucket}"
    from ..store.b2 import make_api, translate as b2_translate

    key_id, key = env.get("GENARC_ADMIN_B2_APPLICATION_KEY_ID"), env.get("GENARC_ADMIN_B2_APPLICATION_KEY")
    if not key_id or not key:
        raise ConfigError("--apply needs GENARC_ADMIN_B2_APPLICATION_KEY_ID and GENARC_ADMIN_B2_APPLICATION_KEY "
                          "(a key with writeBuckets); the backup key must not be able to do this.")
    try:
        apply_b2(make_api(key_id, key), bucket, b2_rules)
    except Exception as exc:
        raise b2_translate(exc, "Writing the lifecycle rules") from exc
    return f"wrote {len(b2_rules)} lifecycle rule(s) to b2://{bucket}"


def _s3_admin_client(options: Any, admin_profile: str | None, env: Mapping[str, str],
                     what: str = "--apply") -> Any:
    from ..store.s3 import make_client

    if admin_profile:
        return make_client(options.endpoint_url, options.region, admin_profile)
    key_id, secret = env.get("GENARC_ADMIN_AWS_ACCESS_KEY_ID"), env.get("GENARC_ADMIN_AWS_SECRET_ACCESS_KEY")
    if not key_id or not secret:
        raise ConfigError(f"{what} needs admin credentials: --admin-profile, or GENARC_ADMIN_AWS_ACCESS_KEY_ID "
                          "and GENARC_ADMIN_AWS_SECRET_ACCESS_KEY. The backup key must not be able to do this.")
    import boto3

    return boto3.client("s3", endpoint_url=options.endpoint_url, region_name=options.region,
                        aws_access_key_id=key_id, aws_secret_access_key=secret)


@dataclass
class UploadLedger:
    """Simulated upload times by (key, version): what a simulation's lifecycle needs to know."""

    times: dict[tuple[str, str | None], datetime] = field(default_factory=dict)

    def record(self, key: str, version_id: str | None, when: datetime) -> None:
        self.times[(key, version_id)] = when

    def __call__(self, key: str, version_id: str | None) -> datetime | None:
        return self.times.get((key, version_id))
