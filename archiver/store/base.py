"""The storage boundary: what the backup client may do, and nothing more.

A :class:`Store` can put a *new* object (with a retention), read it (pinned to a
version id where the store has versions), stat it, list, and copy server-side.
There is deliberately no delete, hide, overwrite or retention-shortening method:
the client cannot destroy data because the code it runs has no way to say so.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path, PosixPath
from typing import Any, Iterator, Protocol, Union, runtime_checkable

MAX_SINGLE_PUT = 5 * 1024**3  # S3's limit for one PutObject

PutSource = Union[bytes, Path]
"""A rewindable upload source: bytes in memory, or a path that can be re-read on retry."""


class SpoolFile(PosixPath):
    """A path to put whose file the caller only deletes afterwards (a packed volume in the spool): a store may
    take the file over instead of copying it (the local store links it in when it is on the same file system).
    To every other store it is a path like any other."""


@dataclass(frozen=True)
class Capabilities:
    object_lock: bool = False  # this bucket locks objects (Object Lock / File Lock is on)
    versioning: bool = False  # overwrites and deletes keep older versions; reads can be pinned to one
    server_side_copy: bool = False
    conditional_put: bool = False  # create-only writes are enforced by the server
    lockable: bool = False  # the kind of store can lock objects (if its bucket is set up for it)
    ransomware_safe: bool = False
    description: str = ""
    lock_unreadable: str = ""  # the permission the key lacks to learn whether the bucket locks ("" when it knows)
    # Why nothing this store holds is locked or expired by a lifecycle: one sentence that doctor, watch, list,
    # run and plan all say the same way ("" for a store that can lock).
    unprotected: str = ""


@dataclass(frozen=True)
class Retention:
    mode: str  # "compliance" | "governance"
    until: datetime

    def covers(self, wanted: "Retention") -> bool:
        """Whether this lock keeps the object at least as ``wanted`` asks (compliance is the stronger mode).

        Servers round retain-until dates; a second of slack is not a shorter promise in practice."""
        return self.until >= wanted.until - timedelta(seconds=1) and self.mode in (wanted.mode, "compliance")

    def raised_to(self, existing: "Retention | None") -> "Retention":
        """The request that gives at least this lock without lowering ``existing``'s date or mode."""
        if existing is None:
            return self
        mode = "compliance" if "compliance" in (self.mode, existing.mode) else self.mode
        return Retention(mode, max(self.until, existing.until))


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    sha256: str | None = None
    version_id: str | None = None
    retention: Retention | None = None
    legal_hold: bool = False
    is_latest: bool = True
    is_delete_marker: bool = False
    hidden: bool = False
    modified: datetime | None = None


@runtime_checkable
class Store(Protocol):
    capabilities: Capabilities

    def put(self, key: str, source: PutSource, *, sha256: str, retention: Retention | None = None) -> ObjectInfo:
        """Create ``key``; fail with ObjectExists if it exists. Never overwrites."""

    def get(self, key: str, *, version_id: str | None = None, byte_range: tuple[int, int] | None = None) -> bytes:
        """Read an object (or ``byte_range`` = (start, end exclusive)), pinned to ``version_id`` when given."""

    def download(self, key: str, dest: Path, *, version_id: str | None = None) -> None:
        """Stream an object into the local file ``dest``, replacing what is there. Callers only read ``dest``:
        a store may make it a name of the object itself (the local store links it, on one file system)."""

    def stat(self, key: str, *, version_id: str | None = None) -> ObjectInfo:
        """Metadata, including the lock mode and date as the server reports them."""

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Current objects under ``prefix``, in key order."""

    def list_versions(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every version (and delete marker or hidden marker) under ``prefix``."""

    def folders(self, prefix: str) -> Iterator[str]:
        """The names one level below ``prefix`` (empty, or ending in "/"): each ``name`` with a key
        ``prefix + name + "/..."``, in order. By a delimiter listing, so the server names the folders without listing
        the objects in them. A folder may hold nothing current (every key hidden, a local directory emptied by the
        lifecycle): callers check what they need inside."""

    def copy(self, src_key: str, dst_key: str, *, src_version_id: str | None = None,
             sha256: str, retention: Retention | None = None, size: int | None = None) -> ObjectInfo:
        """Server-side copy into a new key with its own retention. ``size``: the source's size as recorded, when
        known; a store may trust it to choose how to copy where a copy of any other size is refused afterwards
        (:class:`archiver.store.wrappers.VerifyingStore` compares the copy's size with it)."""

    def ensure_lock(self, key: str, *, version_id: str | None, retention: Retention) -> ObjectInfo:
        """Confirm that this version is locked at least as ``retention`` asks, raising a missing or shorter lock
        (never lowering a date or a mode); IntegrityError when the server does not keep it. For objects that
        arrived by a path that did not check it, such as a retry that found an earlier attempt had landed."""


class Backend(Store, Protocol):
    """A store that talks to a server (not a wrapper): it can also say how its bucket is set up."""

    def inspector(self) -> Any:
        """An :class:`archiver.store.inspect.Inspector` for this backend's bucket."""


def sha256_of(source: PutSource) -> str:
    if isinstance(source, bytes):
        return hashlib.sha256(source).hexdigest()
    digest = hashlib.sha256()
    with open(source, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def size_of(source: PutSource) -> int:
    return len(source) if isinstance(source, bytes) else Path(source).stat().st_size
