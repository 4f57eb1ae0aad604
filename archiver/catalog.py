"""The local catalog: a sqlite cache of what the manifests say, plus stat data.

Losing it never loses data; it is rebuilt from the repository's manifests
(automatically when its tip differs from the repository's newest manifest, or
by ``genarc catalog rebuild``). The same tree table also serves restore, which
replays a generation's chain into a throw-away database: memory stays flat
however large the tree.
"""

from __future__ import annotations

import base64
import hashlib
import json
import operator
import os
import re
import sqlite3
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from .errors import ConfigError, IntegrityError, LocalIOError
from .parts import parts_digest

TREE_COLUMNS = ("path", "type", "size", "mtime_ns", "mode", "uid", "gid", "dev", "ino", "target", "xxh3",
                "obj_key", "obj_version", "obj_sha256", "entry", "op", "ctime_ns", "torn", "link", "xattrs", "sparse",
                "parts", "kxxh3")
PART_COLUMNS = ("path", "idx", "size", "xxh3", "obj_key", "obj_version", "obj_sha256", "entry", "kxxh3")
_CONVERTED = [TREE_COLUMNS.index(c) for c in ("mtime_ns", "dev", "ino", "target", "ctime_ns")]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS {name} (
    path BLOB PRIMARY KEY, type TEXT NOT NULL, size INTEGER, mtime_ns INTEGER, mode INTEGER,
    uid INTEGER, gid INTEGER, dev INTEGER, ino INTEGER, target BLOB, xxh3 TEXT,
    obj_key TEXT, obj_version TEXT, obj_sha256 TEXT, entry TEXT, op TEXT, ctime_ns INTEGER, torn INTEGER, link BLOB,
    xattrs TEXT, sparse INTEGER, parts INTEGER, kxxh3 TEXT
) WITHOUT ROWID
"""
# A file larger than a volume is stored in parts: one row each, in order (``parts`` in the tree row counts them).
# A part whose object is NULL is still to be packed by this run.
_PARTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS {name}_parts (
    path BLOB, idx INTEGER, size INTEGER, xxh3 TEXT, obj_key TEXT, obj_version TEXT, obj_sha256 TEXT, entry TEXT,
    kxxh3 TEXT, PRIMARY KEY (path, idx)
) WITHOUT ROWID
"""
# Columns added since the first catalogs; a table without one gets it (NULL: unknown, or not set).
_ADDED_COLUMNS = {"ctime_ns": "INTEGER", "torn": "INTEGER", "link": "BLOB", "xattrs": "TEXT", "sparse": "INTEGER",
                  "parts": "INTEGER", "kxxh3": "TEXT"}


def path_key(name: str) -> bytes:
    """Catalog key of a manifest path: its bytes, so ordering is bytewise and non-UTF-8 names survive."""
    return os.fsencode(name)


def path_name(key: bytes) -> str:
    return os.fsdecode(key)


def storable(column: str, value: Any) -> Any:
    """A value as sqlite can hold it: link targets as bytes; inode and device numbers (unsigned 64-bit, compared
    only for equality) folded into signed range; a time beyond 1677-2262 clamped to it (the scan warns)."""
    if column == "target":
        return os.fsencode(value) if isinstance(value, str) else value
    if type(value) is not int or -INT64 <= value < INT64:
        return value
    if column in ("ino", "dev"):
        return value - 2 * INT64 if value >= INT64 else value
    return max(-INT64, min(INT64 - 1, value))


def link_target(value: bytes | str | None) -> str | None:
    """A symlink target as manifests and messages hold it (bytes that are not UTF-8 kept by surrogateescape)."""
    return None if value is None else os.fsdecode(value)


# The columns of a tree row that make its line of the tree digest, in the line's order (link and xattrs last).
DIGEST_COLUMNS = ("path", "type", "size", "xxh3", "mode", "mtime_ns", "uid", "gid", "target", "link", "xattrs")


# A tree with this many rows or more has its digest lines made on another core (:class:`TreeDigest`).
PARALLEL_DIGEST_ROWS = 20000


def canonical_line(row: Mapping[str, Any]) -> bytes:
    """One entry's contribution to the tree digest."""
    return _digest_line([row[c] for c in DIGEST_COLUMNS])


def digest_of(items: Iterable[Any]) -> str:
    """The tree digest of what :class:`TreeDigest` sends, in path order: batches of rows (their
    :data:`DIGEST_COLUMNS` values, in that order), or bytes already made of digest lines."""
    h = hashlib.sha256()
    for item in items:
        h.update(item if isinstance(item, bytes) else b"".join(map(_digest_line, item)))
    return h.hexdigest()


class TreeDigest:
    """The tree digest of rows given in path order. With ``parallel``, their lines are made on another core
    (:class:`archiver.processes.ChildSink`); this one only picks each row's values. A context manager: leaving
    it early stops that process."""

    def __init__(self, parallel: bool) -> None:
        from .processes import ChildSink

        self._sink = ChildSink(digest_of) if parallel else None
        self._hash = hashlib.sha256()
        self._rows: list[tuple[Any, ...]] = []
        self._pick: Any = None

    def __enter__(self) -> "TreeDigest":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._sink is not None:
            self._sink.close()

    def add(self, row: sqlite3.Row) -> None:
        if self._sink is None:
            self._hash.update(canonical_line(row))
            return
        if self._pick is None:
            self._pick = operator.itemgetter(*[row.keys().index(c) for c in DIGEST_COLUMNS])
        self._rows.append(self._pick(row))
        if len(self._rows) >= 2000:
            self._send_rows()

    def lines(self, data: bytes) -> None:
        """Lines made here, after every row given so far."""
        if self._sink is None:
            self._hash.update(data)
            return
        self._send_rows()
        self._sink.send(data)

    def hexdigest(self) -> str:
        if self._sink is None:
            return self._hash.hexdigest()
        self._send_rows()
        return str(self._sink.answer())

    def _send_rows(self) -> None:
        if self._rows:
            self._sink.send(self._rows)
            self._rows = []


def _digest_line(values: Any) -> bytes:
    """:func:`canonical_line` of the row's :data:`DIGEST_COLUMNS` values, in that order."""
    from .manifest import dumps

    path, kind, size, xxh3, mode, mtime_ns, uid, gid, target, link, xattrs = values
    fields = [path_name(path), kind, size, xxh3, mode, mtime_ns, uid, gid, link_target(target)]
    extra = {}  # absent before hard links and extended attributes were kept, so older digests still hold
    if link is not None:  # another name of the same file (a hard link)
        extra["link"] = path_name(link)
    if xattrs is not None:
        extra["xattrs"] = json.loads(xattrs)
    if extra:
        fields.append(extra)
    return (dumps(fields) + "\n").encode()


SQLITE_NEEDED = (3, 33, 0)  # UPDATE ... FROM (a scan compared with the tree in one statement)


def connect(path: Path | str) -> sqlite3.Connection:
    if sqlite3.sqlite_version_info < SQLITE_NEEDED:
        raise ConfigError(f"genarc needs SQLite 3.33 or later, and this Python uses SQLite {sqlite3.sqlite_version}; "
                          "run genarc with a Python built with a newer SQLite (python.org's builds bundle one).")
    try:
        conn = sqlite3.connect(str(path), isolation_level=None)
    except sqlite3.Error as exc:
        raise LocalIOError(f"Cannot open the catalog {path}: {exc}; check the state directory.") from exc
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL" if str(path) != ":memory:" else "PRAGMA journal_mode=MEMORY")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA cache_size=-32768")
    return conn


INT64 = 2**63  # sqlite's integers are signed 64-bit: -INT64 <= n < INT64
RETIRED = "retired"  # the tree before the last commit, until the next run drops it (Catalog.adopt)


class TreeTable:
    """A tree state (path -> entry) in one sqlite table."""

    def __init__(self, conn: sqlite3.Connection, name: str) -> None:
        self.conn, self.name = conn, name
        conn.execute(_SCHEMA.format(name=name))
        conn.execute(_PARTS_SCHEMA.format(name=name))
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({name})")}
        for column, kind in _ADDED_COLUMNS.items():
            if column not in present:
                conn.execute(f"ALTER TABLE {name} ADD COLUMN {column} {kind}")

    @staticmethod
    def drop(conn: sqlite3.Connection, name: str) -> None:
        """Drop a tree table and its parts, if they exist."""
        conn.execute(f"DROP TABLE IF EXISTS {name}")
        conn.execute(f"DROP TABLE IF EXISTS {name}_parts")

    @property
    def parts_name(self) -> str:
        return f"{self.name}_parts"

    def clear(self) -> None:
        self.conn.execute(f"DELETE FROM {self.name}")
        self.conn.execute(f"DELETE FROM {self.parts_name}")

    def parts_of(self, path: bytes) -> list[sqlite3.Row]:
        """The parts of a file stored in parts, in order ([] for any other entry)."""
        return self.conn.execute(f"SELECT * FROM {self.parts_name} WHERE path = ? ORDER BY idx", (path,)).fetchall()

    def put_parts(self, path: bytes, parts: Iterable[Mapping[str, Any]]) -> int:
        """Replace the parts of ``path``; returns how many there are."""
        self.conn.execute(f"DELETE FROM {self.parts_name} WHERE path = ?", (path,))
        count = 0
        for idx, part in enumerate(parts):
            self.conn.execute(f"INSERT INTO {self.parts_name} ({','.join(PART_COLUMNS)}) VALUES (?,?,?,?,?,?,?,?,?)",
                              (path, idx, *(part.get(c) for c in PART_COLUMNS[2:])))
            count += 1
        return count

    @staticmethod
    def values_of(row: Mapping[str, Any]) -> list[Any]:
        """A row's values in column order, as stored. Link targets are stored as the OS's bytes, so any target
        round-trips; numbers sqlite cannot hold are brought into its range (see :func:`storable`)."""
        values = [row.get(c) for c in TREE_COLUMNS]
        for index in _CONVERTED:
            values[index] = storable(TREE_COLUMNS[index], values[index])
        return values

    @property
    def insert_sql(self) -> str:
        return f"INSERT OR REPLACE INTO {self.name} ({','.join(TREE_COLUMNS)}) VALUES ({','.join('?' * len(TREE_COLUMNS))})"

    def put(self, row: Mapping[str, Any]) -> None:
        """Insert or replace a row (:meth:`values_of`)."""
        self.conn.execute(self.insert_sql, self.values_of(row))

    def get(self, path: bytes) -> sqlite3.Row | None:
        return self.conn.execute(f"SELECT * FROM {self.name} WHERE path = ?", (path,)).fetchone()

    def ordered_get(self, columns: str = "*") -> Callable[[bytes], sqlite3.Row | None]:
        """:meth:`get` for paths asked in path order (a full's listing asks for every row): one ordered pass over
        the table a batch at a time, instead of a query for each path (8 s at a million rows). ``columns``: those
        the caller reads, path first. A path asked before the last one is looked up alone. The table must not
        change while it is used."""
        rows = (row for batch in self.batches(columns) for row in batch)
        row, at, last = None, b"", b""  # ``at``: the path of ``row``

        def get(path: bytes) -> sqlite3.Row | None:
            nonlocal row, at, last
            if path < last:
                return self.get(path)
            last = path
            while row is None or at < path:
                row = next(rows, None)
                if row is None:  # the end of the table: every later path is absent
                    return None
                at = row["path"]
            return row if at == path else None
        return get

    def remove(self, path: bytes) -> None:
        self.conn.execute(f"DELETE FROM {self.name} WHERE path = ?", (path,))
        self.conn.execute(f"DELETE FROM {self.parts_name} WHERE path = ?", (path,))

    def rows(self, where: str = "", params: Iterable[Any] = ()) -> Iterator[sqlite3.Row]:
        """Rows in path order, fetched in batches so a large tree never sits in memory."""
        for batch in self.batches("*", where, params):
            yield from batch

    def batches(self, columns: str = "*", where: str = "", params: Iterable[Any] = ()) -> Iterator[list[sqlite3.Row]]:
        """Rows (``columns``, path first when not ``*``) in path order, a batch at a time."""
        last: bytes | None = None
        clause = f"AND ({where})" if where else ""
        while True:
            if last is None:
                batch = self.conn.execute(
                    f"SELECT {columns} FROM {self.name} WHERE 1 {clause} ORDER BY path LIMIT 2000", tuple(params)).fetchall()
            else:
                batch = self.conn.execute(
                    f"SELECT {columns} FROM {self.name} WHERE path > ? {clause} ORDER BY path LIMIT 2000",
                    (last, *params)).fetchall()
            if not batch:
                return
            yield batch
            last = batch[-1][0]

    def count(self) -> int:
        return int(self.conn.execute(f"SELECT count(*) FROM {self.name}").fetchone()[0])

    def digest(self, parallel: bool = False, rows: int | None = None) -> str:
        """The tree digest (section 4): every row's canonical line, in path order. With ``parallel``, a large
        tree's first half has its lines made on another core while this one makes the rest; ``rows``, about how
        many rows it has (it is counted when not given; any split gives the same digest)."""
        columns = ", ".join(DIGEST_COLUMNS)
        count = (self.count() if rows is None else rows) if parallel else 0
        if count < PARALLEL_DIGEST_ROWS:
            return digest_of(self.batches(columns))
        middle = self.conn.execute(f"SELECT path FROM {self.name} ORDER BY path LIMIT 1 OFFSET ?",
                                   (count // 2,)).fetchone()[0]
        with TreeDigest(parallel=True) as digest:
            for batch in self.batches(columns, "path < ?", (middle,)):
                for row in batch:
                    digest.add(row)
            for batch in self.batches(columns, "path >= ?", (middle,)):
                digest.lines(b"".join(map(_digest_line, batch)))
            return digest.hexdigest()

    def apply_manifest(self, entries: Iterable[Mapping[str, Any]], objects: list[Mapping[str, Any]], what: str,
                       opening: bool = False) -> None:
        """Replay one manifest's entries onto this tree.

        genarc's runs list each path once per manifest, ``add`` only what the tree does not hold and
        ``change``, ``meta`` or ``remove`` only what it does, and the manifest that opens a chain (a full,
        ``opening``) only ``add``; a manifest that does otherwise was not written by a run of genarc, and its
        chain is refused here. A path listed twice is refused: in an opening manifest a second ``add`` finds
        the path held; otherwise the paths listed so far are kept (an incremental lists what changed).
        """
        listed: set[bytes] | None = None if opening else set()
        for entry in entries:
            problem = _malformed(entry)
            if problem:
                path = entry.get("path") if isinstance(entry, Mapping) and isinstance(entry.get("path"), str) else None
                about = f" for {path}" if path is not None and _encodable(path) else ""
                raise IntegrityError(f"{what} has a malformed entry{about} ({problem}); it was forged or damaged.")
            path, op = path_key(entry["path"]), entry["op"]
            if opening and op != "add":
                raise IntegrityError(f"{what} opens a chain but lists {entry['path']} as {op}, not add; it was not "
                                     "written by a genarc run.")
            if listed is not None:
                if path in listed:
                    raise IntegrityError(f"{what} lists {entry['path']} twice; it was not written by a genarc run.")
                listed.add(path)
            old = self.get(path)
            if (op == "add") != (old is None):
                doing = "adds what the chain already holds" if op == "add" else f"{op}s what the chain does not hold"
                raise IntegrityError(f"{what} lists {entry['path']} twice or {doing.replace('metas', 'changes')}; "
                                     "it was not written by a genarc run.")
            if op == "remove":
                self.remove(path)
                continue
            row = {c: entry.get(c) for c in ("type", "size", "mtime_ns", "mode", "uid", "gid", "target", "xxh3", "entry",
                                             "kxxh3")}
            parts = None
            row["path"] = path
            row["torn"] = 1 if entry.get("torn") is True else None
            row["sparse"] = 1 if entry.get("sparse") is True else None
            row["link"] = path_key(entry["link"]) if entry.get("link") is not None else None
            row["xattrs"] = (json.dumps(entry["xattrs"], sort_keys=True, separators=(",", ":"))
                             if entry.get("xattrs") is not None else None)
            if "obj" in entry:
                row.update(_object_of(objects, entry["obj"], what))
            elif "parts" in entry:
                parts = [{"size": p["size"], "xxh3": p["xxh3"], "kxxh3": p.get("kxxh3"), "entry": p["entry"],
                          **_object_of(objects, p["obj"], what)} for p in entry["parts"]]
                row["parts"] = len(parts)
            elif op == "meta" and row["type"] == "file" and row["size"] > 0:
                if old is None or old["type"] != "file":
                    raise IntegrityError(f"{what} changes metadata of {entry['path']}, which the chain does not hold.")
                row.update(obj_key=old["obj_key"], obj_version=old["obj_version"], obj_sha256=old["obj_sha256"],
                           entry=old["entry"], torn=old["torn"], sparse=old["sparse"], parts=old["parts"],
                           kxxh3=old["kxxh3"])
                parts = [dict(p) for p in self.parts_of(path)] if old["parts"] else None
            elif row["type"] == "file" and row["size"] > 0:
                raise IntegrityError(f"{what} lists {entry['path']} without the object that holds it.")
            self.put(row)
            if parts is not None or old is not None:
                self.put_parts(path, parts or [])


def _object_of(objects: list[Mapping[str, Any]], index: Any, what: str) -> dict[str, Any]:
    """The object a manifest entry (or part) names by its index into the manifest's objects."""
    try:
        obj = objects[index]
        return {"obj_key": obj["key"], "obj_version": obj.get("version_id"), "obj_sha256": obj["sha256"]}
    except (IndexError, TypeError, KeyError):
        raise IntegrityError(f"{what} refers to an object it does not list.") from None


def _base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
        return True
    except ValueError:
        return False


def _encodable(text: str) -> bool:
    """Text the OS can take as a name: what os.fsdecode makes; a lone surrogate of any other kind is not."""
    try:
        os.fsencode(text)
        return True
    except UnicodeEncodeError:
        return False


def _malformed(entry: Any) -> str | None:
    """What makes a manifest entry unusable, or None. Only the kinds of values a genarc run writes pass."""
    if not isinstance(entry, Mapping) or not isinstance(entry.get("path"), str):
        return "no path"
    if not _encodable(entry["path"]):
        return "a path no file system can hold"
    if entry.get("torn", True) is not True or entry.get("sparse", True) is not True:
        return "a 'changed while read' or 'sparse' flag that is not true"
    link = entry.get("link")
    if link is not None and (entry.get("type") != "file" or not isinstance(link, str) or not link or "\x00" in link
                             or not _encodable(link) or link == entry["path"]):
        return "a hard link that is not another file's path"
    xattrs = entry.get("xattrs")
    if xattrs is not None and (entry.get("type") == "symlink" or not isinstance(xattrs, Mapping) or not xattrs or not all(
            isinstance(k, str) and k and "\x00" not in k and len(k) <= 255 and _encodable(k) and isinstance(v, str)
            and _base64(v)
            for k, v in xattrs.items())):
        return "extended attributes that are not names with base64 values"
    op = entry.get("op")
    if op not in ("add", "change", "meta", "remove"):
        return f"unknown op {op!r}"
    if op == "remove":
        return None
    numbers = {k: entry.get(k) for k in ("size", "mtime_ns", "mode")}
    if entry.get("type") not in ("file", "dir", "symlink"):
        return f"unknown type {entry.get('type')!r}"
    if any(type(v) is not int or not -INT64 <= v < INT64 for v in numbers.values()):
        return "a size, time or mode that is not a number"
    if numbers["size"] < 0 or not 0 <= numbers["mode"] <= 0o7777:
        return "a negative size or an impossible mode"
    owner = [entry.get("uid"), entry.get("gid")]
    if owner != [None, None] and not all(type(v) is int and 0 <= v < 2**32 for v in owner):
        return "an impossible owner"
    if any(entry.get(k) is not None and (not isinstance(entry[k], str) or "\x00" in entry[k] or not _encodable(entry[k]))
           for k in ("target", "xxh3", "entry")):
        return "a link target, hash or entry name that is not text, or holds a NUL byte"
    if entry["type"] == "symlink" and not 0 < len(os.fsencode(entry.get("target") or "")) <= 4095:
        return "a symlink without a target, or with one longer than 4095 bytes"
    if "obj" in entry and (type(entry["obj"]) is not int or entry["obj"] < 0 or not isinstance(entry.get("entry"), str)):
        return "content that names no object or no entry in it"
    keyed = [entry.get("kxxh3")] + [p.get("kxxh3") for p in entry["parts"] if isinstance(p, Mapping)] \
        if isinstance(entry.get("parts"), list) else [entry.get("kxxh3")]
    if not all(k is None or (isinstance(k, str) and _HEX128.fullmatch(k.removeprefix("p"))) for k in keyed):
        return "a keyed hash that is not 32 hex digits"
    if "parts" in entry:
        parts = entry["parts"]
        if "obj" in entry or entry["type"] != "file" or not isinstance(parts, list) or len(parts) < 2 or not all(
                isinstance(p, Mapping) and type(p.get("obj")) is int and p["obj"] >= 0 and type(p.get("size")) is int
                and p["size"] > 0 and isinstance(p.get("entry"), str) and "\x00" not in p["entry"]
                and _encodable(p["entry"]) and isinstance(p.get("xxh3"), str) and _HEX128.fullmatch(p["xxh3"])
                for p in parts):
            return "parts that are not a list of objects, entries, sizes and hashes"
        if sum(p["size"] for p in parts) != numbers["size"]:
            return "parts whose sizes do not add up to the file's"
        if entry.get("xxh3") != parts_digest((p["size"], p["xxh3"]) for p in parts):
            return "parts that do not give the file's hash"
    return None


_HEX128 = re.compile(r"[0-9a-f]{32}")


class Catalog:
    """The per-job cache in the XDG state directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LocalIOError(f"Cannot create the state directory {path.parent}: {exc.strerror}.") from exc
        self.conn = connect(path)
        self.conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        # The objects of the newest generation, as its manifests list them (a synthetic full copies from these).
        self.conn.execute("CREATE TABLE IF NOT EXISTS objects (key TEXT PRIMARY KEY, version_id TEXT, sha256 TEXT, "
                          "size INTEGER, content_bytes INTEGER, method TEXT)")
        columns = {row[1] for row in self.conn.execute("PRAGMA table_info(objects)")}
        if "method" not in columns:
            self.conn.execute("ALTER TABLE objects ADD COLUMN method TEXT")  # a catalog from before the tripwire
        if "dense" not in columns:
            self.conn.execute("ALTER TABLE objects ADD COLUMN dense INTEGER")  # before incompressible content was zstd
        # Every run this machine started: a point whose run id is not here was written by someone else.
        self.conn.execute("CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, started TEXT)")
        self.tree = TreeTable(self.conn, "tree")

    @staticmethod
    def location(state_dir: Path, repo_id: str, job: str) -> Path:
        return state_dir / "catalog" / repo_id / f"{job}.sqlite"

    def get_meta(self, key: str) -> str | None:
        """A value :meth:`set_meta` stored; None when it was never set or was set to None (not the text "None")."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def set_meta(self, values: Mapping[str, str | None]) -> None:
        for key, value in values.items():
            self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def record_objects(self, objects: Iterable[Mapping[str, Any]], replace: bool = False) -> None:
        if replace:
            self.conn.execute("DELETE FROM objects")
        for obj in objects:
            self.conn.execute("INSERT OR REPLACE INTO objects (key, version_id, sha256, size, content_bytes, method, "
                              "dense) VALUES (?, ?, ?, ?, ?, ?, ?)",
                              (obj["key"], obj.get("version_id"), obj["sha256"], obj["size"], obj.get("content_bytes"),
                               obj.get("method"), 1 if obj.get("dense") is True else None))

    def adopt(self, scan: TreeTable, objects: Iterable[Mapping[str, Any]], *, replace: bool,
              tip: Mapping[str, str | None]) -> None:
        """A point was committed: its scanned tree becomes the catalog's tree, in one transaction."""
        self.conn.execute("BEGIN")
        self.record_objects(objects, replace=replace)
        self.conn.execute(f"UPDATE {scan.name} SET op = NULL WHERE op IS NOT NULL")
        # The previous tree is set aside, not dropped: dropping a million rows takes a second, which the next
        # run spends while its walk runs in another process (:meth:`drop_retired`).
        TreeTable.drop(self.conn, RETIRED)
        self.conn.execute(f"ALTER TABLE tree RENAME TO {RETIRED}")
        self.conn.execute(f"ALTER TABLE tree_parts RENAME TO {RETIRED}_parts")
        self.conn.execute(f"ALTER TABLE {scan.name} RENAME TO tree")
        self.conn.execute(f"ALTER TABLE {scan.parts_name} RENAME TO tree_parts")
        self.set_meta(tip)
        self.conn.execute("COMMIT")
        self.tree = TreeTable(self.conn, "tree")

    def drop_retired(self) -> None:
        """Drop the tree the last commit set aside (:meth:`adopt`), if there is one."""
        TreeTable.drop(self.conn, RETIRED)

    def record_run(self, run_id: str, started: str) -> None:
        self.conn.execute("INSERT OR IGNORE INTO runs VALUES (?, ?)", (run_id, started))

    def knows_run(self, run_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is not None

    def runs(self) -> set[str]:
        return {row[0] for row in self.conn.execute("SELECT run_id FROM runs")}

    def content_bytes(self) -> dict[str, int | None]:
        return {row[0]: row[1] for row in self.conn.execute("SELECT key, content_bytes FROM objects")}

    def object_sizes(self) -> dict[str, int]:
        """The size each object of the newest generation has in its manifest."""
        return {row[0]: row[1] for row in self.conn.execute("SELECT key, size FROM objects WHERE size IS NOT NULL")}

    def packing(self) -> dict[str, tuple[str, bool]]:
        """How each object of the newest generation was packed: its method, and whether its content is dense
        (:func:`dense_object`)."""
        return {row[0]: (row[1], dense_object({"method": row[1], "dense": row[2] == 1}))
                for row in self.conn.execute("SELECT key, method, dense FROM objects WHERE method IS NOT NULL")}

    def object_record(self, key: str) -> dict[str, Any] | None:
        """An object of the newest generation as its manifest recorded it."""
        row = self.conn.execute("SELECT key, version_id, sha256, size, content_bytes, method, dense FROM objects "
                                "WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        record = {"key": row[0], "size": row[3], "sha256": row[2], "version_id": row[1], "method": row[5]}
        if row[4] is not None:
            record["content_bytes"] = row[4]
        if row[6] == 1:
            record["dense"] = True
        return record

    @property
    def tip(self) -> str | None:
        return self.get_meta("tip_key")

    def close(self) -> None:
        self.conn.close()


def dense_object(record: Mapping[str, Any]) -> bool:
    """Whether an object, as a manifest records it, holds only content the packer's probe found incompressible:
    marked ``dense``, or packed with COPY (how such content was stored before zstd took it too)."""
    return record.get("dense") is True or record.get("method") == "copy"


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "genarc"
