"""Stores and the one place they are composed: :func:`open_store`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, cast

from ..errors import ConfigError
from .base import (MAX_SINGLE_PUT, Backend, Capabilities, ObjectInfo, PutSource, Retention, SpoolFile, Store,
                   sha256_of, size_of)
from .inspect import Inspector, KeyRights, LifecycleRule, LockSettings
from .local import LocalStore
from .wrappers import CountingStore, RequestCounts, RetryingStore, StoreWrapper, VerifyingStore, backend_of

__all__ = [
    "MAX_SINGLE_PUT", "Capabilities", "ObjectInfo", "PutSource", "Retention", "Store", "LocalStore", "CountingStore",
    "RequestCounts", "RetryingStore", "SpoolFile", "StoreOptions", "StoreWrapper", "VerifyingStore", "open_store", "sha256_of",
    "size_of", "backend_of", "Inspector", "KeyRights", "LifecycleRule", "LockSettings", "inspector_for",
]


def inspector_for(store: Store) -> Inspector:
    """The inspector of the backend under every wrapper: what the bucket around the objects is set up to do."""
    backend = cast(Backend, backend_of(store))
    return cast(Inspector, backend.inspector())


@dataclass(frozen=True)
class StoreOptions:
    """How to reach a remote store; credentials come from the usual places (see docs)."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    # False where the backup key must not hold s3:PutObjectRetention (a server that wraps dates past 2106 or
    # ignores the retention cap): genarc then never sets a lock after upload, and uploads in one PUT.
    retention_updates: bool = True


def split_bucket_url(url: str) -> tuple[str, str]:
    rest = url.split("://", 1)[1]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ConfigError(f"Repository URL {url!r} names no bucket; write it as s3://bucket/prefix or b2://bucket/prefix.")
    return bucket, prefix.strip("/")


def backend_for(url: str, options: StoreOptions | None = None, env: Mapping[str, str] | None = None,
                counts: RequestCounts | None = None) -> Store:
    options = options or StoreOptions()
    env = os.environ if env is None else env
    if url.startswith("file://"):
        return LocalStore(Path(url[len("file://"):]))
    if "://" not in url:
        return LocalStore(Path(url))
    scheme = url.split("://", 1)[0]
    if scheme == "s3":
        from .s3 import S3Store, make_client

        bucket, prefix = split_bucket_url(url)
        return S3Store(lambda: make_client(options.endpoint_url, options.region, options.profile), bucket, prefix,
                       counts=counts, retention_updates=options.retention_updates)
    if scheme == "b2":
        from .b2 import B2Store, make_api

        bucket, prefix = split_bucket_url(url)
        key_id, key = env.get("B2_APPLICATION_KEY_ID"), env.get("B2_APPLICATION_KEY")
        if not key_id or not key:
            raise ConfigError("A b2:// repository needs B2_APPLICATION_KEY_ID and B2_APPLICATION_KEY in the environment.")
        return B2Store(lambda: make_api(key_id, key), bucket, prefix)
    raise ConfigError(f"Repository URL {url!r}: genarc knows file://, s3:// and b2:// repositories, not {scheme}://.")


def open_store(
    url: str,
    *,
    options: StoreOptions | None = None,
    backend: Store | None = None,
    counts: RequestCounts | None = None,
    inside_retry: Callable[[Store], Store] | None = None,
    retry_sleep: Callable[[float], None] | None = None,
) -> CountingStore:
    """Backend, then (optional fault injector), retry, verify-after-put, and the request counter outermost.

    ``backend`` replaces the backend built from ``url`` (a store on a test server, say);
    ``inside_retry`` lets tests slip a fault injector between the backend and the retry layer.
    """
    counts = counts or RequestCounts()
    store: Store = backend if backend is not None else backend_for(url, options, counts=counts)
    if inside_retry is not None:
        store = inside_retry(store)
    store = RetryingStore(store, sleep=retry_sleep) if retry_sleep else RetryingStore(store)
    store = VerifyingStore(store)
    return CountingStore(store, counts)
