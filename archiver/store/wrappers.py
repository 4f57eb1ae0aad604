"""Cross-cutting behaviour as Stores wrapping Stores: retry, verify-after-put, counting."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ..errors import IntegrityError, ObjectExists, StoreError
from .base import Capabilities, ObjectInfo, PutSource, Retention, Store, size_of


class StoreWrapper:
    """Passes every call to the wrapped store; subclasses override what they change."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    def put(self, key: str, source: PutSource, *, sha256: str, retention: Retention | None = None) -> ObjectInfo:
        return self.inner.put(key, source, sha256=sha256, retention=retention)

    def get(self, key: str, *, version_id: str | None = None, byte_range: tuple[int, int] | None = None) -> bytes:
        return self.inner.get(key, version_id=version_id, byte_range=byte_range)

    def download(self, key: str, dest: Path, *, version_id: str | None = None) -> None:
        self.inner.download(key, dest, version_id=version_id)

    def stat(self, key: str, *, version_id: str | None = None) -> ObjectInfo:
        return self.inner.stat(key, version_id=version_id)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def list_versions(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.inner.list_versions(prefix)

    def folders(self, prefix: str) -> Iterator[str]:
        return self.inner.folders(prefix)

    def copy(self, src_key: str, dst_key: str, *, src_version_id: str | None = None,
             sha256: str, retention: Retention | None = None, size: int | None = None) -> ObjectInfo:
        return self.inner.copy(src_key, dst_key, src_version_id=src_version_id, sha256=sha256, retention=retention,
                               size=size)

    def ensure_lock(self, key: str, *, version_id: str | None, retention: Retention) -> ObjectInfo:
        return self.inner.ensure_lock(key, version_id=version_id, retention=retention)


def backend_of(store: Store) -> Store:
    """The backend under every wrapper layer (for the few places that need the server itself)."""
    while isinstance(store, StoreWrapper):
        store = store.inner
    return store


@dataclass
class RequestCounts:
    """What the client asked of the store. ``deletes`` exists to be reported as 0: no code path increments it."""

    counts: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, amount: int = 1) -> None:
        with self.lock:
            self.counts[name] += amount

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            keys = ("puts", "copies", "gets", "stats", "lists", "deletes", "http_requests", "bytes_put", "bytes_got",
                    "bytes_copied")
            return {k: int(self.counts.get(k, 0)) for k in keys}


class CountingStore(StoreWrapper):
    def __init__(self, inner: Store, counts: RequestCounts | None = None) -> None:
        super().__init__(inner)
        self.counts = counts or RequestCounts()

    def put(self, key, source, *, sha256, retention=None):
        self.counts.add("puts")
        info = self.inner.put(key, source, sha256=sha256, retention=retention)
        self.counts.add("bytes_put", size_of(source))
        return info

    def get(self, key, *, version_id=None, byte_range=None):
        self.counts.add("gets")
        data = self.inner.get(key, version_id=version_id, byte_range=byte_range)
        self.counts.add("bytes_got", len(data))
        return data

    def download(self, key, dest, *, version_id=None):
        self.counts.add("gets")
        self.inner.download(key, dest, version_id=version_id)
        self.counts.add("bytes_got", Path(dest).stat().st_size)

    def stat(self, key, *, version_id=None):
        self.counts.add("stats")
        return self.inner.stat(key, version_id=version_id)

    def list(self, prefix):
        self.counts.add("lists")
        return self.inner.list(prefix)

    def list_versions(self, prefix):
        self.counts.add("lists")
        return self.inner.list_versions(prefix)

    def folders(self, prefix):
        self.counts.add("lists")
        return self.inner.folders(prefix)

    def ensure_lock(self, key, *, version_id, retention):
        self.counts.add("stats")
        return self.inner.ensure_lock(key, version_id=version_id, retention=retention)

    def copy(self, src_key, dst_key, *, src_version_id=None, sha256, retention=None, size=None):
        self.counts.add("copies")
        info = self.inner.copy(src_key, dst_key, src_version_id=src_version_id, sha256=sha256, retention=retention,
                               size=size)
        self.counts.add("bytes_copied", info.size)
        return info


class VerifyingStore(StoreWrapper):
    """After every put or copy: the size, and the SHA-256 where the store reports one, must match."""

    def _check(self, key: str, info: ObjectInfo, size: int | None, sha256: str) -> ObjectInfo:
        if size is not None and info.size != size:
            raise IntegrityError(f"Object {key} was stored with {info.size} bytes instead of {size}; the upload is not trusted.")
        if info.sha256 and info.sha256 != sha256:
            raise IntegrityError(f"Object {key} was stored with a different SHA-256 than was sent; the upload is not trusted.")
        return info

    def put(self, key, source, *, sha256, retention=None):
        info = self.inner.put(key, source, sha256=sha256, retention=retention)
        return self._check(key, info, size_of(source), sha256)

    def copy(self, src_key, dst_key, *, src_version_id=None, sha256, retention=None, size=None):
        info = self.inner.copy(src_key, dst_key, src_version_id=src_version_id, sha256=sha256, retention=retention,
                               size=size)
        return self._check(dst_key, info, size, sha256)


class RetryingStore(StoreWrapper):
    """Retries transient failures with jittered exponential backoff.

    A retry sends the same bytes to the same key. If an earlier attempt did land
    (the reply was lost), the key exists: that counts as success when its size
    (and SHA-256, when reported) match and it carries the lock that was asked
    (a lost reply may have come before the store checked it, so it is confirmed
    here), and as an error otherwise. Nothing is ever renamed or deleted.
    """

    def __init__(self, inner: Store, attempts: int = 6, base_delay: float = 0.2, max_delay: float = 10.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(inner)
        self.attempts, self.base_delay, self.max_delay, self.sleep = attempts, base_delay, max_delay, sleep

    def _call(self, what: str, fn: Callable[[], object]):
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except StoreError as exc:
                if not exc.transient or attempt == self.attempts:
                    if exc.transient:
                        raise StoreError(f"{what} failed {self.attempts} times ({exc.message}); check the store and rerun.") from exc
                    raise
                delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
                self.sleep(delay * (0.5 + random.random() / 2))
        raise AssertionError("unreachable")

    def _landed(self, key: str, size: int | None, sha256: str, retention: Retention | None, exc: ObjectExists,
                attempt_made: list) -> ObjectInfo:
        """An earlier attempt's object, when it is the one this call was making (locked as asked)."""
        if not attempt_made:
            raise exc
        info = self.inner.stat(key)
        if (size is not None and info.size != size) or (info.sha256 and info.sha256 != sha256):
            raise exc
        if retention is not None:
            return self.inner.ensure_lock(key, version_id=info.version_id, retention=retention)
        return info

    def put(self, key, source, *, sha256, retention=None):
        tried: list = []

        def attempt():
            try:
                return self.inner.put(key, source, sha256=sha256, retention=retention)
            except ObjectExists as exc:
                return self._landed(key, size_of(source), sha256, retention, exc, tried)
            finally:
                tried.append(1)

        return self._call(f"Uploading {key}", attempt)

    def get(self, key, *, version_id=None, byte_range=None):
        return self._call(f"Reading {key}", lambda: self.inner.get(key, version_id=version_id, byte_range=byte_range))

    def download(self, key, dest, *, version_id=None):
        return self._call(f"Reading {key}", lambda: self.inner.download(key, dest, version_id=version_id))

    def stat(self, key, *, version_id=None):
        return self._call(f"Checking {key}", lambda: self.inner.stat(key, version_id=version_id))

    def ensure_lock(self, key, *, version_id, retention):
        return self._call(f"Checking the lock of {key}",
                          lambda: self.inner.ensure_lock(key, version_id=version_id, retention=retention))

    def list(self, prefix):
        return iter(self._call(f"Listing {prefix}", lambda: list(self.inner.list(prefix))))

    def list_versions(self, prefix):
        return iter(self._call(f"Listing {prefix}", lambda: list(self.inner.list_versions(prefix))))

    def folders(self, prefix):
        return iter(self._call(f"Listing {prefix or 'the repository'}", lambda: list(self.inner.folders(prefix))))

    def copy(self, src_key, dst_key, *, src_version_id=None, sha256, retention=None, size=None):
        tried: list = []

        def attempt():
            try:
                return self.inner.copy(src_key, dst_key, src_version_id=src_version_id, sha256=sha256, retention=retention,
                                       size=size)
            except ObjectExists as exc:
                return self._landed(dst_key, size, sha256, retention, exc, tried)
            finally:
                tried.append(1)

        return self._call(f"Copying {src_key}", attempt)
