"""What to give the backup machine and the watchdog (pure: data in, data out).

- The S3 backup policy allows exactly what a run needs (list, read, write new
  objects with a retention, set a missing retention, server-side copy) and
  explicitly denies every destructive action, so that even a later, broader
  grant cannot give the backup key a way to destroy data.
- Retention is capped with ``s3:object-lock-remaining-retention-days``, so a
  stolen key cannot run up a bill with junk locked for a century.
- The watchdog policy is read-only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable

from .generation import RetentionPolicy

DENIED_TO_BACKUP = [
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:DeleteObjectTagging",
    "s3:DeleteObjectVersionTagging",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutBucketVersioning",
    "s3:PutBucketPolicy",
    "s3:DeleteBucketPolicy",
    "s3:DeleteBucket",
    "s3:BypassGovernanceRetention",  # denied: the backup key may never lift a governance lock
    "s3:PutObjectLegalHold",
    "s3:PutObjectAcl",  # an ACL could make the volumes readable by anyone
    "s3:PutObjectVersionAcl",
    "s3:PutBucketAcl",
]
READ_OBJECT_ACTIONS = [
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:GetObjectRetention",
    "s3:GetObjectLegalHold",
    "s3:GetObjectAcl",  # genarc audit checks that no object was made public
]  # HEAD needs only GetObject/GetObjectVersion; GetObjectAttributes is unused (and unknown to Ceph 16)
READ_BUCKET_ACTIONS = [
    "s3:GetBucketVersioning",
    "s3:GetBucketObjectLockConfiguration",
    "s3:GetLifecycleConfiguration",
    "s3:GetBucketLocation",
    "s3:GetBucketAcl",
]
B2_BACKUP_CAPABILITIES = ["listBuckets", "listFiles", "readFiles", "writeFiles"]
B2_LOCK_CAPABILITIES = ["readFileRetentions", "writeFileRetentions", "readBucketRetentions"]
B2_WATCHDOG_CAPABILITIES = ["listBuckets", "listFiles", "readFiles", "readFileRetentions", "readBucketRetentions"]


@dataclass(frozen=True)
class Location:
    bucket: str
    prefix: str  # without leading or trailing slash; may be empty

    @property
    def objects_arn(self) -> str:
        return f"arn:aws:s3:::{self.bucket}/{self.prefix + '/' if self.prefix else ''}*"

    @property
    def bucket_arn(self) -> str:
        return f"arn:aws:s3:::{self.bucket}"

    def list_condition(self) -> dict:
        if not self.prefix:
            return {}
        return {"StringLike": {"s3:prefix": [f"{self.prefix}/*", self.prefix, f"{self.prefix}/"]}}


def max_retention_days(policy: RetentionPolicy) -> int:
    """The longest lock a run ever asks for, in whole days, with one day of slack for rounding."""
    seconds = policy.lock_days * policy.day_seconds
    return -(-seconds // 86400) + 1


def _read_statements(location: Location) -> list[dict]:
    """What both the backup key and the watchdog may do: list the repository, read its objects and settings."""
    listing = {"Sid": "ListTheRepository", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:ListBucketVersions"],
               "Resource": location.bucket_arn}
    if location.list_condition():
        listing["Condition"] = location.list_condition()
    return [
        listing,
        {"Sid": "ReadBucketSettings", "Effect": "Allow", "Action": READ_BUCKET_ACTIONS, "Resource": location.bucket_arn},
        {"Sid": "ReadObjects", "Effect": "Allow", "Action": READ_OBJECT_ACTIONS, "Resource": location.objects_arn},
    ]


def s3_backup_policy(location: Location, policies: RetentionPolicy | Iterable[RetentionPolicy],
                     retention_updates: bool = True, min_cap_days: int = 0) -> dict:
    """The backup key's rights; its locks are capped at the longest any of ``policies`` asks for (the daily
    generations' and each long-term tier's). ``retention_updates=False``: the key may not set a lock after upload
    at all (PutObjectRetention is denied), for servers that cannot be trusted with it (Ceph 16 wraps dates past
    2106 and ignores the cap). ``min_cap_days``: a longer lock some other writer asks for (the tripwire's
    protection of a clean point, ``longterm.protect_cap_days``)."""
    longest = max(max_retention_days(p) for p in ([policies] if isinstance(policies, RetentionPolicy) else policies))
    cap = str(max(longest, min_cap_days))
    writes = ["s3:PutObject", "s3:PutObjectRetention"] if retention_updates else ["s3:PutObject"]
    denied = DENIED_TO_BACKUP if retention_updates else [*DENIED_TO_BACKUP, "s3:PutObjectRetention"]
    return {
        "Version": "2012-10-17",
        "Statement": [
            *_read_statements(location),
            {"Sid": "WriteNewObjectsWithBoundedLocks", "Effect": "Allow",
             "Action": writes, "Resource": location.objects_arn,
             "Condition": {"NumericLessThanEqualsIfExists": {
                 "s3:object-lock-remaining-retention-days": cap}}},
            {"Sid": "NeverDestroy", "Effect": "Deny", "Action": denied,
             "Resource": [location.bucket_arn, f"{location.bucket_arn}/*"]},
            # A deny, so it binds even where an owner's implicit rights would allow the write.
            {"Sid": "NoCenturyLocks", "Effect": "Deny", "Action": ["s3:PutObject", "s3:PutObjectRetention"],
             "Resource": f"{location.bucket_arn}/*",
             "Condition": {"NumericGreaterThan": {
                 "s3:object-lock-remaining-retention-days": cap}}},
        ],
    }


def s3_watchdog_policy(location: Location) -> dict:
    return {
        "Version": "2012-10-17",
        "Statement": [
            *_read_statements(location),
            {"Sid": "ReadOnly", "Effect": "Deny",
             "Action": ["s3:PutObject", "s3:PutObjectRetention", *DENIED_TO_BACKUP],
             "Resource": [location.bucket_arn, f"{location.bucket_arn}/*"]},
        ],
    }


def b2_key_command(location: Location, name: str, capabilities: list[str]) -> str:
    prefix = f" --name-prefix {location.prefix}/" if location.prefix else ""
    return f"b2 key create --bucket {location.bucket}{prefix} {name} {','.join(capabilities)}"


def b2_backup_capabilities(lock: bool) -> list[str]:
    return B2_BACKUP_CAPABILITIES + (B2_LOCK_CAPABILITIES if lock else [])


def render(value: dict) -> str:
    return json.dumps(value, indent=2)
