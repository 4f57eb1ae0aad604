"""Everything genarc asks of py7zr, in one place: filters, the AES key, entry writing and hashing sinks.

Seven uses of py7zr internals live here and nowhere else. All were checked against
py7zr 1.1.4 (the version the test suite installs; ``pyproject.toml`` allows
``>=1.0,<2``), and all fall back to py7zr's own behaviour when the internal is missing:

- ``py7zr.compressor.calculate_key`` is memoized, and computed faster. The 7z AES
  key derivation hashes 2^19 records (~0.16 s a call in py7zr, ~25 ms here, same
  key) and py7zr repeats it for every archive it opens and twice for every
  archive it writes. The key is a pure function of password, cycles, salt and
  digest, and IVs stay random per archive, so caching it changes no output.
- ``SevenZipFile._writef`` writes an entry without ``writef``'s path check, which
  costs about 18 ``lstat`` calls per file. genarc vets every entry name itself
  (:func:`archiver.pack.entry_name`), so the check adds nothing.
- ``SevenZipFile._make_file_info_from_name`` (the record ``_writef`` keeps for each
  entry) runs the name through ``pathlib`` and reads the clock three times: 7 us
  an entry, some 7 s of the packing processes' time for a million files. genarc's
  writer (:class:`_Writer`) makes the same record in ~1.3 us: a name already in
  the form ``pathlib`` gives is kept as it is, and one reading of the clock
  stamps the entry's three times.
- ``py7zr.py7zr.get_memory_limit`` (the size of a decompression chunk, from the
  memory available) asks psutil before every entry it extracts: about 70 us an
  entry, a second for every 14,000 files restored. Here it asks at most once a
  second, so the chunk size still follows the memory available.
- ``py7zr.compressor.AES`` (pycryptodomex's AES, used for 7zAES's CBC mode) is
  given OpenSSL's AES-CBC through ``cryptography``. pycryptodomex runs CBC a block
  at a time: about 430 MB/s either way on this project's 2-core test machine,
  where OpenSSL encrypts at ~980 MB/s and decrypts (which pipelines) at ~5.6 GB/s,
  for identical bytes. Anything but CBC still goes to pycryptodomex.
- ``py7zr.py7zr.get_sanitized_output_path`` resolves every entry's output path
  (``realpath`` twice: some 14 ``lstat`` calls an entry) even when a writer factory
  receives the bytes and nothing is written under that path. For genarc's own
  factory root (:class:`_FactoryRoot`) only the entry name is vetted
  (``py7zr.helpers._sanitize_member_name``); genarc's target, not py7zr, decides
  where bytes go (:mod:`archiver.target`). Every other extraction (a manifest's,
  into a real folder) keeps py7zr's full check.
- ``py7zr.helpers.calculate_crc32`` (as bound in py7zr's modules) cuts anything over
  1 MiB into copied 1 MiB slices before ``zlib.crc32`` sees them, and py7zr runs it
  twice over every byte it extracts (the folder's CRC and the entry's) and once over
  every byte it writes. ``zlib.crc32`` takes any length and releases the GIL itself,
  so genarc's version hands it the whole buffer: the same CRC, without copying a
  restore's gigabytes twice more.
"""

from __future__ import annotations

import array
import functools
import hashlib
import importlib
import os
import pathlib
import sys
import time
import zlib
from pathlib import Path
from typing import IO, Any, BinaryIO, Callable

import py7zr
import py7zr.helpers
import py7zr.io
import xxhash

CHECKED_VERSION = "1.1.4"


_KEY_CHUNK = 1 << 14  # rounds hashed at a time: a few MB of buffer whatever the password's length


def _key_rounds(password: bytes, cycles: int, salt: bytes) -> bytes:
    """7zAES's key: SHA-256 over 2^cycles records of salt, password and the record's number (8 bytes, little
    endian), exactly as py7zr computes it, with the records built by slices instead of one Python object
    each (~25 ms instead of ~160 ms for 2^19 records)."""
    record = salt + password
    width, rounds = len(record) + 8, 1 << cycles
    chunk = min(rounds, _KEY_CHUNK)
    buf = bytearray(width * chunk)
    for j, byte in enumerate(record):
        buf[j::width] = bytes((byte,)) * chunk
    digest = hashlib.sha256()
    for start in range(0, rounds, chunk):
        counters = array.array("Q", range(start, start + chunk))
        if sys.byteorder != "little":
            counters.byteswap()
        numbers = counters.tobytes()
        for k in range(8):
            buf[len(record) + k::width] = numbers[k::8]
        digest.update(buf)
    return digest.digest()[:32]


def _memoize_key_derivation() -> None:
    compressor = getattr(py7zr, "compressor", None)
    original = getattr(compressor, "calculate_key", None)
    if original is None or hasattr(original, "cache_info"):
        return

    def calculate_key(password: bytes, cycles: int, salt: bytes, digest: str) -> bytes:
        if digest == "sha256" and 0 <= cycles < 0x3F:
            return _key_rounds(password, cycles, salt)
        return original(password, cycles, salt, digest)

    compressor.calculate_key = functools.lru_cache(maxsize=16)(calculate_key)  # type: ignore[union-attr]


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


def _crc32(data: Any, value: int = 0, blocksize: int = 1 << 20) -> int:
    """py7zr's ``calculate_crc32`` without its slices: ``zlib.crc32`` takes any length (``blocksize`` is unused)."""
    return zlib.crc32(data, value) & 0xFFFFFFFF


def _crc_without_copies() -> None:
    original = getattr(py7zr.helpers, "calculate_crc32", None)
    if original is None or original is _crc32:
        return
    for name in ("helpers", "compressor", "archiveinfo", "py7zr"):
        module = getattr(py7zr, name, None)
        if getattr(module, "calculate_crc32", None) is original:
            module.calculate_crc32 = _crc32  # type: ignore[union-attr]


_crc_without_copies()


class _OpenSSLCBC:
    """AES-CBC without padding, with the two methods py7zr calls on a pycryptodomex cipher (each object
    encrypts or decrypts, never both), running in OpenSSL."""

    def __init__(self, key: bytes, iv: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        self._cipher = Cipher(algorithms.AES(key), modes.CBC(iv))
        self._context: Any = None

    def _update(self, data: Any, make: str) -> bytes:
        if len(data) % 16:  # as pycryptodomex does: py7zr pads the last block itself
            raise ValueError("Data must be padded to 16 byte boundary in CBC mode")
        if self._context is None:
            self._context = getattr(self._cipher, make)()
        return self._context.update(data)

    def encrypt(self, data: Any) -> bytes:
        return self._update(data, "encryptor")

    def decrypt(self, data: Any) -> bytes:
        return self._update(data, "decryptor")


class _AESThroughOpenSSL:
    """Stands in for ``Cryptodome.Cipher.AES`` inside py7zr: CBC through OpenSSL, any other mode through the
    original."""

    def __init__(self, original: Any) -> None:
        self._original = original
        self.MODE_CBC = original.MODE_CBC
        self.openssl = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)

    def new(self, key: bytes, mode: int, *args: Any, **kwargs: Any) -> Any:
        if mode == self.MODE_CBC and len(args) == 1 and not kwargs:
            return _OpenSSLCBC(bytes(key), bytes(args[0]))
        return self._original.new(key, mode, *args, **kwargs)


def _aes_through_openssl() -> None:
    compressor = getattr(py7zr, "compressor", None)
    original = getattr(compressor, "AES", None)
    if original is None or getattr(original, "openssl", False) or not hasattr(original, "MODE_CBC"):
        return
    try:
        importlib.import_module("cryptography.hazmat.primitives.ciphers")
    except ImportError:  # pycryptodomex does it, slower
        return
    compressor.AES = _AESThroughOpenSSL(original)  # type: ignore[union-attr]


_aes_through_openssl()


class _FactoryRoot(pathlib.PosixPath):
    """The root py7zr names entries under when genarc's writer factory takes their bytes: nothing is written there."""


def _vet_names_only_for_factories() -> None:
    module = getattr(py7zr, "py7zr", None)
    original = getattr(module, "get_sanitized_output_path", None)
    vet = getattr(py7zr.helpers, "_sanitize_member_name", None)
    if original is None or vet is None or getattr(original, "factory_aware", False):
        return

    def get_sanitized_output_path(fname: str, path: Any) -> Any:
        if isinstance(path, _FactoryRoot):
            return path.joinpath(vet(fname))  # raises Bad7zFile for an absolute name or one with ".."
        return original(fname, path)

    get_sanitized_output_path.factory_aware = True  # type: ignore[attr-defined]
    module.get_sanitized_output_path = get_sanitized_output_path  # type: ignore[union-attr]


_vet_names_only_for_factories()


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
    return _Writer(path, "w", filters=filters(method, level, bool(password)), password=password,
                   header_encryption=bool(password))


class _Writer(py7zr.SevenZipFile):
    """py7zr's archive, each written entry's record made without ``pathlib`` and with one reading of the clock
    (the module docstring); where py7zr no longer asks for the record this way, nothing changes."""

    @staticmethod
    def _make_file_info_from_name(bio: IO[Any], size: int, arcname: str) -> Any:
        if _FILE_ATTRIBUTES is None:
            return py7zr.SevenZipFile._make_file_info_from_name(bio, size, arcname)
        if arcname.startswith("/") or any(part in ("", ".") for part in arcname.split("/")):
            arcname = pathlib.Path(arcname).as_posix()  # not in pathlib's form: as py7zr writes it
        now = py7zr.helpers.ArchiveTimestamp.from_now()
        return {"origin": None, "data": bio, "filename": arcname, "uncompressed": size, "emptystream": False,
                "attributes": _FILE_ATTRIBUTES, "creationtime": now, "lastwritetime": now, "lastaccesstime": now}


try:
    _FILE_ATTRIBUTES: int | None = py7zr.py7zr.MemberType.FILE.attributes()  # py7zr's for an entry from a stream
except AttributeError:
    _FILE_ATTRIBUTES = None


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
        archive.extract(path=_FactoryRoot(os.path.abspath(scratch)), targets=entries, factory=factory)
    return factory.sinks
