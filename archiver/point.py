"""Writing one restore point: the objects it stores, the lock they carry, and the commit.

Every writer of a restore point goes through :class:`PointWriter`: a backup run (full
or incremental), a synthetic full (which also copies volumes server-side) and a
long-term copy. The writer stores volumes with the point's lock, records each one as a
:class:`StoredObject`, spools the manifest entries, and commits last by uploading the
manifest (docs/design.md, "Write ordering").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from .catalog import path_name
from .clock import format_time
from .config import Config
from .errors import IntegrityError
from .generation import GenerationRef, RetentionPolicy, lock_until
from .layout import is_generation_volume, manifest_key, volume_generation_prefix, volume_key
from .manifest import ManifestWriter, build_header, entry_of
from .repository import Repository, effective_lock_mode
from .store import ObjectInfo, Retention, sha256_of


@dataclass(frozen=True)
class StoredObject:
    """One object a restore point needs, as its manifest records it."""

    key: str
    size: int
    sha256: str
    version_id: str | None
    method: str | None  # None: not recorded (a catalog from before methods were)
    content_bytes: int | None = None  # bytes of file content inside (a synthetic full's copy threshold uses it)
    copied_from: str | None = None  # the object a server-side copy was made from
    dense: bool = False  # it holds only content the packer's probe found incompressible
    shared: bool = False  # an earlier point of the generation stored it; this point refers to it, uploads nothing

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "size": self.size, "sha256": self.sha256,
                               "version_id": self.version_id, "method": self.method}
        if self.content_bytes is not None:
            out["content_bytes"] = self.content_bytes
        if self.copied_from is not None:
            out["copied_from"] = self.copied_from
        if self.dense:
            out["dense"] = True
        if self.shared:
            out["shared"] = True
        return out


@dataclass(frozen=True)
class LockPlan:
    """The lock every object of a point carries: one mode and one retain-until date per generation."""

    mode: str  # "none" | "compliance" | "governance"
    until: datetime

    @property
    def retention(self) -> Retention | None:
        return Retention(self.mode, self.until) if self.mode != "none" else None


def lock_plan(repo: Repository, config: Config, generation_start: datetime, policy: RetentionPolicy) -> LockPlan:
    """The lock for a generation started at ``generation_start`` under ``policy``, on this repository's store."""
    mode = effective_lock_mode(config.lock_mode, repo.store.capabilities, config.repository_url)
    return LockPlan(mode, lock_until(generation_start, policy))


@dataclass(frozen=True)
class CommittedPoint:
    key: str
    sha256: str
    version_id: str | None
    size: int


class PointWriter:
    """Collects the objects and entries of one restore point, then commits it with its manifest."""

    def __init__(self, repo: Repository, job: str, generation: GenerationRef, point_seq: int, run_id: str,
                 lock: LockPlan, spool: Path, *, full: bool) -> None:
        self.repo, self.job, self.generation, self.point_seq = repo, job, generation, point_seq
        self.run_id, self.lock, self.full = run_id, lock, full
        self.objects: list[StoredObject] = []
        self.records: list[dict[str, Any]] = []  # the objects as the manifest lists them, kept in step
        self._index: dict[str, int] = {}
        self._manifest = ManifestWriter(spool)

    # -- objects ---------------------------------------------------------------------------------
    @property
    def volume_prefix(self) -> str:
        """The key prefix of every volume of this point's generation."""
        return volume_generation_prefix(self.job, self.generation.seq, self.generation.start)

    def volume_key(self, index: int) -> str:
        return volume_key(self.job, self.generation.seq, self.generation.start, self.point_seq, self.run_id, index)

    def add_object(self, obj: StoredObject) -> StoredObject:
        """Record an object of this point. Rows naming the object a copy was made from refer to the copy."""
        self._index[obj.key] = len(self.objects)
        if obj.copied_from is not None:
            self._index[obj.copied_from] = len(self.objects)
        self.objects.append(obj)
        self.records.append(obj.record())
        return obj

    def holds(self, key: str) -> bool:
        return key in self._index

    def refer(self, record: Mapping[str, Any]) -> StoredObject:
        """List an object an earlier point of this generation stored (as its manifest recorded it), so this
        point's entries can refer to content it holds: a moved, renamed or copied file. Nothing is uploaded."""
        if not is_generation_volume(record["key"], self.job, self.generation.seq, self.generation.start):
            raise IntegrityError(f"internal: {record['key']} is not a volume of this point's generation")
        return self.add_object(StoredObject(record["key"], record["size"], record["sha256"], record.get("version_id"),
                                            record.get("method"), record.get("content_bytes"),
                                            dense=record.get("dense") is True, shared=True))

    def put_volume(self, key: str, path: Path, sha256: str, *, method: str, content_bytes: int,
                   dense: bool = False) -> StoredObject:
        """Upload a packed volume under ``key`` with the point's lock, and record it."""
        info = self.send_volume(key, path, sha256)
        return self.record_volume(key, info, sha256, method=method, content_bytes=content_bytes, dense=dense)

    def send_volume(self, key: str, path: Path, sha256: str) -> ObjectInfo:
        """Upload a packed volume under ``key`` with the point's lock; safe in an upload thread (it records
        nothing: :meth:`record_volume` does, in the thread that owns the writer)."""
        return self.repo.store.put(key, path, sha256=sha256, retention=self.lock.retention)

    def record_volume(self, key: str, info: ObjectInfo, sha256: str, *, method: str, content_bytes: int,
                      dense: bool = False) -> StoredObject:
        return self.add_object(StoredObject(key, info.size, sha256, info.version_id, method, content_bytes,
                                            dense=dense))

    def copy_volume(self, src_key: str, src_version_id: str | None, sha256: str, key: str, *,
                    content_bytes: int | None = None, packing: tuple[str, bool] | None = None) -> StoredObject:
        """Copy ``src_key`` server-side to ``key`` with the point's lock (the copy's SHA-256 must match).
        ``packing``: how the source was packed and whether it is dense, which a copy keeps (unknown: recorded
        as ``copy``, which the tripwire reads as incompressible)."""
        info = self.send_copy(src_key, src_version_id, sha256, key)
        return self.record_copy(src_key, info, sha256, key, content_bytes=content_bytes, packing=packing)

    def send_copy(self, src_key: str, src_version_id: str | None, sha256: str, key: str, *,
                  size: int | None = None) -> ObjectInfo:
        """The server-side copy of :meth:`copy_volume`, and nothing else: safe in an upload thread. ``size``: the
        source's recorded size, which the copy must have."""
        return self.repo.store.copy(src_key, key, src_version_id=src_version_id, sha256=sha256,
                                    retention=self.lock.retention, size=size)

    def record_copy(self, src_key: str, info: ObjectInfo, sha256: str, key: str, *, content_bytes: int | None = None,
                    packing: tuple[str, bool] | None = None) -> StoredObject:
        """Record a copy :meth:`send_copy` made, in the thread that owns the writer."""
        method, dense = packing or ("copy", False)
        return self.add_object(StoredObject(key, info.size, sha256, info.version_id, method, content_bytes,
                                            copied_from=src_key, dense=dense))

    def reupload_volume(self, src_key: str, src_version_id: str | None, sha256: str, key: str,
                        workdir: Path) -> StoredObject:
        """Where the store cannot copy: download ``src_key``, check it, and upload it again under ``key``."""
        local = workdir / "volume.7z"
        try:
            self.repo.store.download(src_key, local, version_id=src_version_id)
            if sha256_of(local) != sha256:
                raise IntegrityError(f"Volume {src_key} does not match its recorded SHA-256; it was not copied.")
            info = self.repo.store.put(key, local, sha256=sha256, retention=self.lock.retention)
        finally:
            local.unlink(missing_ok=True)
        return self.add_object(StoredObject(key, info.size, sha256, info.version_id, "copy", copied_from=src_key))

    # -- entries ---------------------------------------------------------------------------------
    def add_row(self, row: Mapping[str, Any], op: str, parts: list[Mapping[str, Any]] | None = None) -> dict[str, Any]:
        """List one tree row (with its parts, for a file stored in parts); content is referred to by its object
        index. Returns the entry."""
        entry = entry_of(row, path_name(row["path"]), op, self._index, parts or [])
        if self.full and "obj" not in entry and "parts" not in entry and row["type"] == "file" and row["size"]:
            raise IntegrityError(f"internal: a full lists {entry['path']!r} without a volume of its own generation")
        self._manifest.add(entry)
        return entry

    def add_removal(self, path: bytes) -> None:
        self._manifest.add({"op": "remove", "path": path_name(path)})

    @property
    def entries(self) -> int:
        return self._manifest.count

    # -- the commit ------------------------------------------------------------------------------
    def commit(self, *, kind: str, reason: str, point_time: datetime, policy: RetentionPolicy, job_config: dict,
               tree: dict, parent: dict | None = None, previous_generation_tip: dict | None = None, warnings: int = 0,
               **extra: Any) -> CommittedPoint:
        """Write the manifest and upload it, last: this upload is the commit."""
        header = build_header(
            job=self.job, repository=self.repo.id, kind=kind, reason=reason, generation_seq=self.generation.seq,
            generation_start=format_time(self.generation.start), point_seq=self.point_seq,
            point_time=format_time(point_time), run_id=self.run_id, parent=parent,
            previous_generation_tip=previous_generation_tip, lock_mode=self.lock.mode,
            lock_until=format_time(self.lock.until), policy=policy, job_config=job_config,
            objects=[o.record() for o in self.objects], tree=tree, warnings=warnings, **extra)
        packed = self._manifest.finish(header, self.repo.keys)
        key = manifest_key(self.job, self.generation.seq, self.generation.start, self.point_seq, point_time,
                           self.run_id)
        digest = sha256_of(packed)
        info = self.repo.store.put(key, packed, sha256=digest, retention=self.lock.retention)
        packed.unlink(missing_ok=True)
        return CommittedPoint(key, digest, info.version_id, info.size)
