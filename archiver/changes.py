"""What a run changes: the scanned tree, and the operation each of its entries gets.

A run scans the sources into a :class:`ScanTable` beside the catalog's tree (the previous
point). Each scanned row carries an :class:`Op`; this module owns every transition of it:

    classify          new or changed content -> PACK; known content -> ADD/CHANGE/META or unchanged;
                      in an incremental, content the generation already stores under another path
                      (a move, a rename, a copy) -> ADD/CHANGE referring to that stored entry
    synthetic full    unchanged content whose volume is not copied -> PACK (repack)
    packing           PACK -> ADD/CHANGE once stored; a file that could not be read keeps its
                      previous row (unchanged) or leaves the point
    the manifest      ADD/CHANGE/META rows and removals are listed; unchanged rows are not

Unchanged rows have no op (SQL NULL). When the point is committed, the scan table
becomes the catalog's tree, its ops cleared (:meth:`archiver.catalog.Catalog.adopt`).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Iterable, Iterator, Mapping

import xxhash

from . import interrupt
from .catalog import INT64, TreeTable, path_key, path_name, storable
from .config import JobConfig
from .errors import IntegrityError
from .pack import PackedFile, SourceFolders, has_holes, keyed_xxh3, open_source, source_root, xxh3_file
from .parts import part_spans, parts_digest
from .scan import Entry, walk

EMPTY_XXH3 = xxhash.xxh3_128(b"").hexdigest()


class Op(str, Enum):
    PACK = "pack"  # content to store in this run
    ADD = "add"  # new entry (content, if any, already stored)
    CHANGE = "change"  # other content or another type than the previous point
    META = "meta"  # same content, other metadata
    SETTLED = "="  # internal to classification: unchanged, decided per file
    UNDECIDED = "?"  # internal to classification: scanned, not yet compared with the previous point


# Rows whose content the previous point already holds (unchanged, or metadata only).
CARRIED = f"(op IS NULL OR op = '{Op.META.value}')"
_META_COLUMNS = ("mtime_ns", "mode", "uid", "gid", "target", "link", "xattrs")
_META_SAME = " AND ".join(f"scan.{c} IS t.{c}" for c in _META_COLUMNS)
_CONTENT = ("xxh3", "obj_key", "obj_version", "obj_sha256", "entry", "torn", "sparse", "parts", "kxxh3")
# The same, for a row of the scan joined as ``s`` (parts are looked up through their file's row).
CARRIED_ROW = f"(s.op IS NULL OR s.op = '{Op.META.value}')"

# The columns a scan fills (the others start NULL): binding fewer values makes the per-file insert cheaper.
SCANNED_COLUMNS = ("path", "type", "size", "mtime_ns", "mode", "uid", "gid", "dev", "ino", "target", "xxh3", "op",
                   "ctime_ns", "xattrs")
_INSERT_SCANNED = (f"INSERT OR REPLACE INTO scan ({','.join(SCANNED_COLUMNS)}) "
                   f"VALUES ({','.join('?' * len(SCANNED_COLUMNS))})")
_UNDECIDED = Op.UNDECIDED.value


def _values_from_entry(entry: Entry) -> list[Any]:
    """A scanned entry's :data:`SCANNED_COLUMNS`, as stored (``storable``): built directly, as it runs once per
    file of every run (``storable`` is asked only for a number out of sqlite's range, or a link's target)."""
    path, kind, size, mtime_ns, mode, uid, gid, dev, ino, target, ctime_ns, _, xattrs = entry
    values = [os.fsencode(path.lstrip("/")), kind, size, mtime_ns, mode, uid, gid, dev, ino, target,
              EMPTY_XXH3 if kind == "file" and size == 0 else None, _UNDECIDED, ctime_ns, xattrs]
    if target is not None:
        values[9] = storable("target", target)
    if not (-INT64 <= mtime_ns < INT64 and -INT64 <= dev < INT64 and -INT64 <= ino < INT64
            and -INT64 <= ctime_ns < INT64):
        values[3], values[7], values[8], values[12] = (storable("mtime_ns", mtime_ns), storable("dev", dev),
                                                      storable("ino", ino), storable("ctime_ns", ctime_ns))
    return values


def scanned(job: JobConfig) -> Iterator[tuple[Any, ...]]:
    """What a walk of ``job``'s sources finds, as :meth:`ScanTable.fill` takes it, in walk order: (path, row
    values, names) for each entry (``names``: a file's link count, else 1), and (level, message) for what the
    walk reports. Plain data, so it can be produced in another process."""
    said: list[tuple[str, str]] = []
    for entry in walk(job, lambda level, message: said.append((level, message))):
        if said:
            yield from said
            said.clear()
        try:
            values = _values_from_entry(entry)
        except (ValueError, OverflowError) as exc:  # one odd entry never stops a run
            yield "warning", f"{entry.path} cannot be recorded ({exc}); it is not in this restore point"
            continue
        if values[3] != entry.mtime_ns:  # mtime_ns, brought into range
            yield "warning", (f"{entry.path} has a modification time outside 1677-2262, which the catalog cannot "
                              "hold; its content is kept, its time is stored as the nearest it can hold")
        yield entry.path, values, entry.nlink if entry.type == "file" else 1
    yield from said


@dataclass(frozen=True)
class Sharing:
    """What an incremental may refer to instead of packing again: content the previous point stores in a
    volume whose key starts with ``prefix`` (its own generation's) and whose object ``known`` recognises."""

    prefix: str
    known: Callable[[str], bool]


def _hash_unchanged(path: str, root: str, scanned: Mapping[str, Any], seed: int, folders: SourceFolders | None = None,
                    spans: list[tuple[int, int]] | None = None) -> tuple[str, str, bool] | None:
    """The xxh3-128 and keyed xxh3-128 of a file (with ``spans``: the hashes of its parts) and whether it has
    holes, when it is still the file the scan saw (size, mtime, ctime, inode and device) and holds still while
    it is read; else None, also when it cannot be read (it is packed, and the packer deals with it). The row
    that refers to the stored content keeps the scan's metadata, so it must be the scanned file's."""
    try:
        fh, before = folders.open(path, root) if folders is not None else open_source(path, root)
    except OSError:
        return None
    try:
        with fh:
            seen = (scanned["size"], scanned["mtime_ns"], scanned["ino"], scanned["dev"], scanned["ctime_ns"])
            if (before.st_size, before.st_mtime_ns, storable("ino", before.st_ino), storable("dev", before.st_dev),
                    before.st_ctime_ns) != seen:
                return None
            digests = _read_digests(fh, spans or [(0, before.st_size)], seed)
            after = os.fstat(fh.fileno())
    except OSError:
        return None
    if digests is None or (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != (before.st_size, before.st_mtime_ns, before.st_ctime_ns):
        return None
    if not spans:
        return digests[0][0], digests[0][1], has_holes(before)
    lengths = [length for _, length in spans]
    return (parts_digest(zip(lengths, (d for d, _ in digests))), parts_digest(zip(lengths, (k for _, k in digests))),
            has_holes(before))


def _part_digests(path: str, root: str, spans: list[tuple[int, int]], seed: int,
                  scanned: tuple[int, int, int, int]) -> list[tuple[str, str]] | None:
    """The xxh3-128 and keyed xxh3-128 of each part of a file, read in one pass; None when it is not the file the
    scan saw (size, mtime, inode, device) or changes while read."""
    fh, before = open_source(path, root)
    with fh:
        if (before.st_size, before.st_mtime_ns, storable("ino", before.st_ino), storable("dev", before.st_dev)) != scanned:
            return None
        digests = _read_digests(fh, spans, seed)
        after = os.fstat(fh.fileno())
    same = (before.st_size, before.st_mtime_ns, before.st_ctime_ns) == (after.st_size, after.st_mtime_ns, after.st_ctime_ns)
    return digests if same and digests is not None else None


def _still_reads(path: str, root: str, parts: list[Any], seed: int) -> bool:
    """Whether a file grown since its parts were read still holds them, read again from the start: then it was
    only appended to, and its parts are a prefix it had (as a whole file's grown-only check)."""
    try:
        fh, _ = open_source(path, root)
        with fh:
            digests = _read_digests(fh, [(0, p["size"]) for p in parts], seed)
    except OSError:
        return False
    return digests is not None and all(d == p["xxh3"] for (d, _), p in zip(digests, parts))


def _read_digests(fh: Any, spans: list[tuple[int, int]], seed: int) -> list[tuple[str, str]] | None:
    """The xxh3-128 and keyed xxh3-128 of each span of an open file, read in order from where it stands; None if
    it ends early."""
    digests = []
    for _, length in spans:
        h, k = xxhash.xxh3_128(), keyed_xxh3(seed)
        left = length
        while left > 0:
            chunk = fh.read(min(1 << 20, left))
            if not chunk:
                return None
            h.update(chunk)
            k.update(chunk)
            left -= len(chunk)
        digests.append((h.hexdigest(), k.hexdigest()))
    return digests


def _meta_differs(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    return any(new[c] != old[c] for c in _META_COLUMNS)


class ScanTable(TreeTable):
    """The tree as scanned by this run, each row with its :class:`Op`."""

    def __init__(self, conn: Any) -> None:
        TreeTable.drop(conn, "scan")
        super().__init__(conn, "scan")
        self.shared_files = self.shared_bytes = 0  # content referred to, not packed again (:meth:`share`)
        self.volume_size = 0  # files larger than this are stored in parts (0: none are; set by classify)
        self.seed = 0  # the repository's content seed (keyed_xxh3; set by classify)
        self._reuse: str | None = None
        self.failed_parts: dict[bytes, str] = {}  # a file some part of which could not be packed: why
        self.torn_parts: set[bytes] = set()  # a file some part of which kept changing while it was read
        self._pending: list[tuple[str, list[Any]]] = []  # scanned rows not yet written (:meth:`fill`)
        self.unrecorded: set[bytes] = set()  # scanned entries whose row could not be written

    def fill(self, found: Iterable[tuple[Any, ...]], report: Callable[[str, str], None],
             meanwhile: Callable[[], None] | None = None) -> None:
        """Record what a scan found (:func:`scanned`; it may come from another process): each entry's row, in
        batches, and which names are one file's (:meth:`link_names`); what the walk reported goes to ``report``.
        ``meanwhile()`` runs once the first item has come: work for this process while another one walks."""
        warn: Callable[[str], None] = lambda message: report("warning", message)
        inodes: dict[tuple[int, int], list[bytes]] = {}  # files with more than one name
        for item in found:
            if meanwhile is not None:
                meanwhile()
                meanwhile = None
            if len(item) == 2:  # (level, message)
                report(*item)
                continue
            interrupt.check()
            path, values, names = item
            self._pending.append((path, values))
            if len(self._pending) >= 1000:
                self.flush(warn)
            if names > 1:
                inodes.setdefault((values[7], values[8]), []).append(values[0])  # (dev, ino), path
        self.flush(warn)
        self.link_names(inodes)

    def flush(self, warn: Callable[[str], None]) -> None:
        """Write the batched rows. Should a batch fail, its rows are written one by one, and one that cannot be
        recorded is named and left out of the point (:attr:`unrecorded`); the others are kept."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        sql = _INSERT_SCANNED
        try:
            self.conn.executemany(sql, [values for _, values in pending])
            return
        except (OverflowError, ValueError, sqlite3.Error):
            pass
        for path, values in pending:
            try:
                self.conn.execute(sql, values)
            except (OverflowError, ValueError, sqlite3.Error) as exc:
                warn(f"{path} cannot be recorded ({exc}); it is not in this restore point")
                self.unrecorded.add(values[0])

    def link_names(self, inodes: Mapping[tuple[int, int], list[bytes]]) -> None:
        """Files seen under several names (same device and inode): every name but the first (bytewise) records
        the first as its ``link``, so a restore makes them hard links again."""
        for names in inodes.values():
            names = [name for name in names if name not in self.unrecorded]
            if len(names) > 1:
                first = min(names)
                for name in names:
                    if name != first:
                        self.conn.execute("UPDATE scan SET link = ? WHERE path = ?", (first, name))

    def totals(self, op: Op | None = None) -> tuple[int, int]:
        where = "WHERE op = ?" if op is not None else ""
        count, size = self.conn.execute(f"SELECT count(*), coalesce(sum(size), 0) FROM scan {where}",
                                        (op.value,) if op is not None else ()).fetchone()
        return int(count), int(size)

    # -- classification ----------------------------------------------------------------------------
    def classify(self, previous: TreeTable | None, warn: Callable[[str], None], roots: tuple[str, ...] = (),
                 sharing: Sharing | None = None, volume_size: int = 0, seed: int = 0,
                 racy_from_ns: int | None = None) -> None:
        """Give each row its op against ``previous`` (None: a full without a baseline, everything is new).

        The common cases are settled in SQL in one pass (an unchanged row is written once, a rerun over an
        unchanged tree rewrites nothing else); only rows that need a decision per file
        (new, changed size, or same size with another mtime, ctime, inode or device) come back to Python.
        A ctime the previous point does not know (a catalog from before it was kept) is not compared.
        With ``sharing`` (an incremental), content to pack that ``previous`` already stores is referred to
        instead (:meth:`share`). Files larger than ``volume_size`` are stored in parts: a changed one stores
        again only the parts whose hash changed, and refers to the others.
        A file whose recorded ctime is at or after ``racy_from_ns`` (shortly before the previous point read it) is
        confirmed by content even when its stat is the same: a write in the same tick of a coarse file-system
        clock, just after it was read, leaves the stat unchanged.
        """
        conn = self.conn
        self.volume_size, self.seed = volume_size, seed
        self._reuse = sharing.prefix if sharing is not None else None  # parts are reused within a generation only
        if previous is None:
            conn.execute("UPDATE scan SET op = CASE WHEN type = 'file' AND size > 0 THEN ? ELSE ? END",
                         (Op.PACK.value, Op.ADD.value))
            self._plan_parts(f"op = '{Op.PACK.value}'")
            return
        # Row by row in path order: UPDATE ... FROM collects every joined row first, a fifth slower at a million.
        conn.execute(f"""
            UPDATE scan SET (xxh3, obj_key, obj_version, obj_sha256, entry, torn, sparse, parts, kxxh3, op) = (
                   SELECT t.xxh3, t.obj_key, t.obj_version, t.obj_sha256, t.entry, t.torn, t.sparse, t.parts, t.kxxh3,
                          CASE WHEN {_META_SAME} THEN NULL ELSE ?1 END
                   FROM {previous.name} AS t WHERE t.path = scan.path)
            WHERE EXISTS (SELECT 1 FROM {previous.name} AS t
                WHERE t.path = scan.path AND t.type = scan.type AND (scan.type != 'file' OR (
                  t.size = scan.size AND t.mtime_ns = scan.mtime_ns AND t.ino = scan.ino AND t.dev = scan.dev
                  AND (t.ctime_ns IS NULL OR (t.ctime_ns = scan.ctime_ns AND (?2 IS NULL OR t.ctime_ns < ?2))))))""",
                     (Op.META.value, racy_from_ns))
        conn.execute(f"INSERT INTO scan_parts SELECT t.* FROM {previous.parts_name} AS t JOIN scan AS s "
                     f"ON s.path = t.path WHERE {CARRIED_ROW} AND s.parts IS NOT NULL")
        for row in self.rows("op = ?", (Op.UNDECIDED.value,)):
            interrupt.check()
            self.put(self._decide(dict(row), previous, warn, roots))
        conn.execute("UPDATE scan SET op = NULL WHERE op = ?", (Op.SETTLED.value,))
        if sharing is not None:
            self.shared_files, self.shared_bytes = self.share(previous, sharing, roots)

    def share(self, previous: TreeTable, sharing: Sharing, roots: tuple[str, ...]) -> tuple[int, int]:
        """Moves, renames and copies: a file to pack whose size and xxh3 equal content ``previous`` stores
        (whole or in parts, not torn) is not packed again; its row refers to the stored entry, or parts (ADD,
        or CHANGE where the path held other content). Only files whose size some stored entry has are read
        for their hash.

        The lookups are joins, so sqlite indexes the previous tree once rather than scanning it per file.
        Returns the files (and bytes) that now refer to stored content.
        """
        conn = self.conn
        stored = (f"SELECT path, size, xxh3, kxxh3, obj_key, obj_version, obj_sha256, entry, parts FROM {previous.name} "
                  "WHERE type = 'file' AND size > 0 AND xxh3 IS NOT NULL AND kxxh3 IS NOT NULL AND torn IS NULL AND "
                  "(parts IS NOT NULL OR "
                  "(obj_key IS NOT NULL AND entry IS NOT NULL AND substr(obj_key, 1, ?) = ?))")
        window = (len(sharing.prefix), sharing.prefix)
        candidates = conn.execute(
            f"SELECT scan.path, scan.size, scan.mtime_ns, scan.ino, scan.dev, scan.ctime_ns FROM scan "
            f"JOIN (SELECT DISTINCT size FROM ({stored})) AS s "
            f"ON s.size = scan.size WHERE scan.op = ? ORDER BY scan.path", (*window, Op.PACK.value)).fetchall()
        if not candidates:
            return 0, 0
        conn.execute("DROP TABLE IF EXISTS temp.share")
        conn.execute("CREATE TEMP TABLE share (path BLOB PRIMARY KEY, size INTEGER, xxh3 TEXT, kxxh3 TEXT, "
                     "sparse INTEGER)")
        with SourceFolders() as folders:
            for candidate in candidates:
                interrupt.check()
                path, size = candidate["path"], candidate["size"]
                absolute = "/" + path_name(path)
                read = _hash_unchanged(absolute, source_root(absolute, roots), candidate, self.seed, folders,
                                       part_spans(size, self.volume_size) if self.volume_size else [])
                if read is not None:
                    conn.execute("INSERT INTO temp.share VALUES (?, ?, ?, ?, ?)",
                                 (path, size, read[0], read[1], 1 if read[2] else None))
        matches = conn.execute(
            f"SELECT c.path, c.size, c.sparse, t.xxh3, t.obj_key, t.obj_version, t.obj_sha256, t.entry, t.path, "
            f"t.parts, EXISTS (SELECT 1 FROM {previous.name} AS p WHERE p.path = c.path), t.kxxh3 FROM temp.share AS c "
            f"JOIN ({stored}) AS t ON t.size = c.size AND t.xxh3 = c.xxh3 AND t.kxxh3 = c.kxxh3 GROUP BY c.path",
            window).fetchall()
        known: dict[str, bool] = {}

        def usable(key: str | None) -> bool:
            return key is not None and key.startswith(sharing.prefix) and known.setdefault(key, sharing.known(key))

        files = size = 0
        for path, length, sparse, digest, key, version, sha256, entry, source, parts, existed, keyed in matches:
            op = (Op.CHANGE if existed else Op.ADD).value
            if parts:
                stored_parts = [dict(p) for p in previous.parts_of(source)]
                if len(stored_parts) != parts or not all(usable(p["obj_key"]) for p in stored_parts):
                    continue
                self.put_parts(path, stored_parts)
                conn.execute("UPDATE scan SET xxh3 = ?, kxxh3 = ?, obj_key = NULL, obj_version = NULL, obj_sha256 = NULL, "
                             "entry = NULL, parts = ?, torn = NULL, sparse = ?, op = ? WHERE path = ?",
                             (digest, keyed, parts, sparse, op, path))
            elif usable(key):
                conn.execute("UPDATE scan SET xxh3 = ?, kxxh3 = ?, obj_key = ?, obj_version = ?, obj_sha256 = ?, "
                             "entry = ?, parts = NULL, torn = NULL, sparse = ?, op = ? WHERE path = ?",
                             (digest, keyed, key, version, sha256, entry, sparse, op, path))
                conn.execute(f"DELETE FROM {self.parts_name} WHERE path = ?", (path,))
            else:
                continue
            files, size = files + 1, size + length
        conn.execute("DROP TABLE temp.share")
        return files, size

    def _plan_parts(self, where: str) -> None:
        """Rows to pack that are larger than a volume get their parts, all still to be packed."""
        if not self.volume_size:
            return
        for row in self.conn.execute(f"SELECT path, size FROM scan WHERE type = 'file' AND size > ? AND ({where})",
                                     (self.volume_size,)).fetchall():
            spans = part_spans(row["size"], self.volume_size)
            count = self.put_parts(row["path"], ({"size": length} for _, length in spans))
            self.conn.execute("UPDATE scan SET parts = ?, obj_key = NULL, obj_version = NULL, obj_sha256 = NULL, "
                              "entry = NULL WHERE path = ?", (count, row["path"]))

    def _decide(self, new: dict[str, Any], previous: TreeTable, warn: Callable[[str], None],
                roots: tuple[str, ...]) -> dict[str, Any]:
        old = previous.get(new["path"])
        spans = part_spans(new["size"], self.volume_size) if new["type"] == "file" and self.volume_size else []
        if spans and old is not None and old["type"] == "file" and old["parts"]:
            return self._decide_parts(new, old, previous, warn, roots, spans)
        if old is None or old["type"] != new["type"]:
            new["op"] = Op.PACK if new["type"] == "file" and new["size"] > 0 else (Op.ADD if old is None else Op.CHANGE)
        elif new["size"] != old["size"]:
            new["op"] = Op.PACK if new["size"] > 0 else Op.CHANGE
        else:
            # Same size, other mtime, ctime or inode: confirm by content before storing it again (a chmod
            # changes the ctime and nothing else: it is metadata, and no content goes up).
            absolute = "/" + path_name(new["path"])
            try:
                # None: another file than the scanned one is there now; it is packed as read.
                read = xxh3_file(absolute, source_root(absolute, roots), self.seed,
                                 (new["size"], new["mtime_ns"], new["ino"], new["dev"])) if new["size"] \
                    else (EMPTY_XXH3, None)
            except OSError as exc:
                warn(f"{absolute} cannot be read ({exc.strerror}); the previous version is kept")
                self.put_parts(new["path"], [dict(p) for p in previous.parts_of(new["path"])])
                return {**dict(old), "ino": None, "op": Op.SETTLED.value}  # unverified: hashed next run
            digest, keyed = read or ("", None)
            # The keyed hash is compared where it is known (content stored before it was kept has none).
            if read is not None and digest == old["xxh3"] and (old["kxxh3"] is None or keyed is None or keyed == old["kxxh3"]):
                new.update({k: old[k] for k in _CONTENT})
                new["op"] = Op.META if _meta_differs(new, old) else Op.SETTLED
            else:
                new["op"] = Op.PACK
        new["op"] = Op(new["op"]).value
        if new["op"] == Op.PACK.value and spans:
            new["parts"] = self.put_parts(new["path"], ({"size": length} for _, length in spans))
            new.update(obj_key=None, obj_version=None, obj_sha256=None, entry=None)
        return new

    def _decide_parts(self, new: dict[str, Any], old: Mapping[str, Any], previous: TreeTable,
                      warn: Callable[[str], None], roots: tuple[str, ...], spans: list[tuple[int, int]]) -> dict[str, Any]:
        """A file stored in parts before, and still larger than a volume: each part is hashed; the parts whose
        size and hash are the same refer to what is stored, the others are packed again."""
        absolute = "/" + path_name(new["path"])
        before = [dict(p) for p in previous.parts_of(new["path"])]
        try:
            digests = _part_digests(absolute, source_root(absolute, roots), spans, self.seed,
                                    (new["size"], new["mtime_ns"], new["ino"], new["dev"]))
        except OSError as exc:
            if new["size"] == old["size"]:
                warn(f"{absolute} cannot be read ({exc.strerror}); the previous version is kept")
                self.put_parts(new["path"], before)
                return {**dict(old), "ino": None, "op": Op.SETTLED.value}  # unverified: hashed next run
            digests = None  # it is packed whole again; the packer names what it cannot read
        lengths = [length for _, length in spans]
        if digests is not None and new["size"] == old["size"] and \
                parts_digest(zip(lengths, (d for d, _ in digests))) == old["xxh3"] and \
                (old["kxxh3"] is None or parts_digest(zip(lengths, (k for _, k in digests))) == old["kxxh3"]):
            new.update({k: old[k] for k in _CONTENT})
            self.put_parts(new["path"], before)
            new["op"] = (Op.META if _meta_differs(new, old) else Op.SETTLED).value
            return new
        parts = []
        for index, (_, length) in enumerate(spans):
            kept = before[index] if index < len(before) else None
            if (digests is not None and kept is not None and kept["size"] == length
                    and (kept["xxh3"], kept["kxxh3"]) == digests[index]
                    and self._reuse is not None and (kept["obj_key"] or "").startswith(self._reuse)):
                parts.append(kept)
            else:
                parts.append({"size": length})
        new.update(obj_key=None, obj_version=None, obj_sha256=None, entry=None, torn=None,
                   parts=self.put_parts(new["path"], parts), op=Op.PACK.value)
        return new

    # -- a synthetic full ----------------------------------------------------------------------------
    _CARRIED_CONTENT = (f"SELECT obj_key, obj_version, obj_sha256, entry, size FROM scan WHERE type = 'file' "
                        f"AND size > 0 AND obj_key IS NOT NULL AND {CARRIED} UNION ALL SELECT p.obj_key, p.obj_version, "
                        f"p.obj_sha256, p.entry, p.size FROM scan_parts AS p JOIN scan AS s ON s.path = p.path "
                        f"WHERE p.obj_key IS NOT NULL AND {CARRIED_ROW}")

    def carried_bytes(self) -> dict[str, int]:
        """Bytes of carried content (whole files and parts) per volume of the previous point (its live bytes):
        an entry several paths share counts once."""
        return {row[0]: int(row[1]) for row in self.conn.execute(
            f"SELECT obj_key, sum(size) FROM (SELECT DISTINCT obj_key, entry, size FROM ({self._CARRIED_CONTENT})) "
            "GROUP BY obj_key")}

    def carried_volumes(self) -> dict[str, tuple[str | None, str]]:
        """Each volume holding carried content: its (version id, SHA-256)."""
        return {row[0]: (row[1], row[2]) for row in self.conn.execute(
            f"SELECT DISTINCT obj_key, obj_version, obj_sha256 FROM ({self._CARRIED_CONTENT})")}

    def repoint(self, moves: Iterable[tuple[str, str, str | None, str]]) -> None:
        """Carried content of each old volume now lives in its copy: (old key, new key, version id, SHA-256). One
        pass over the scan for all of them (a statement for each volume passed over a million rows each time)."""
        self.conn.execute("CREATE TEMP TABLE IF NOT EXISTS moved "
                          "(m_old TEXT PRIMARY KEY, m_new TEXT, m_version TEXT, m_sha256 TEXT)")
        self.conn.execute("DELETE FROM moved")
        self.conn.executemany("INSERT INTO moved VALUES (?, ?, ?, ?)", moves)
        self.conn.execute(f"UPDATE scan SET obj_key = m_new, obj_version = m_version, obj_sha256 = m_sha256 "
                          f"FROM moved WHERE obj_key = m_old AND {CARRIED}")
        # Every part still naming an old volume is carried content, even in a file some other part of which is
        # being repacked already (its row is PACK by then).
        self.conn.execute("UPDATE scan_parts SET obj_key = m_new, obj_version = m_version, obj_sha256 = m_sha256 "
                          "FROM moved WHERE obj_key = m_old")
        self.conn.execute("DELETE FROM moved")

    def repack(self, old_key: str) -> None:
        """Carried content of ``old_key`` is packed again from the source (parts: just the parts it holds)."""
        self.conn.execute(f"UPDATE scan SET op = ? WHERE obj_key = ? AND {CARRIED} AND type = 'file' AND size > 0",
                          (Op.PACK.value, old_key))
        self.conn.execute("UPDATE scan_parts SET obj_key = NULL, obj_version = NULL, obj_sha256 = NULL, entry = NULL "
                          "WHERE obj_key = ?", (old_key,))
        self.conn.execute(f"UPDATE scan SET op = ? WHERE {CARRIED} AND parts IS NOT NULL AND path IN "
                          "(SELECT path FROM scan_parts WHERE obj_key IS NULL)", (Op.PACK.value,))

    # -- packing -------------------------------------------------------------------------------------
    def pack_totals(self) -> tuple[int, int]:
        """Files, and bytes, this run packs: whole files, and only the parts still to pack of files in parts."""
        files, whole = self.conn.execute("SELECT count(*), coalesce(sum(CASE WHEN parts IS NULL THEN size END), 0) "
                                         "FROM scan WHERE op = ?", (Op.PACK.value,)).fetchone()
        parts = self.conn.execute("SELECT coalesce(sum(p.size), 0) FROM scan_parts AS p JOIN scan AS s "
                                  "ON s.path = p.path WHERE s.op = ? AND p.obj_key IS NULL", (Op.PACK.value,)).fetchone()[0]
        return int(files), int(whole) + int(parts)

    def to_pack(self) -> Iterator[Any]:
        """The rows to pack, in path order: their path, size, parts, inode and device."""
        for batch in self.batches("path, size, parts, ino, dev", "op = ?", (Op.PACK.value,)):
            yield from batch

    def planned_parts(self, path: bytes) -> Iterator[tuple[int, int, int]]:
        """(index, offset, size) of each part of ``path`` still to be packed."""
        offset = 0
        for part in self.parts_of(path):
            if part["obj_key"] is None:
                yield part["idx"], offset, part["size"]
            offset += part["size"]

    def stored_part(self, packed: PackedFile, key: str, version_id: str | None, sha256: str) -> None:
        """A part was packed into the volume ``key``; its file's row is settled once every part is (:meth:`settle_parts`)."""
        pkey = path_key(packed.path.lstrip("/"))
        self.conn.execute("UPDATE scan_parts SET xxh3 = ?, kxxh3 = ?, obj_key = ?, obj_version = ?, obj_sha256 = ?, "
                          "entry = ? WHERE path = ? AND idx = ?",
                          (packed.xxh3, packed.kxxh3, key, version_id, sha256, packed.entry, pkey, packed.part))
        if packed.status == "torn":
            self.torn_parts.add(pkey)

    def settle_parts(self, previous: TreeTable | None, roots: tuple[str, ...]) -> Iterator[tuple[str, str, bool]]:
        """Every file packed in parts: stored once all its parts are (its hash is that of its parts; it is flagged
        ``torn`` when a part, or the file between its parts, changed while read), else its previous version is
        kept or it leaves the point. Yields (path, what happened, kept) for each file that is not plainly stored."""
        rows = self.conn.execute("SELECT * FROM scan WHERE op = ? AND parts IS NOT NULL", (Op.PACK.value,)).fetchall()
        with SourceFolders() as folders:
            for row in rows:
                pkey, absolute = row["path"], "/" + path_name(row["path"])
                parts = self.parts_of(pkey)
                old = previous.get(pkey) if previous is not None else None
                missing = self.failed_parts.get(pkey) or (
                    "was not stored" if any(p["obj_key"] is None for p in parts) else None)
                if missing is not None:
                    kept = self.not_stored(PackedFile(absolute, "unreadable"), previous)
                    yield absolute, missing, kept
                    continue
                now = folders.stat(absolute, source_root(absolute, roots))
                moved = now is None or (now.st_size, now.st_mtime_ns, now.st_ino) != (row["size"], row["mtime_ns"], row["ino"]) \
                    or (row["ctime_ns"] is not None and now.st_ctime_ns != row["ctime_ns"])
                if moved and pkey not in self.torn_parts and now is not None and now.st_size >= row["size"] \
                        and storable("ino", now.st_ino) == row["ino"]:
                    moved = not _still_reads(absolute, source_root(absolute, roots), parts, self.seed)  # grown only
                torn = pkey in self.torn_parts or moved
                keyed = parts_digest((p["size"], p["kxxh3"]) for p in parts) if all(p["kxxh3"] for p in parts) else None
                self.conn.execute("UPDATE scan SET xxh3 = ?, kxxh3 = ?, torn = ?, sparse = ?, op = ? WHERE path = ?",
                                  (parts_digest((p["size"], p["xxh3"]) for p in parts), keyed, 1 if torn else None,
                                   1 if now is not None and has_holes(now) else None,
                                   (Op.ADD if old is None else Op.CHANGE).value, pkey))
                if torn:
                    yield absolute, "kept changing while its parts were read", True

    def stored(self, files: list[PackedFile], previous: TreeTable | None, key: str, version_id: str | None,
               sha256: str) -> None:
        """Whole files were packed into the volume ``key``: each row takes what was read (one statement for the
        volume's files; the op is ADD, or CHANGE where the previous point holds the path)."""
        op = (f"CASE WHEN EXISTS (SELECT 1 FROM {previous.name} WHERE path = scan.path) THEN '{Op.CHANGE.value}' "
              f"ELSE '{Op.ADD.value}' END") if previous is not None else f"'{Op.ADD.value}'"
        done = self.conn.executemany(
            "UPDATE scan SET xxh3 = ?, kxxh3 = ?, size = ?, mtime_ns = ?, mode = ?, uid = ?, gid = ?, dev = ?, ino = ?, "
            f"ctime_ns = ?, obj_key = ?, obj_version = ?, torn = ?, sparse = ?, obj_sha256 = ?, entry = ?, op = {op} "
            "WHERE path = ?",
            [(f.xxh3, f.kxxh3, f.size, storable("mtime_ns", f.mtime_ns), f.mode, f.uid, f.gid, storable("dev", f.dev),
              storable("ino", f.ino), storable("ctime_ns", f.ctime_ns), key, version_id, 1 if f.status == "torn" else None,
              1 if f.sparse else None, sha256, f.entry, path_key(f.path.lstrip("/"))) for f in files])
        if files and done.rowcount != len(files):
            raise IntegrityError(f"internal: {len(files) - done.rowcount} packed files of {key} are not in the scan")

    def not_stored(self, packed: PackedFile, previous: TreeTable | None) -> bool:
        """A file could not be packed: keep its previous version (True), or leave it out of the point."""
        pkey = path_key(packed.path.lstrip("/"))
        if packed.part is not None:  # one part: the file is settled once all are
            self.failed_parts.setdefault(pkey, packed.message)
            return True
        old = previous.get(pkey) if previous is not None else None
        if old is not None:
            self.put({**dict(old), "ino": None, "op": None})  # kept unverified: no inode, so the next run reads it
            self.put_parts(pkey, [dict(p) for p in previous.parts_of(pkey)])  # type: ignore[union-attr]
            return True
        self.remove(pkey)
        return False

    # -- the manifest --------------------------------------------------------------------------------
    def removed_since(self, previous: TreeTable) -> Iterator[bytes]:
        """Paths of ``previous`` that this scan no longer holds, in path order."""
        for row in self.conn.execute(f"SELECT t.path FROM {previous.name} AS t WHERE NOT EXISTS "
                                     f"(SELECT 1 FROM scan WHERE scan.path = t.path) ORDER BY t.path"):
            yield row[0]

    def listed(self, full: bool) -> Iterator[tuple[Any, Op]]:
        """The rows a manifest lists with their op: every row for a full, only changes otherwise."""
        for row in self.rows("" if full else "op IS NOT NULL"):
            yield row, Op.ADD if full else Op(row["op"])
