"""Stores and the one place they are composed: :func:`open_store`."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import ConfigError
from .base import Capabilities, ObjectInfo, PutSource, Retention, Store, sha256_of, size_of
from .local import LocalStore
from .wrappers import CountingStore, RequestCounts, RetryingStore, StoreWrapper, VerifyingStore

__all__ = [
    "Capabilities", "ObjectInfo", "PutSource", "Retention", "Store", "LocalStore", "CountingStore",
    "RequestCounts", "RetryingStore", "StoreWrapper", "VerifyingStore", "open_store", "sha256_of", "size_of",
]


def backend_for(url: str) -> Store:
    if url.startswith("file://"):
        return LocalStore(Path(url[len("file://"):]))
    if "://" not in url:
        return LocalStore(Path(url))
    scheme = url.split("://", 1)[0]
    raise ConfigError(f"Repository URL {url!r}: the {scheme}:// store is not available in this version of genarc.")


def open_store(
    url: str,
    *,
    counts: RequestCounts | None = None,
    inside_retry: Callable[[Store], Store] | None = None,
    retry_sleep: Callable[[float], None] | None = None,
) -> CountingStore:
    """Backend, then (optional fault injector), retry, verify-after-put, and the request counter outermost.

    ``inside_retry`` lets tests slip a fault injector between the backend and the retry layer.
    """
    store: Store = backend_for(url)
    if inside_retry is not None:
        store = inside_retry(store)
    store = RetryingStore(store, sleep=retry_sleep) if retry_sleep else RetryingStore(store)
    store = VerifyingStore(store)
    return CountingStore(store, counts)
