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
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Iterator, Mapping

import xxhash

from . import interrupt
from .catalog import TreeTable, path_key, path_name, storable
from .pack import PackedFile, SourceFolders, has_holes, open_source, source_root, xxh3_file
from .scan import Entry

EMPTY_XXH3 = xxhash.xxh3_128(b"").hexdigest()


class Op(str, Enum):
    PACK = "pack"  # content to store in this run
    ADD = "add"  # new entry (content, if any, already stored)
    CHANGE = "change"  # other content or another type than the previous point
    META = "meta"  # same content, other metadata
    SETTLED = "="  # internal to classification: unchanged, decided in SQL


# Rows whose content the previous point already holds (unchanged, or metadata only).
CARRIED = f"(op IS NULL OR op = '{Op.META.value}')"
_META_COLUMNS = ("mtime_ns", "mode", "uid", "gid", "target", "link", "xattrs")
_META_SAME = " AND ".join(f"scan.{c} IS t.{c}" for c in _META_COLUMNS)
_CONTENT = ("xxh3", "obj_key", "obj_version", "obj_sha256", "entry", "torn", "sparse")


def _row_from_entry(entry: Entry) -> dict[str, Any]:
    return {"path": path_key(entry.name), "type": entry.type, "size": entry.size, "mtime_ns": entry.mtime_ns,
            "mode": entry.mode, "uid": entry.uid, "gid": entry.gid, "dev": entry.dev, "ino": entry.ino,
            "target": entry.target, "xxh3": EMPTY_XXH3 if entry.type == "file" and entry.size == 0 else None,
            "ctime_ns": entry.ctime_ns, "xattrs": entry.xattrs}


@dataclass(frozen=True)
class Sharing:
    """What an incremental may refer to instead of packing again: content the previous point stores in a
    volume whose key starts with ``prefix`` (its own generation's) and whose object ``known`` recognises."""

    prefix: str
    known: Callable[[str], bool]


def _hash_unchanged(path: str, root: str, size: int, mtime_ns: int,
                    folders: SourceFolders | None = None) -> tuple[str, bool] | None:
    """The xxh3-128 of a file and whether it has holes, when it still has the scanned size and mtime and
    holds still while it is read; else None (it is packed, and the packer deals with the change)."""
    try:
        fh, before = folders.open(path, root) if folders is not None else open_source(path, root)
    except OSError:
        return None
    with fh:
        if (before.st_size, before.st_mtime_ns) != (size, mtime_ns):
            return None
        h = xxhash.xxh3_128()
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
        after = os.fstat(fh.fileno())
    if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != (before.st_size, before.st_mtime_ns, before.st_ctime_ns):
        return None
    return h.hexdigest(), has_holes(before)


def _meta_differs(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    return any(new[c] != old[c] for c in _META_COLUMNS)


class ScanTable(TreeTable):
    """The tree as scanned by this run, each row with its :class:`Op`."""

    def __init__(self, conn: Any) -> None:
        conn.execute("DROP TABLE IF EXISTS scan")
        super().__init__(conn, "scan")
        self.shared_files = self.shared_bytes = 0  # content referred to, not packed again (:meth:`share`)

    def add(self, entry: Entry, warn: Callable[[str], None]) -> None:
        row = _row_from_entry(entry)
        if storable("mtime_ns", entry.mtime_ns) != entry.mtime_ns:
            warn(f"{entry.path} has a modification time outside 1677-2262, which the catalog cannot hold; "
                 "its content is kept, its time is stored as the nearest it can hold")
        self.put(row)

    def link_names(self, inodes: Mapping[tuple[int, int], list[bytes]]) -> None:
        """Files seen under several names (same device and inode): every name but the first (bytewise) records
        the first as its ``link``, so a restore makes them hard links again."""
        for names in inodes.values():
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
                 sharing: Sharing | None = None) -> None:
        """Give each row its op against ``previous`` (None: a full without a baseline, everything is new).

        The common cases are settled in SQL in one pass; only rows that need a decision per file
        (new, changed size, or same size with another mtime, ctime, inode or device) come back to Python.
        A ctime the previous point does not know (a catalog from before it was kept) is not compared.
        With ``sharing`` (an incremental), content to pack that ``previous`` already stores is referred to
        instead (:meth:`share`).
        """
        conn = self.conn
        if previous is None:
            conn.execute("UPDATE scan SET op = CASE WHEN type = 'file' AND size > 0 THEN ? ELSE ? END",
                         (Op.PACK.value, Op.ADD.value))
            return
        conn.execute(f"""
            UPDATE scan SET xxh3 = t.xxh3, obj_key = t.obj_key, obj_version = t.obj_version,
                   obj_sha256 = t.obj_sha256, entry = t.entry, torn = t.torn, sparse = t.sparse,
                   op = CASE WHEN {_META_SAME} THEN ? ELSE ? END
            FROM {previous.name} AS t
            WHERE t.path = scan.path AND t.type = scan.type AND (scan.type != 'file' OR (
                  t.size = scan.size AND t.mtime_ns = scan.mtime_ns AND t.ino = scan.ino AND t.dev = scan.dev
                  AND (t.ctime_ns IS NULL OR t.ctime_ns = scan.ctime_ns)))""",
                     (Op.SETTLED.value, Op.META.value))
        for row in self.rows("op IS NULL"):
            interrupt.check()
            self.put(self._decide(dict(row), previous.get(row["path"]), warn, roots))
        conn.execute("UPDATE scan SET op = NULL WHERE op = ?", (Op.SETTLED.value,))
        if sharing is not None:
            self.shared_files, self.shared_bytes = self.share(previous, sharing, roots)

    def share(self, previous: TreeTable, sharing: Sharing, roots: tuple[str, ...]) -> tuple[int, int]:
        """Moves, renames and copies: a file to pack whose size and xxh3 equal content ``previous`` stores
        (whole, not torn) is not packed again; its row refers to the stored entry (ADD, or CHANGE where the
        path held other content). Only files whose size some stored entry has are read for their hash.

        The lookups are joins, so sqlite indexes the previous tree once rather than scanning it per file.
        Returns the files (and bytes) that now refer to stored content.
        """
        conn = self.conn
        stored = (f"SELECT size, xxh3, obj_key, obj_version, obj_sha256, entry FROM {previous.name} "
                  "WHERE type = 'file' AND size > 0 AND xxh3 IS NOT NULL AND obj_key IS NOT NULL AND entry IS NOT NULL "
                  "AND torn IS NULL AND substr(obj_key, 1, ?) = ?")
        window = (len(sharing.prefix), sharing.prefix)
        candidates = conn.execute(
            f"SELECT scan.path, scan.size, scan.mtime_ns FROM scan JOIN (SELECT DISTINCT size FROM ({stored})) AS s "
            f"ON s.size = scan.size WHERE scan.op = ? ORDER BY scan.path", (*window, Op.PACK.value)).fetchall()
        if not candidates:
            return 0, 0
        conn.execute("DROP TABLE IF EXISTS temp.share")
        conn.execute("CREATE TEMP TABLE share (path BLOB PRIMARY KEY, size INTEGER, xxh3 TEXT, sparse INTEGER)")
        with SourceFolders() as folders:
            for path, size, mtime_ns in candidates:
                interrupt.check()
                absolute = "/" + path_name(path)
                read = _hash_unchanged(absolute, source_root(absolute, roots), size, mtime_ns, folders)
                if read is not None:
                    conn.execute("INSERT INTO temp.share VALUES (?, ?, ?, ?)",
                                 (path, size, read[0], 1 if read[1] else None))
        matches = conn.execute(
            f"SELECT c.path, c.size, c.sparse, t.xxh3, t.obj_key, t.obj_version, t.obj_sha256, t.entry, "
            f"EXISTS (SELECT 1 FROM {previous.name} AS p WHERE p.path = c.path) FROM temp.share AS c "
            f"JOIN ({stored}) AS t ON t.size = c.size AND t.xxh3 = c.xxh3 GROUP BY c.path", window).fetchall()
        known: dict[str, bool] = {}
        updates = [(digest, key, version, sha256, entry, sparse, (Op.CHANGE if existed else Op.ADD).value, path)
                   for path, _, sparse, digest, key, version, sha256, entry, existed in matches
                   if known.setdefault(key, sharing.known(key))]
        conn.executemany("UPDATE scan SET xxh3 = ?, obj_key = ?, obj_version = ?, obj_sha256 = ?, entry = ?, "
                         "torn = NULL, sparse = ?, op = ? WHERE path = ?", updates)
        conn.execute("DROP TABLE temp.share")
        return len(updates), sum(size for _, size, *rest in matches if known[rest[2]])

    @staticmethod
    def _decide(new: dict[str, Any], old: Mapping[str, Any] | None, warn: Callable[[str], None],
                roots: tuple[str, ...]) -> dict[str, Any]:
        if old is None or old["type"] != new["type"]:
            new["op"] = Op.PACK if new["type"] == "file" and new["size"] > 0 else (Op.ADD if old is None else Op.CHANGE)
        elif new["size"] != old["size"]:
            new["op"] = Op.PACK if new["size"] > 0 else Op.CHANGE
        else:
            # Same size, other mtime, ctime or inode: confirm by content before storing it again (a chmod
            # changes the ctime and nothing else: it is metadata, and no content goes up).
            absolute = "/" + path_name(new["path"])
            try:
                digest = xxh3_file(absolute, source_root(absolute, roots)) if new["size"] else EMPTY_XXH3
            except OSError as exc:
                warn(f"{absolute} cannot be read ({exc.strerror}); the previous version is kept")
                return {**dict(old), "op": Op.SETTLED.value}
            if digest == old["xxh3"]:
                new.update({k: old[k] for k in _CONTENT})
                new["op"] = Op.META if _meta_differs(new, old) else Op.SETTLED
            else:
                new["op"] = Op.PACK
        new["op"] = Op(new["op"]).value
        return new

    # -- a synthetic full ----------------------------------------------------------------------------
    def carried_bytes(self) -> dict[str, int]:
        """Bytes of carried content per volume of the previous point (the volume's live bytes)."""
        return {row[0]: int(row[1]) for row in self.conn.execute(
            f"SELECT obj_key, sum(size) FROM scan WHERE type = 'file' AND size > 0 AND obj_key IS NOT NULL "
            f"AND {CARRIED} GROUP BY obj_key")}

    def carried_volumes(self) -> dict[str, tuple[str | None, str]]:
        """Each volume holding carried content: its (version id, SHA-256)."""
        return {row[0]: (row[1], row[2]) for row in self.conn.execute(
            f"SELECT DISTINCT obj_key, obj_version, obj_sha256 FROM scan WHERE obj_key IS NOT NULL AND {CARRIED}")}

    def repoint(self, old_key: str, new_key: str, version_id: str | None, sha256: str) -> None:
        """Carried content of ``old_key`` now lives in its copy ``new_key``."""
        self.conn.execute(f"UPDATE scan SET obj_key = ?, obj_version = ?, obj_sha256 = ? WHERE obj_key = ? "
                          f"AND {CARRIED}", (new_key, version_id, sha256, old_key))

    def repack(self, old_key: str) -> None:
        """Carried content of ``old_key`` is packed again from the source."""
        self.conn.execute(f"UPDATE scan SET op = ? WHERE obj_key = ? AND {CARRIED} AND type = 'file' AND size > 0",
                          (Op.PACK.value, old_key))

    # -- packing -------------------------------------------------------------------------------------
    def to_pack(self) -> Iterator[Any]:
        return self.rows("op = ?", (Op.PACK.value,))

    def stored(self, packed: PackedFile, previous: TreeTable | None, key: str, version_id: str | None,
               sha256: str) -> None:
        """A file was packed into the volume ``key``: the row takes what was read."""
        pkey = path_key(packed.path.lstrip("/"))
        row = dict(self.get(pkey))
        old = previous.get(pkey) if previous is not None else None
        row.update(xxh3=packed.xxh3, size=packed.size, mtime_ns=packed.mtime_ns, mode=packed.mode, uid=packed.uid,
                   gid=packed.gid, dev=packed.dev, ino=packed.ino, ctime_ns=packed.ctime_ns, obj_key=key,
                   obj_version=version_id, torn=1 if packed.status == "torn" else None,
                   sparse=1 if packed.sparse else None,
                   obj_sha256=sha256, entry=packed.entry, op=(Op.ADD if old is None else Op.CHANGE).value)
        self.put(row)

    def not_stored(self, packed: PackedFile, previous: TreeTable | None) -> bool:
        """A file could not be packed: keep its previous version (True), or leave it out of the point."""
        pkey = path_key(packed.path.lstrip("/"))
        old = previous.get(pkey) if previous is not None else None
        if old is not None:
            self.put({**dict(old), "op": None})
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
        for row in self.rows():
            if full:
                yield row, Op.ADD
            elif row["op"] is not None:
                yield row, Op(row["op"])
