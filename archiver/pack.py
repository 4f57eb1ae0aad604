"""Packing files into volumes: independent 7z archives written by py7zr.

A volume is planned in the main process (which files, which method) and written
by a worker process, since py7zr holds the GIL for much of its work. Each file
is hashed (xxh3-128) as it is read, and its stat is taken before and after: a
file that changed while it was read is re-read under a fresh entry name, and
stored as last read and flagged in the manifest if it keeps changing (``torn``);
one that only grew is stored as the prefix that was read. Never silently.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import stat
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import BinaryIO, Iterable, Iterator

import py7zr
import xxhash

try:  # zstd, which py7zr itself packs with: the standard library's from 3.14, its backport before
    from compression import zstd as _zstd  # type: ignore[import-not-found]
except ImportError:
    try:
        from backports import zstd as _zstd  # type: ignore[import-not-found,no-redef]
    except ImportError:
        _zstd = None

from .errors import LocalIOError
from . import sevenzip
from .scan import open_below

TORN_RETRIES = 3
PROBE_BYTES = 16 * 1024  # two samples of this: cheap enough for the main process, and plenty to tell noise from data
PROBE_MIN = 512  # smaller files are packed with the job's method (and count as compressible to the tripwire)
INCOMPRESSIBLE_RATIO = 0.95
# Methods that decide per block: zstd stores a block it cannot shrink as it is, at about the speed of COPY, so a
# file the probe calls incompressible is still packed with them (the parts of it that compress, do). Slower
# methods (LZMA2 spends seconds a megabyte on random bytes, deflate a good share) send such files to COPY.
PER_BLOCK_METHODS = ("zstd",)
DENSE_ZSTD_LEVEL = 3
_ODD = re.compile(r"[\x00-\x1f\x7f\\]")  # control characters and backslashes: stock tools mangle them


@dataclass(frozen=True)
class PlannedFile:
    path: str  # absolute path on this machine
    size: int  # of the file, or of the part
    root: str = ""  # the source it was found under: no link below it is followed ("": the file's own folder)
    part: int | None = None  # the index of the part of the file this is, or None: the whole file
    offset: int = 0  # where the part starts in the file
    identity: tuple[int, int] | None = None  # a part's file as scanned (inode, device; as the catalog holds them)


@dataclass
class VolumePlan:
    index: int
    method: str
    level: int
    files: list[PlannedFile] = field(default_factory=list)
    bytes: int = 0
    tag: str = ""  # the run id and a dash: see entry_name
    seed: int = 0  # the repository's content seed (keyed_xxh3)
    dense: bool = False  # holds only files the probe found incompressible (the tripwire counts on it)

    def add(self, planned: PlannedFile) -> None:
        self.files.append(planned)
        self.bytes += planned.size


@dataclass(frozen=True)
class PackedFile:
    path: str
    status: str  # "ok" | "torn" (stored as last read, flagged) | "unstable" | "unreadable" | "vanished"
    entry: str | None = None
    xxh3: str | None = None
    size: int = 0
    mtime_ns: int = 0
    mode: int = 0
    uid: int = 0
    gid: int = 0
    dev: int = 0
    ino: int = 0
    message: str = ""
    ctime_ns: int = 0
    sparse: bool = False  # it has holes: a restore leaves them holes
    part: int | None = None  # the part of the file this is (None: the whole file)
    kxxh3: str | None = None  # the content hash keyed by the repository (see keyed_xxh3)

    @property
    def stored(self) -> bool:
        """Its bytes are in the volume (as read, or as last read when it changed meanwhile)."""
        return self.status in ("ok", "torn")


@dataclass(frozen=True)
class PackedVolume:
    index: int
    path: str
    size: int
    sha256: str
    method: str
    files: list[PackedFile]
    dense: bool = False


def entry_name(path: str, ordinal: int, tag: str = "") -> str:
    """The name inside the volume: the path itself when stock tools can handle it, else a neutral name.
    ``tag`` (the run id and a dash) makes neutral names unique across every volume of every point, so
    volumes extracted into one folder never overwrite one another's."""
    name = path.lstrip("/")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return f"_genarc/odd/{tag}{ordinal:06d}"
    parts = name.split("/")
    if (not name or _ODD.search(name) or any(p in ("", ".", "..") for p in parts)
            or name.startswith("_genarc/")):
        return f"_genarc/odd/{tag}{ordinal:06d}"
    return name


def source_root(path: str, roots: Iterable[str]) -> str:
    """The source ``path`` was found under (the longest that holds it), or its own folder."""
    holding = [r for r in roots if path.startswith(r.rstrip("/") + "/")]
    return max(holding, key=len) if holding else os.path.dirname(path)


_BUFFER = 1 << 16
_SOURCE_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class SourceFolders:
    """Opens source files without following a link anywhere below their source root, keeping a few folders open.

    The scan saw real folders; if one of them has become a link since, a file below it is refused
    rather than read from wherever the link points (:func:`archiver.scan.open_below`). Files are
    opened with ``O_NONBLOCK``, so a file that has become a FIFO cannot stop the run (it changes
    nothing for a regular file). Files come in path order, so the last few folders are kept open.
    """

    def __init__(self, keep: int = 8) -> None:
        self._fds: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._keep = keep

    def __enter__(self) -> "SourceFolders":
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def _folder(self, folder: str, root: str) -> int:
        key = (root, folder)
        if key in self._fds:
            self._fds.move_to_end(key)
            return self._fds[key]
        fd = self._fds[key] = open_below(root or folder, folder)
        while len(self._fds) > self._keep:
            os.close(self._fds.popitem(last=False)[1])
        return fd

    def open(self, path: str, root: str = "") -> tuple[BinaryIO, os.stat_result]:
        file_fd, st = self.open_fd(path, root)
        return os.fdopen(file_fd, "rb", buffering=_BUFFER), st  # a size given: no isatty() probe per file

    def open_fd(self, path: str, root: str = "") -> tuple[int, os.stat_result]:
        """:meth:`open`, as a bare descriptor (the caller closes it): packing reads with ``pread`` and needs no
        file object, whose making costs about as much as reading a small file."""
        folder, name = os.path.split(path)
        file_fd = os.open(name, _SOURCE_FILE, dir_fd=self._folder(folder, root))
        try:
            st = os.fstat(file_fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, "it is no longer a regular file")
        except BaseException:
            os.close(file_fd)
            raise
        return file_fd, st

    def stat(self, path: str, root: str = "") -> os.stat_result | None:
        """What now sits at ``path`` (not followed if a link), or None when nothing can be seen there."""
        folder, name = os.path.split(path)
        try:
            return os.stat(name, dir_fd=self._folder(folder, root), follow_symlinks=False)
        except OSError:
            return None


def open_source(path: str, root: str = "") -> tuple[BinaryIO, os.stat_result]:
    """Open one source file the way :class:`SourceFolders` does."""
    with SourceFolders() as folders:
        return folders.open(path, root)


def keyed_xxh3(seed: int) -> "xxhash.xxh3_128":
    """xxh3-128 keyed by the repository's content seed (derived from its keys). Moved content is matched and
    unchanged parts are kept on both hashes: plain xxh3 collisions are easy to make on purpose for someone who
    writes into the source, but the known ways need the secret the hash mixes in, which the seed changes and
    which such a writer does not know. It is not a cryptographic MAC."""
    return xxhash.xxh3_128(seed=seed)


def xxh3_file(path: str, root: str = "", seed: int | None = None,
              scanned: tuple[int, int, int, int] | None = None) -> tuple[str, str | None] | None:
    """The xxh3-128 of a file and, with ``seed``, its keyed xxh3-128; None when ``scanned`` (size, mtime, inode,
    device as the scan saw them) is given and the file opened is not that one any more."""
    h, k = xxhash.xxh3_128(), keyed_xxh3(seed) if seed is not None else None
    fh, before = open_source(path, root)
    with fh:
        if scanned is not None and (before.st_size, before.st_mtime_ns, *_folded(before)) != scanned:
            return None
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            if k is not None:
                k.update(chunk)
    return h.hexdigest(), k.hexdigest() if k is not None else None


def _probe(sample: bytes) -> int:
    """The compressed size of a sample: zstd level 1 takes ~20 us on 64 KiB of random bytes and ~250 us on text,
    zlib level 1 (the fallback) ~1 ms on either; the probe runs in the main process, once a file."""
    return len(_zstd.compress(sample, 1)) if _zstd is not None else len(zlib.compress(sample, 1))


def looks_incompressible(path: str, size: int, root: str = "", folders: SourceFolders | None = None,
                         offset: int = 0) -> bool:
    """A quick probe: zstd level 1 on up to two 16 KiB samples (start and middle) of ``size`` bytes at ``offset``."""
    if size < PROBE_MIN:
        return False
    try:
        fh, _ = folders.open(path, root) if folders is not None else open_source(path, root)
        with fh:
            fh.seek(offset)
            sample = fh.read(min(PROBE_BYTES, size))
            if size > 4 * PROBE_BYTES:
                fh.seek(offset + size // 2)
                sample += fh.read(PROBE_BYTES)
    except OSError:
        return False
    if not sample:
        return False
    return _probe(sample) >= INCOMPRESSIBLE_RATIO * len(sample)


class _HashingReader(io.BufferedIOBase):
    """Feeds py7zr exactly ``limit`` bytes of an open file from ``offset``, hashing what it reads."""

    def __init__(self, fd: int, limit: int, holes: bool = False, offset: int = 0, seed: int = 0) -> None:
        self.fd, self.remaining, self.limit, self.offset = fd, limit, limit, offset
        self.holes = holes  # a sparse file: its holes are not read, they are zeros
        self.hash = xxhash.xxh3_128()
        self.keyed = keyed_xxh3(seed)
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.read_bytes

    def seek(self, offset: int, whence: int = 0) -> int:
        # py7zr only measures the size (seek to end, then back); reads always go forward from 0.
        if whence == os.SEEK_END:
            return self.limit + offset
        return offset if whence == os.SEEK_SET else self.read_bytes + offset

    def read(self, n: int | None = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        want = self.remaining if n is None or n < 0 else min(n, self.remaining)
        position = self.offset + self.read_bytes
        data = _hole_or_data(self.fd, position, want) if self.holes else os.pread(self.fd, want, position)
        self.hash.update(data)
        self.keyed.update(data)
        self.remaining -= len(data)
        self.read_bytes += len(data)
        return data


def has_holes(st: os.stat_result) -> bool:
    """At least 64 KiB of the file is not allocated on disk: a sparse file (or one a file system compresses,
    which a restore may leave sparse too: its content is the same)."""
    return st.st_size - st.st_blocks * 512 >= 64 * 1024


def _hole_or_data(fd: int, position: int, want: int) -> bytes:
    """Up to ``want`` bytes at ``position``: zeros up to the next data (SEEK_DATA), else data up to the next
    hole (SEEK_HOLE). A file system without them answers as if the whole file were data."""
    try:
        start = os.lseek(fd, position, os.SEEK_DATA)
    except OSError as exc:
        if exc.errno != errno.ENXIO:  # ENXIO: only a hole is left, up to the end of the file
            return os.pread(fd, want, position)
        return bytes(max(0, min(want, os.fstat(fd).st_size - position)))
    if start > position:
        return bytes(min(want, start - position))
    try:
        end = os.lseek(fd, position, os.SEEK_HOLE)
    except OSError:  # the file shrank meanwhile: read what is there (a short read; the stat check names it)
        return os.pread(fd, want, position)
    return os.pread(fd, max(1, min(want, end - position)), position)


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_size, a.st_mtime_ns, a.st_ino, a.st_ctime_ns) == (b.st_size, b.st_mtime_ns, b.st_ino, b.st_ctime_ns)


def _prefix_hash(fd: int, length: int, start: int = 0) -> str:
    """xxh3-128 of ``length`` bytes of an open file from ``start`` (the first ones by default), read again."""
    h = xxhash.xxh3_128()
    offset = 0
    while offset < length:
        chunk = os.pread(fd, min(1 << 20, length - offset), start + offset)
        if not chunk:
            break
        h.update(chunk)
        offset += len(chunk)
    return h.hexdigest() if offset == length else ""


def _folded(st: os.stat_result) -> tuple[int, int]:
    """(inode, device) as the catalog holds them (unsigned 64-bit folded into signed range)."""
    return tuple(v - 2**64 if v >= 2**63 else v for v in (st.st_ino, st.st_dev))  # type: ignore[return-value]


def _grew_only(before: os.stat_result, after: os.stat_result, fd: int, digest: str) -> bool:
    """The file only grew while it was read (a log being appended to): the bytes read are its consistent
    prefix when reading them again gives the same hash."""
    return (after.st_ino == before.st_ino and after.st_dev == before.st_dev and after.st_size > before.st_size
            and _prefix_hash(fd, before.st_size) == digest)


def _attempt_entry(base: str, attempt: int, ordinal: int, used: set[str], tag: str) -> str:
    """The entry name of a read: the first under ``base``, a re-read (the file changed) under a retry name."""
    entry = base if attempt == 1 else f"_genarc/retry/{attempt}/{tag}{ordinal:06d}"
    return f"_genarc/odd/{tag}{ordinal:06d}-{attempt}" if entry in used else entry


def _open_planned(folders: SourceFolders, planned: PlannedFile) -> tuple[int, os.stat_result] | PackedFile:
    """The planned file, open with its stat; or what it became: vanished, or unreadable (named)."""
    try:
        return folders.open_fd(planned.path, planned.root)
    except FileNotFoundError:
        return PackedFile(planned.path, "vanished", message="vanished before it could be read", part=planned.part)
    except OSError as exc:
        return PackedFile(planned.path, "unreadable", message=f"cannot be read: {exc.strerror}", part=planned.part)


def _pack_one(archive: py7zr.SevenZipFile, planned: PlannedFile, ordinal: int, used: set[str],
              folders: SourceFolders, tag: str = "", seed: int = 0) -> PackedFile:
    if planned.part is not None:
        return _pack_part(archive, planned, ordinal, used, folders, tag, seed)
    base = entry_name(planned.path, ordinal, tag)
    last: PackedFile | None = None
    for attempt in range(1, TORN_RETRIES + 1):
        entry = _attempt_entry(base, attempt, ordinal, used, tag)
        opened = _open_planned(folders, planned)
        if isinstance(opened, PackedFile):
            return opened
        fd, before = opened
        try:
            reader = _HashingReader(fd, before.st_size, holes=has_holes(before), seed=seed)
            try:
                sevenzip.write_entry(archive, reader, entry)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise
                return PackedFile(planned.path, "unreadable", message=f"read failed: {exc.strerror}")
            used.add(entry)
            after = os.fstat(fd)
            now = folders.stat(planned.path, planned.root)
            digest = reader.hash.hexdigest()
            whole = reader.read_bytes == before.st_size
            if whole and ((_same(before, after) and now is not None and _same(before, now))
                          or (now is not None and now.st_ino == before.st_ino and _grew_only(before, after, fd, digest))):
                # Unchanged; or grown only: stored as the prefix that was read, with the stat it had then,
                # so the next run sees the growth and stores it.
                return PackedFile(planned.path, "ok", entry, digest, before.st_size, before.st_mtime_ns,
                                  stat.S_IMODE(before.st_mode), before.st_uid, before.st_gid, before.st_dev,
                                  before.st_ino, ctime_ns=before.st_ctime_ns, sparse=has_holes(before),
                                  kxxh3=reader.keyed.hexdigest())
            if whole:
                last = PackedFile(planned.path, "torn", entry, digest, before.st_size, before.st_mtime_ns,
                                  stat.S_IMODE(before.st_mode), before.st_uid, before.st_gid, before.st_dev,
                                  before.st_ino, message=f"kept changing while being read ({TORN_RETRIES} attempts)",
                                  ctime_ns=before.st_ctime_ns, sparse=has_holes(before), kxxh3=reader.keyed.hexdigest())
        finally:
            os.close(fd)
    # Stored as last read, and flagged: a file that never holds still is never absent from every point.
    # The stat kept is the one before that read, so the next run reads it again.
    return last or PackedFile(planned.path, "unstable",
                              message=f"kept changing size while being read ({TORN_RETRIES} attempts)")


def _pack_part(archive: py7zr.SevenZipFile, planned: PlannedFile, ordinal: int, used: set[str],
               folders: SourceFolders, tag: str = "", seed: int = 0) -> PackedFile:
    """One part of a large file: ``planned.size`` bytes at ``planned.offset``, read while the file holds still
    (else read again, and flagged ``torn`` if it never does). The stat kept is the file's before the read."""
    name, suffix = entry_name(planned.path, ordinal, tag), f".genarc-part{planned.part:06d}"
    if len(os.fsencode(name.rsplit("/", 1)[-1] + suffix)) > 255:  # too long a name for a file system to extract it
        name = f"_genarc/odd/{tag}{ordinal:06d}"
    base = name + suffix
    last: PackedFile | None = None
    for attempt in range(1, TORN_RETRIES + 1):
        entry = _attempt_entry(base, attempt, ordinal, used, tag)
        opened = _open_planned(folders, planned)
        if isinstance(opened, PackedFile):
            return opened
        fd, before = opened
        try:
            if planned.identity is not None and _folded(before) != planned.identity:
                # Another file is at the path now: its bytes must not be stored as parts of the one scanned.
                return PackedFile(planned.path, "unstable", message="was replaced since it was scanned",
                                  part=planned.part)
            if before.st_size < planned.offset + planned.size:
                return PackedFile(planned.path, "unstable", message="shrank while it was being read", part=planned.part)
            reader = _HashingReader(fd, planned.size, holes=has_holes(before), offset=planned.offset, seed=seed)
            try:
                sevenzip.write_entry(archive, reader, entry)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise
                return PackedFile(planned.path, "unreadable", message=f"read failed: {exc.strerror}", part=planned.part)
            used.add(entry)
            after = os.fstat(fd)
            # Only grown (a log being appended to): the part is good when its range reads the same again.
            grown = (not _same(before, after) and _folded(after) == _folded(before)
                     and after.st_size >= planned.offset + planned.size
                     and _prefix_hash(fd, planned.size, planned.offset) == reader.hash.hexdigest())
        finally:
            os.close(fd)
        if reader.read_bytes != planned.size:
            return PackedFile(planned.path, "unstable", message="shrank while it was being read", part=planned.part)
        status = "ok" if _same(before, after) or grown else "torn"
        last = PackedFile(planned.path, status, entry, reader.hash.hexdigest(), planned.size, before.st_mtime_ns,
                          stat.S_IMODE(before.st_mode), before.st_uid, before.st_gid, before.st_dev, before.st_ino,
                          message="" if status == "ok" else f"kept changing while being read ({TORN_RETRIES} attempts)",
                          ctime_ns=before.st_ctime_ns, sparse=has_holes(before), part=planned.part,
                          kxxh3=reader.keyed.hexdigest())
        if status == "ok":
            return last
    assert last is not None
    return last


def write_volume(plan: VolumePlan, out_path: str, password: str | None) -> PackedVolume:
    """Worker entry point: write one volume to ``out_path`` and describe it."""
    results: list[PackedFile] = []
    used: set[str] = set()
    try:
        with sevenzip.open_for_writing(out_path, plan.method, plan.level, password) as archive, SourceFolders() as folders:
            for ordinal, planned in enumerate(plan.files):
                results.append(_pack_one(archive, planned, plan.index * 1_000_000 + ordinal, used, folders, plan.tag,
                                         plan.seed))
        digest = hashlib.sha256()
        with open(out_path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise LocalIOError(
                f"The local disk is full while writing a volume in {os.path.dirname(out_path)}; free space "
                "(or point TMPDIR elsewhere) and rerun."
            ) from None
        raise
    return PackedVolume(plan.index, out_path, os.path.getsize(out_path), digest.hexdigest(), plan.method, results,
                        plan.dense)


def plan_volumes(files: Iterable[PlannedFile], *, method: str, level: int, volume_size: int, max_files: int,
                 first_index: int = 1, tag: str = "", seed: int = 0) -> Iterator[VolumePlan]:
    """Group files into volumes of two streams: files the probe finds incompressible (``dense``), and the rest.

    Both streams are packed with ``method`` when it decides per block (zstd); otherwise the dense stream
    is packed with COPY. Keeping the streams apart tells the tripwire which content is incompressible.
    Each stream fills a volume up to ``volume_size`` bytes or ``max_files`` files; a file larger than the
    volume size gets a volume of its own.
    """
    index = first_index
    open_plans: dict[bool, VolumePlan] = {}
    # zstd's higher levels spend many times longer on random bytes for nothing: the dense stream stays low.
    dense_method, dense_level = (method, min(level, DENSE_ZSTD_LEVEL)) if method in PER_BLOCK_METHODS else ("copy", 0)
    with SourceFolders() as folders:
        for planned in files:
            dense = method != "copy" and looks_incompressible(planned.path, planned.size, planned.root, folders,
                                                              planned.offset)
            current = open_plans.get(dense)
            if current is not None and (current.bytes + planned.size > volume_size or len(current.files) >= max_files):
                yield current
                current = None
            if current is None:
                current = (VolumePlan(index, dense_method, dense_level, tag=tag, seed=seed, dense=True) if dense
                           else VolumePlan(index, method, level, tag=tag, seed=seed))
                index += 1
                open_plans[dense] = current
            current.add(planned)
            if current.bytes >= volume_size:
                yield current
                del open_plans[dense]
        for leftover in sorted(open_plans.values(), key=lambda p: p.index):
            if leftover.files:
                yield leftover
