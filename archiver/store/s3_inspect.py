"""Reading an S3 bucket's settings with the backup key: versioning, Object Lock, lifecycle, delete rights."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable

from ..errors import PermissionDenied
from .inspect import KeyRights, LifecycleRule, LockSettings, public_grants, rules_from_s3

if TYPE_CHECKING:
    from .s3 import S3Store


class S3Inspector:
    kind = "s3"

    def __init__(self, store: "S3Store") -> None:
        self.store = store
        self.prefix = store.prefix

    def _read(self, what: str, call: Callable[[], Any], absent: str | None = None, default: Any = None) -> Any:
        """Call the SDK; an error whose text names ``absent`` means "not configured" and gives ``default``."""
        from .s3 import translate

        try:
            return call()
        except Exception as exc:
            if absent is not None and absent in str(exc):
                return default
            raise translate(exc, what) from exc

    def versioning(self) -> bool:
        client, bucket = self.store.client, self.store.bucket
        status = self._read("versioning", lambda: client.get_bucket_versioning(Bucket=bucket).get("Status"))
        return status == "Enabled"

    def lock_settings(self) -> LockSettings:
        client, bucket = self.store.client, self.store.bucket
        conf = self._read("Object Lock configuration",
                          lambda: client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"],
                          absent="ObjectLockConfigurationNotFound")
        if conf is None:
            return LockSettings(False)
        default = (conf.get("Rule") or {}).get("DefaultRetention") or {}
        days = default.get("Days") or (default.get("Years", 0) * 365) or None
        return LockSettings(conf.get("ObjectLockEnabled") == "Enabled", default.get("Mode"), days)

    def lifecycle_rules(self) -> list[LifecycleRule]:
        client, bucket = self.store.client, self.store.bucket
        rules = self._read("lifecycle", lambda: client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"],
                           absent="NoSuchLifecycleConfiguration", default=[])
        return rules_from_s3(rules)

    def key_rights(self) -> KeyRights | None:
        return None  # an IAM user cannot read its own policy with the backup rights

    def can_delete(self, under: str = "") -> bool | None:
        """The delete probe: DeleteObject on a random key that was never written (docs/design.md, "Probes")."""
        from ..admin.probe import s3_delete_probe

        try:
            return s3_delete_probe(self.store.client, self.store.bucket, self.prefix + under)
        except PermissionDenied:
            return False

    def probe_conditional_put(self) -> bool | None:
        return self.store.probe_conditional_put()

    def trust_conditional_put(self, honoured: bool) -> None:
        self.store.use_conditional(honoured)

    def probe_retention_cap(self, until: datetime, under: str) -> bool | None:
        import hashlib
        import secrets

        from ..layout import PROBE_PREFIX
        from .s3 import b64_of_hex, translate

        body = b"genarc retention-cap probe\n"
        key = f"{self.prefix}{under}{PROBE_PREFIX}retention-cap-{secrets.token_hex(8)}"
        try:
            self.store.client.put_object(Bucket=self.store.bucket, Key=key, Body=body, ObjectLockMode="COMPLIANCE",
                                         ObjectLockRetainUntilDate=until, ChecksumAlgorithm="SHA256",
                                         ChecksumSHA256=b64_of_hex(hashlib.sha256(body).hexdigest()))
        except Exception as exc:
            if isinstance(translate(exc, "retention-cap probe"), PermissionDenied):
                return True
            raise translate(exc, "The retention-cap probe") from exc
        return False

    def public_objects(self, keys: list[str]) -> list[tuple[str, str]]:
        client, bucket = self.store.client, self.store.bucket
        found = []
        grants = public_grants(self._read("the bucket ACL", lambda: client.get_bucket_acl(Bucket=bucket)))
        if grants:
            found.append(("", ", ".join(grants)))
        for key in keys:
            acl = self._read(f"the ACL of {key}", lambda: client.get_object_acl(Bucket=bucket, Key=self.prefix + key))
            grants = public_grants(acl)
            if grants:
                found.append((key, ", ".join(grants)))
        return found
