"""Everything genarc asks of py7zr, in one place: filters, the AES key, entry writing and hashing sinks.

Three uses of py7zr internals live here and nowhere else. All were checked against
py7zr 1.1.4 (the version the test suite installs; ``pyproject.toml`` allows
``>=1.0,<2``), and all fall back to py7zr's own behaviour when the internal is missing:

- ``py7zr.compressor.calculate_key`` is memoized. The 7z AES key derivation costs
  2^19 SHA-256 rounds (~0.16 s a call) and py7zr repeats it for every archive it
  opens and twice for every archive it writes. The key is a pure function of
  password, cycles, salt and digest, and IVs stay random per archive, so caching
  it changes no output.
- ``SevenZipFile._writef`` writes an entry without ``writef``'s path check, which
  costs about 18 ``lstat`` calls per file. genarc vets every entry name itself
  (:func:`archiver.pack.entry_name`), so the check adds nothing.
- ``py7zr.py7zr.get_memory_limit`` (the size of a decompression chunk, from the
  memory available) asks psutil before every entry it extracts: about 70 us an
  entry, a second for every 14,000 files restored. Here it asks at most once a
  second, so the chunk size still follows the memory available.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import IO, Any, BinaryIO, Callable

import py7zr
import py7zr.io
import xxhash

CHECKED_VERSION = "1.1.4"


def _memoize_key_derivation() -> None:
    compressor = getattr(py7zr, "compressor", None)
    original = getattr(compressor, "calculate_key", None)
    if original is not None and not hasattr(original, "cache_info"):
        compressor.calculate_key = functools.lru_cache(maxsize=16)(original)  # type: ignore[union-attr]


_memoize_key_derivation()


def _throttle_memory_limit() -> None:
    module = getattr(py7zr, "py7zr", None)
    original = getattr(module, "get_memory_limit", None)
    if original is None or getattr(original, "throttled", False):
        return
    last = [-1.0, 0]  # when it was asked, and its answer

    def get_memory_limit() -> int:
        now = time.monotonic()
        if last[0] < 0 or now - last[0] >= 1.0:
            last[1], last[0] = original(), now
        return last[1]

    get_memory_limit.throttled = True  # type: ignore[attr-defined]
    module.get_memory_limit = get_memory_limit  # type: ignore[union-attr]


_throttle_memory_limit()


def prepare_key(password: str | None) -> None:
    """Derive the 7z AES key now, so worker processes forked afterwards inherit it instead of redoing it."""
    derive = getattr(getattr(py7zr, "compressor", None), "calculate_key", None)
    if password and derive is not None:
        derive(password.encode("utf-16LE"), 19, b"", "sha256")


def filters(method: str, level: int, encrypted: bool) -> list[dict[str, int]]:
    """The py7zr filter chain for a compression method, with AES-256 last when encrypted."""
    base: dict[str, list[dict[str, int]]] = {
        "zstd": [{"id": py7zr.FILTER_ZSTD, "level": level}],
        "deflate": [{"id": py7zr.FILTER_DEFLATE}],
        "lzma2": [{"id": py7zr.FILTER_LZMA2, "preset": level}],
        "copy": [{"id": py7zr.FILTER_COPY}],
    }
    chain = list(base[method])
    if encrypted:
        chain.append({"id": py7zr.FILTER_CRYPTO_AES256_SHA256})
    return chain


def open_for_writing(path: str | Path, method: str, level: int, password: str | None) -> py7zr.SevenZipFile:
    return py7zr.SevenZipFile(path, "w", filters=filters(method, level, bool(password)), password=password,
                              header_encryption=bool(password))


def write_entry(archive: py7zr.SevenZipFile, reader: IO[Any], name: str) -> None:
    """Add one entry whose name genarc has already vetted."""
    write = getattr(archive, "_writef", None) or archive.writef
    write(reader, name)


class EntryTooLarge(Exception):
    """An entry holds more bytes than its manifest records: forged or corrupt. Extraction stops at once."""


class HashSink(py7zr.io.Py7zIO):
    """Receives one extracted entry: hashes it (xxh3-128) and writes it to each of ``outs``.

    py7zr closes the sink as soon as the entry is written; ``on_close`` then runs once, so a
    caller can check and keep (or drop) each file at once instead of holding it open.
    """

    def __init__(self, outs: list[BinaryIO] | None = None,
                 on_close: "Callable[[HashSink], None] | None" = None, limit: int | None = None) -> None:
        self.outs = outs or []
        self.on_close = on_close
        self.limit = limit  # no more bytes than the manifest records: a forged entry cannot fill the disk
        self.hash = xxhash.xxh3_128()
        self.length = 0

    def write(self, s: bytes | bytearray) -> int:
        if self.limit is not None and self.length + len(s) > self.limit:
            raise EntryTooLarge(f"more than the {self.limit} bytes recorded")
        for out in self.outs:
            out.write(s)
        self.hash.update(s)
        self.length += len(s)
        return len(s)

    def read(self, size: int | None = None) -> bytes:
        return b""

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.length

    def flush(self) -> None:
        for out in self.outs:
            out.flush()

    def size(self) -> int:
        return self.length

    def close(self) -> None:
        self.flush()  # the files belong to whoever gave them: they close them once they have checked the hash
        callback, self.on_close = self.on_close, None
        if callback is not None:
            callback(self)

    def matches(self, xxh3: str | None, size: int | None) -> bool:
        return self.hash.hexdigest() == xxh3 and self.length == size


class _Factory(py7zr.io.WriterFactory):
    def __init__(self, root: str, make: Callable[[str], HashSink | None]) -> None:
        self.root, self.make = root.rstrip("/") + "/", make
        self.sinks: dict[str, HashSink] = {}

    def create(self, filename: str) -> py7zr.io.Py7zIO:
        entry = filename[len(self.root):] if filename.startswith(self.root) else filename
        sink = self.make(entry)
        if sink is None:
            return py7zr.io.NullIO()
        self.sinks[entry] = sink
        return sink


def extract_entries(archive_path: Path, password: str | None, entries: list[str], scratch: Path,
                    make: Callable[[str], HashSink | None]) -> dict[str, HashSink]:
    """Stream the named entries of a volume into sinks made by ``make`` (None: skip that entry).

    Nothing is written under ``scratch``: py7zr only needs a root to name entries by. py7zr
    raises many unrelated exception types for damaged data; callers treat any of them as
    "cannot be decoded".
    """
    factory = _Factory(str(scratch), make)
    with py7zr.SevenZipFile(archive_path, "r", password=password) as archive:
        archive.extract(path=scratch, targets=entries, factory=factory)
    return factory.sinks
