"""Backblaze B2 through its native API (``b2://bucket/prefix``), with File Lock.

Every upload carries the generation's file retention, records the file id B2
returns, and every read is pinned to that file id, so a later upload under the
same name, or a hide marker, changes nothing for restore. B2 has no conditional
create, so genarc checks that a name is unused before it writes it (keys hold a
random run id, so a collision would take a bug, not bad luck). This module
never deletes or hides: there is no code path here that could.
"""

from __future__ import annotations

import dataclasses
import io
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import (GenarcError, IntegrityError, LocalIOError, ObjectExists, ObjectNotFound, PermissionDenied,
                      RepositoryNotFound, StoreError, TransientStoreError)
from .base import Capabilities, ObjectInfo, PutSource, Retention, size_of
from .inspect import KeyRights, LifecycleRule, LockSettings, rules_from_b2


def translate(exc: Exception, what: str) -> GenarcError:
    from b2sdk.v2 import exception as b2e

    name = type(exc).__name__
    if isinstance(exc, (b2e.Unauthorized, b2e.AccessDenied, b2e.InvalidAuthToken)) or name in ("Unauthorized", "AccessDenied"):
        return PermissionDenied(f"{what}: B2 refused it ({exc}); check the application key's capabilities.")
    if isinstance(exc, b2e.NonExistentBucket):
        return RepositoryNotFound(f"{what}: the B2 bucket does not exist; create it with File Lock enabled.")
    if isinstance(exc, (b2e.FileNotPresent, KeyError)):
        return ObjectNotFound(f"{what}: the file is missing from the bucket.")
    if isinstance(exc, (b2e.B2ConnectionError, b2e.B2RequestTimeout, b2e.ServiceError, b2e.TooManyRequests,
                        b2e.ConnectionReset, b2e.TruncatedOutput)):
        return TransientStoreError(f"{what}: B2 is not answering well ({name})")
    if isinstance(exc, b2e.B2Error):
        return StoreError(f"{what}: B2 refused it ({exc}).")
    return StoreError(f"{what}: unexpected B2 error ({name}: {exc}).")


def make_api(key_id: str, application_key: str) -> Any:
    from b2sdk.v2 import B2Api, InMemoryAccountInfo

    api = B2Api(InMemoryAccountInfo())
    try:
        api.authorize_account("production", key_id, application_key)
    except Exception as exc:
        raise translate(exc, "Authorizing with B2") from exc
    return api


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def _from_ms(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, timezone.utc)


def _check_lock(key: str, stored: ObjectInfo, retention: Retention | None) -> None:
    if retention is not None and (stored.retention is None or not stored.retention.covers(retention)):
        raise IntegrityError(f"{key} was stored without its file retention; the bucket does not enforce File Lock.")


class B2Store:
    def __init__(self, api_factory: Callable[[], Any], bucket_name: str, prefix: str = "") -> None:
        # A factory, not an API object: a process forked for parallel restore must not share the
        # parent's HTTP sessions, so each process authorizes its own on first use.
        self._api_factory, self._api, self._api_pid, self._bucket = api_factory, None, 0, None
        self._api_lock = threading.Lock()
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.bucket_name = bucket_name
        self._caps: Capabilities | None = None
        self.bucket  # fail early, with a clear error, if the bucket cannot be opened

    @property
    def api(self) -> Any:
        with self._api_lock:  # upload threads share one authorized API; make it once
            if self._api is None or self._api_pid != os.getpid():
                self._api, self._api_pid, self._bucket = self._api_factory(), os.getpid(), None
            return self._api

    @property
    def bucket(self) -> Any:
        api = self.api
        with self._api_lock:
            if self._bucket is None:
                try:
                    self._bucket = api.get_bucket_by_name(self.bucket_name)
                except Exception as exc:
                    raise translate(exc, f"Opening B2 bucket {self.bucket_name}") from exc
            return self._bucket

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _folder(self, prefix: str) -> str:
        """b2sdk lists folders: list the one that holds ``prefix``, then filter by the full prefix."""
        full = self._key(prefix)
        return full[: full.rfind("/") + 1]

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # translated at the boundary
            raise translate(exc, what) from exc

    @property
    def capabilities(self) -> Capabilities:
        if self._caps is None:
            # None: this key may not read the bucket's lock settings (no readBucketRetentions). Writes then
            # go ahead with their retention and put() checks that each file really carries it.
            lock = getattr(self.bucket, "is_file_lock_enabled", None) is not False
            can_delete = self.inspector().can_delete()
            self._caps = Capabilities(
                object_lock=lock, versioning=True, server_side_copy=True, conditional_put=False,
                lockable=True, ransomware_safe=lock and not can_delete,
                description=f"b2://{self.bucket_name}/{self.prefix} (File Lock {'on' if lock else 'off'})")
        return self._caps

    def inspector(self) -> "B2Inspector":
        return B2Inspector(self)

    @staticmethod
    def _retention_setting(retention: Retention | None) -> Any:
        from b2sdk.v2 import FileRetentionSetting, RetentionMode

        if retention is None:
            return None
        mode = RetentionMode.COMPLIANCE if retention.mode == "compliance" else RetentionMode.GOVERNANCE
        return FileRetentionSetting(mode, _ms(retention.until))

    def _latest(self, full: str) -> Any | None:
        """The newest version of exactly this name (upload or hide marker), or None."""
        versions = self._call(f"Listing {full}", lambda: list(self.bucket.list_file_versions(full, fetch_count=10)))
        exact = [v for v in versions if v.file_name == full]
        return max(exact, key=lambda v: v.upload_timestamp) if exact else None

    def _refuse_existing(self, full: str, key: str) -> None:
        if self._latest(full) is not None:
            raise ObjectExists(f"Uploading {key}: the name already exists in B2; genarc never overwrites a key.")

    def _info(self, key: str, version: Any) -> ObjectInfo:
        retention = None
        setting = getattr(version, "file_retention", None)
        if setting is not None and getattr(setting, "mode", None) is not None and setting.retain_until:
            mode = getattr(setting.mode, "value", str(setting.mode))
            retention = Retention(str(mode).lower(), _from_ms(setting.retain_until))
        hold = getattr(version, "legal_hold", None)
        file_info = getattr(version, "file_info", None) or {}
        return ObjectInfo(key=key, size=int(version.size or 0), sha256=file_info.get("sha256"), version_id=version.id_,
                          retention=retention, legal_hold=bool(hold and getattr(hold, "is_on", lambda: False)()),
                          hidden=version.action == "hide", is_delete_marker=version.action == "hide",
                          modified=_from_ms(getattr(version, "upload_timestamp", None)))

    def put(self, key: str, source: PutSource, *, sha256: str, retention: Retention | None = None) -> ObjectInfo:
        full = self._key(key)
        self._refuse_existing(full, key)
        setting = self._retention_setting(retention)
        info = {"sha256": sha256}
        if isinstance(source, bytes):
            version = self._call(f"Uploading {key}", self.bucket.upload_bytes, source, full, file_info=info,
                                 file_retention=setting)
        else:
            version = self._call(f"Uploading {key}", self.bucket.upload_local_file, str(source), full, file_info=info,
                                 file_retention=setting)
        stored = self.stat(key, version_id=version.id_)
        if stored.size != size_of(source):
            raise IntegrityError(f"Uploading {key}: B2 stored {stored.size} bytes instead of {size_of(source)}.")
        _check_lock(key, stored, retention)
        return stored

    def copy(self, src_key: str, dst_key: str, *, src_version_id: str | None = None, sha256: str,
             retention: Retention | None = None, size: int | None = None) -> ObjectInfo:
        full = self._key(dst_key)
        self._refuse_existing(full, dst_key)
        # Asked even when ``size`` is known: b2sdk copies ``length`` bytes, so a wrong one would make a short copy of
        # that very size, and B2 keeps no checksum of its own for a large file to tell.
        source = self.stat(src_key, version_id=src_version_id)
        # Giving the length lets b2sdk choose a simple or a large-file (part-by-part) copy.
        version = self._call(f"Copying {src_key} to {dst_key}", self.bucket.copy, source.version_id, full,
                             length=source.size, content_type="application/octet-stream",
                             max_part_size=self.api.account_info.get_recommended_part_size(),
                             file_info={"sha256": sha256}, file_retention=self._retention_setting(retention))
        stored = self.stat(dst_key, version_id=version.id_)
        if stored.sha256 and stored.sha256 != sha256:
            raise IntegrityError(f"The copy {dst_key} does not have the SHA-256 recorded for {src_key}.")
        _check_lock(dst_key, stored, retention)
        return stored

    def ensure_lock(self, key: str, *, version_id: str | None, retention: Retention) -> ObjectInfo:
        stored = self.stat(key, version_id=version_id)
        if stored.retention is not None and stored.retention.covers(retention):
            return stored
        request = retention.raised_to(stored.retention)  # never lowers a date or a mode
        self._call(f"Setting the retention of {key}", self.api.update_file_retention, stored.version_id,
                   self._key(key), self._retention_setting(request))
        stored = self.stat(key, version_id=stored.version_id)
        _check_lock(key, stored, retention)
        return stored

    def _version_id(self, key: str, version_id: str | None) -> str:
        if version_id:
            return version_id
        latest = self._latest(self._key(key))
        if latest is None or latest.action == "hide":
            raise ObjectNotFound(f"{key} is missing from the bucket.")
        return str(latest.id_)

    def get(self, key: str, *, version_id: str | None = None, byte_range: tuple[int, int] | None = None) -> bytes:
        file_id = self._version_id(key, version_id)
        if byte_range is not None and byte_range[1] <= byte_range[0]:
            return b""
        kwargs = {"range_": (byte_range[0], byte_range[1] - 1)} if byte_range else {}
        buffer = io.BytesIO()
        downloaded = self._call(f"Reading {key}", self.bucket.download_file_by_id, file_id, **kwargs)
        self._call(f"Reading {key}", downloaded.save, buffer)
        return buffer.getvalue()

    def download(self, key: str, dest: Path, *, version_id: str | None = None) -> None:
        file_id = self._version_id(key, version_id)
        downloaded = self._call(f"Reading {key}", self.bucket.download_file_by_id, file_id)
        try:
            out = open(dest, "wb")
        except OSError as exc:
            raise LocalIOError(f"Cannot write {dest}: {exc.strerror}; free space or set TMPDIR elsewhere.") from exc
        with out:
            self._call(f"Reading {key}", downloaded.save, out)

    def stat(self, key: str, *, version_id: str | None = None) -> ObjectInfo:
        file_id = self._version_id(key, version_id)
        version = self._call(f"Checking {key}", self.api.get_file_info, file_id)
        return self._info(key, version)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        found = []
        listing = self._call(f"Listing {prefix}", lambda: list(self.bucket.ls(self._folder(prefix), latest_only=True,
                                                                               recursive=True)))
        for version, _ in listing:
            if version.file_name.startswith(self._key(prefix)) and version.action == "upload":
                found.append(self._info(version.file_name[len(self.prefix):], version))
        return iter(sorted(found, key=lambda i: i.key))

    def list_versions(self, prefix: str) -> Iterator[ObjectInfo]:
        found = []
        listing = self._call(f"Listing {prefix}", lambda: list(self.bucket.ls(self._folder(prefix), latest_only=False,
                                                                               recursive=True)))
        seen: set[str] = set()
        for version, _ in listing:  # b2sdk lists each name's versions newest first
            if version.file_name.startswith(self._key(prefix)):
                info = self._info(version.file_name[len(self.prefix):], version)
                found.append(dataclasses.replace(info, is_latest=version.file_name not in seen))
                seen.add(version.file_name)
        return iter(found)

    def folders(self, prefix: str) -> Iterator[str]:
        full = self._key(prefix)
        listing = self._call(f"Listing {prefix or 'the repository'}",
                             lambda: list(self.bucket.ls(full, latest_only=True, recursive=False)))
        return iter(sorted({folder[len(full):].rstrip("/") for _, folder in listing if folder}))


class B2Inspector:
    """Reading a B2 bucket's settings and the key's capabilities with the backup key."""

    kind = "b2"

    def __init__(self, store: B2Store) -> None:
        self.store = store
        self.prefix = store.prefix

    def versioning(self) -> bool:
        return True  # B2 keeps every version of a name until it is deleted

    def lock_settings(self) -> LockSettings:
        lock = getattr(self.store.bucket, "is_file_lock_enabled", None)
        if lock is None:
            raise PermissionDenied("this key cannot read the bucket's File Lock setting (readBucketRetentions)")
        return LockSettings(bool(lock))

    def lifecycle_rules(self) -> list[LifecycleRule]:
        return rules_from_b2(getattr(self.store.bucket, "lifecycle_rules", None) or [])

    def key_rights(self) -> KeyRights:
        allowed = self.store.api.account_info.get_allowed() or {}
        return KeyRights(tuple(sorted(allowed.get("capabilities") or [])),
                         allowed.get("bucketName") or allowed.get("bucketId"), allowed.get("namePrefix"))

    def can_delete(self, under: str = "") -> bool:
        return "deleteFiles" in self.key_rights().capabilities

    def probe_conditional_put(self) -> None:
        return None  # B2 has no create-only upload; names are checked unused first

    def trust_conditional_put(self, honoured: bool) -> None:
        pass

    def probe_retention_cap(self, until: datetime, under: str) -> None:
        return None  # no policy condition caps a lock here

    def public_objects(self, keys: list[str]) -> list[tuple[str, str]]:
        kind = getattr(self.store.bucket, "type_", None)  # B2 has no per-file ACL: a bucket is public or not
        return [("", "the bucket type is allPublic")] if kind == "allPublic" else []
