"""What a store's bucket is set up to do, read with the key in hand: for doctor, the planner and init.

The backup client's :class:`~archiver.store.base.Store` can only put, read, list and copy.
An :class:`Inspector` reads what lies around the objects: versioning, the Object Lock (or
File Lock) settings, the lifecycle rules and the key's own rights. Each backend provides
one (``backend.inspector()``), so no module outside ``archiver/store/`` needs to know which
backend it talks to. Reading something the key may not read raises a :class:`GenarcError`
(usually PermissionDenied); callers report that as "unknown", never as "fine".

Lifecycle rules come back in one normalized form, :class:`LifecycleRule`, whichever
server's syntax they were written in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping, Protocol


@dataclass(frozen=True)
class LifecycleRule:
    """One lifecycle rule: S3 (``Expiration``/``NoncurrentVersionExpiration``) or B2 (hide, then delete)."""

    prefix: str
    expire_days: int | None  # current versions get a delete marker (S3) or are hidden (B2) after this many days
    noncurrent_days: int | None  # noncurrent (S3) or hidden (B2) versions are removed this many days later
    expired_markers: bool = False  # S3: delete markers with nothing behind them are removed

    def covers(self, prefix: str) -> bool:
        """Whether the rule applies to every key under ``prefix``."""
        return prefix.startswith(self.prefix)

    def touches(self, prefix: str) -> bool:
        """Whether the rule applies to some key under ``prefix`` (a rule on a narrower prefix, too)."""
        return self.covers(prefix) or self.prefix.startswith(prefix)

    @staticmethod
    def from_s3(configuration: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> list["LifecycleRule"]:
        return rules_from_s3(configuration)


def _s3_rule_prefix(rule: Mapping[str, Any]) -> str:
    """The prefix an S3 rule applies to: the old top-level ``Prefix``, or ``Filter.Prefix`` / ``Filter.And.Prefix``."""
    if rule.get("Prefix") is not None:
        return str(rule["Prefix"])
    flt = rule.get("Filter") or {}
    return str(flt.get("Prefix", (flt.get("And") or {}).get("Prefix", "")) or "")


def _smallest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def rules_from_s3(configuration: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> list[LifecycleRule]:
    """Enabled S3 rules (a lifecycle configuration, or its ``Rules`` list), merged per prefix."""
    rules = configuration.get("Rules", []) if isinstance(configuration, Mapping) else configuration
    merged: dict[str, LifecycleRule] = {}
    for rule in rules:
        if rule.get("Status") != "Enabled":
            continue
        prefix = _s3_rule_prefix(rule)
        expiration = rule.get("Expiration") or {}
        expire = int(expiration["Days"]) if expiration.get("Days") else None
        noncurrent = (rule.get("NoncurrentVersionExpiration") or {}).get("NoncurrentDays")
        old = merged.get(prefix, LifecycleRule(prefix, None, None, False))
        merged[prefix] = LifecycleRule(prefix, _smallest(old.expire_days, expire),
                                       _smallest(old.noncurrent_days, int(noncurrent) if noncurrent else None),
                                       old.expired_markers or bool(expiration.get("ExpiredObjectDeleteMarker")))
    return list(merged.values())


def rules_from_b2(rules: Iterable[Mapping[str, Any]]) -> list[LifecycleRule]:
    """B2 ``lifecycleRules``: hidden after ``daysFromUploadingToHiding``, deleted ``daysFromHidingToDeleting`` later."""
    return [LifecycleRule(str(r.get("fileNamePrefix", "")), r.get("daysFromUploadingToHiding"),
                          r.get("daysFromHidingToDeleting"), True) for r in rules]


@dataclass(frozen=True)
class LockSettings:
    enabled: bool  # the bucket has Object Lock (S3) or File Lock (B2)
    default_mode: str | None = None  # a bucket default retention, if any
    default_days: int | None = None


@dataclass(frozen=True)
class KeyRights:
    """What the key says about itself (B2 keys do; an S3 key's IAM policy cannot be read with it)."""

    capabilities: tuple[str, ...]
    bucket: str | None = None
    name_prefix: str | None = None


PUBLIC_GROUPS = ("http://acs.amazonaws.com/groups/global/AllUsers",
                 "http://acs.amazonaws.com/groups/global/AuthenticatedUsers")


def public_grants(acl: Mapping[str, Any]) -> list[str]:
    """The permissions an S3 ACL grants to everyone (or every AWS user)."""
    return [f"{g.get('Permission')} for {str(g['Grantee']['URI']).rsplit('/', 1)[-1]}"
            for g in acl.get("Grants", []) if (g.get("Grantee") or {}).get("URI") in PUBLIC_GROUPS]


class Inspector(Protocol):
    kind: str  # "local" | "s3" | "b2": for wording only; callers branch on what the methods return
    prefix: str  # the repository's prefix inside the bucket ("" or "a/b/")

    def versioning(self) -> bool:
        """Whether overwrites and deletes keep older versions."""

    def lock_settings(self) -> LockSettings:
        """The bucket's lock settings."""

    def lifecycle_rules(self) -> list[LifecycleRule] | None:
        """The bucket's lifecycle rules ([] when none is set), or None where the store has no lifecycle."""

    def key_rights(self) -> KeyRights | None:
        """The key's own description of its rights, or None where the key cannot tell."""

    def can_delete(self, under: str = "") -> bool | None:
        """Whether this key can delete objects, learned without touching data; None where it cannot be probed.
        A probe that leaves a marker leaves it ``under`` this sub-prefix (a job's, which its lifecycle rule covers)."""

    def probe_conditional_put(self) -> bool | None:
        """Whether the server honours create-only writes; None where the question does not arise."""

    def trust_conditional_put(self, honoured: bool) -> None:
        """Tell the backend what :meth:`probe_conditional_put` found (recorded in the repository config)."""

    def probe_retention_cap(self, until: datetime, under: str) -> bool | None:
        """Whether the server refuses a new object locked until ``until`` (beyond the policy's cap): True when it
        does, False when it stores it (a few bytes ``under`` a job prefix, which its lifecycle rule removes once the
        lock ends); None where the store has no such cap."""

    def public_objects(self, keys: list[str]) -> list[tuple[str, str]]:
        """(key, why) for each of ``keys`` anyone may read, with ("", why) for a public bucket."""
