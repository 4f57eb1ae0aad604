"""Faithful copies: no change to a file's content is missed, and none is stored for nothing."""

from __future__ import annotations

import os

from archiver.errors import EXIT_OK
from tests.conftest import restored_root, snapshot

DAYS = [f"2027-04-{d:02d}T02:00:00Z" for d in range(1, 10)]
CHUNKS = 509  # of the file rewritten during a run


def report_of(result) -> dict:
    return result.json["jobs"][0]["report"]


def test_a_rewrite_that_keeps_size_and_mtime_is_stored_and_a_chmod_uploads_nothing(workspace):
    ws = workspace
    victim = ws.src / "ledger.txt"
    victim.write_text("balance: 1000\n" * 100)
    (ws.src / "other.txt").write_text("other\n")
    ws.write_config()
    assert ws.genarc("init").code == EXIT_OK
    assert ws.genarc("run", now=DAYS[0]).code == EXIT_OK
    before = victim.stat()
    # What `touch -r`, rsync -t and ransomware do: new content, same size, old mtime.
    victim.write_text("balance: 9999\n" * 100)
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert victim.stat().st_size == before.st_size and victim.stat().st_mtime_ns == before.st_mtime_ns
    rewritten = ws.genarc("run", "--json", now=DAYS[1])
    assert rewritten.code == EXIT_OK and report_of(rewritten)["changed"] == 1
    target = ws.root / "restored"
    assert ws.genarc("restore", "data", "--target", str(target)).code == EXIT_OK
    assert snapshot(restored_root(target, ws.src)) == snapshot(ws.src)
    # A chmod changes only the ctime: confirmed by hash, recorded as metadata, no content uploaded.
    victim.chmod(0o600)
    chmodded = ws.genarc("run", "--json", now=DAYS[2])
    report = report_of(chmodded)
    assert chmodded.code == EXIT_OK and report["metadata_changed"] == 1 and report["changed"] == 0
    assert report["volumes"] == 0 and report["bytes_packed"] == 0
    # Nothing at all: nothing is even read again.
    quiet = report_of(ws.genarc("run", "--json", now=DAYS[3]))
    assert (quiet["changed"], quiet["metadata_changed"], quiet["volumes"]) == (0, 0, 0)


WRITER = r"""
import os, sys, time
path, mode = sys.argv[1], sys.argv[2]
deadline = time.monotonic() + float(sys.argv[3])
if mode == "append":
    with open(path, "ab", buffering=0) as fh:
        n = 0
        while time.monotonic() < deadline:
            fh.write(b"%08d a log line that keeps coming\n" % n)
            n += 1
else:
    size = os.path.getsize(path)
    fd = os.open(path, os.O_WRONLY)
    n = 0
    while time.monotonic() < deadline:
        os.pwrite(fd, bytes([n % 256]) * 65536, (n * 65536) % size)
        n += 1
"""


def busy_writer(ws, path, mode: str, seconds: float):
    import subprocess
    import sys

    import time

    script = ws.root / "writer.py"
    script.write_text(WRITER)
    before = os.stat(path)
    writer = subprocess.Popen([sys.executable, str(script), str(path), mode, str(seconds)])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the run starts once the writer is writing, however slow the machine
        now = os.stat(path)
        if (now.st_size, now.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            return writer
        time.sleep(0.005)
    writer.kill()
    raise AssertionError("the busy writer never started writing")


def test_a_log_appended_to_without_pause_is_in_every_point_as_the_prefix_read(workspace):
    ws = workspace
    log = ws.src / "app.log"
    log.write_bytes(b"start\n" * 1_000_000)  # 6 MB: reading it takes long enough to see it grow
    ws.write_config(workers=1)
    assert ws.genarc("init").code == EXIT_OK
    writer = busy_writer(ws, log, "append", 30)
    try:
        results = [ws.genarc("run", "--json", now=day) for day in DAYS[:2]]
    finally:
        writer.kill()
        writer.wait()
    for result in results:
        assert result.code == EXIT_OK, result.err  # grown only: no warning, nothing dropped
    listed = ws.genarc("ls", "data", "--json").json["entries"]
    stored = next(e for e in listed if e["path"].endswith("/app.log"))
    assert stored["size"] >= 6_000_000 and "changed_while_read" not in stored
    target = ws.root / "restored"
    assert ws.genarc("restore", "data", "--target", str(target)).code == EXIT_OK
    restored = (restored_root(target, ws.src) / "app.log").read_bytes()
    assert len(restored) == stored["size"] and log.read_bytes().startswith(restored)  # a consistent prefix


def test_a_file_rewritten_in_place_during_the_run_is_stored_as_last_read_and_flagged(workspace):
    ws = workspace
    db = ws.src / "db.bin"
    # 509 chunks of 64 KiB (about 32 MiB, one volume): each read spans many clock ticks and scheduler slices, and
    # the writer's bytes for a chunk differ on every pass (509 is not a multiple of 256).
    db.write_bytes(os.urandom(CHUNKS * 65536))
    (ws.src / "calm.txt").write_text("calm\n")
    ws.write_config(workers=1, volume_size="64MiB")
    assert ws.genarc("init").code == EXIT_OK
    writer = busy_writer(ws, db, "rewrite", 30)
    try:
        result = ws.genarc("run", "--json", now=DAYS[0])
    finally:
        writer.kill()
        writer.wait()
    assert result.code == 1, result.err  # partial: named
    assert any("db.bin" in w and "stored as last read" in w for w in report_of(result)["warnings"])
    entries = {e["path"].rsplit("/", 1)[-1]: e for e in ws.genarc("ls", "data", "--json").json["entries"]}
    assert entries["db.bin"]["changed_while_read"] is True and entries["db.bin"]["size"] == CHUNKS * 65536
    assert "changed_while_read" not in entries["calm.txt"]
    assert "(changed while read" in ws.genarc("ls", "data").out
    target = ws.root / "restored"
    restored = ws.genarc("restore", "data", "--target", str(target))
    assert restored.code == EXIT_OK and "db.bin kept changing while it was backed up" in restored.err
    assert (restored_root(target, ws.src) / "db.bin").stat().st_size == CHUNKS * 65536
    # Once it holds still, the next run stores it cleanly and the flag is gone.
    again = ws.genarc("run", "--json", now=DAYS[1])
    assert again.code == EXIT_OK and report_of(again)["changed"] == 1
    entries = {e["path"].rsplit("/", 1)[-1]: e for e in ws.genarc("ls", "data", "--json").json["entries"]}
    assert "changed_while_read" not in entries["db.bin"]


def test_hard_links_come_back_as_hard_links_inside_and_across_folders(workspace):
    ws = workspace
    (ws.src / "a").mkdir()
    (ws.src / "b").mkdir()
    original = ws.src / "a" / "report.txt"
    original.write_text("the same file under three names\n" * 100)
    os.link(original, ws.src / "a" / "report-copy.txt")  # inside a folder
    os.link(original, ws.src / "b" / "report.txt")  # across folders
    lonely = ws.src / "b" / "single.txt"
    lonely.write_text("one name only\n")
    empty = ws.src / "a" / "empty"
    empty.write_bytes(b"")
    os.link(empty, ws.src / "b" / "empty-too")  # an empty file with two names
    ws.write_config()
    assert ws.genarc("init").code == EXIT_OK
    assert ws.genarc("run", now=DAYS[0]).code == EXIT_OK

    def restored_links(day: int) -> dict[str, int]:
        target = ws.root / f"restored-{day}"
        result = ws.genarc("restore", "data", "--target", str(target))
        assert result.code == EXIT_OK, result.err
        root = restored_root(target, ws.src)
        assert snapshot(root) == snapshot(ws.src)
        inodes: dict[int, list[str]] = {}
        for path in sorted(root.rglob("*")):
            if path.is_file():
                inodes.setdefault(path.stat().st_ino, []).append(str(path.relative_to(root)))
        return {" ".join(names): root.joinpath(names[0]).stat().st_nlink for names in inodes.values()}

    assert restored_links(0) == {"a/empty b/empty-too": 2, "a/report-copy.txt a/report.txt b/report.txt": 3,
                                 "b/single.txt": 1}
    listed = {e["path"].split("/src/", 1)[1]: e for e in ws.genarc("ls", "data", "--json").json["entries"]
              if "/src/" in e["path"]}
    assert listed["b/report.txt"]["hardlink"].endswith("/src/a/report-copy.txt") and "hardlink" not in listed["a/report-copy.txt"]
    # A new name, a name gone, a link broken by rewriting one name as a new file: the next point follows.
    os.link(lonely, ws.src / "a" / "single-again.txt")
    (ws.src / "a" / "report-copy.txt").unlink()
    broken = ws.src / "b" / "report.txt"
    broken.unlink()
    broken.write_text("the same file under three names\n" * 100)  # same content, its own file now
    assert ws.genarc("run", now=DAYS[1]).code == EXIT_OK
    assert restored_links(1) == {"a/empty b/empty-too": 2, "a/report.txt": 1, "a/single-again.txt b/single.txt": 2,
                                 "b/report.txt": 1}


def acl_blob(user: int) -> bytes:
    """A POSIX access ACL as the kernel stores it: owner rw-, user ``user`` r--, group r--, mask r--, other ---."""
    import struct

    entries = [(0x01, 6, 0xFFFFFFFF), (0x02, 4, user), (0x04, 4, 0xFFFFFFFF), (0x10, 4, 0xFFFFFFFF), (0x20, 0, 0xFFFFFFFF)]
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


def xattrs_of(path) -> dict[str, bytes]:
    return {name: os.getxattr(path, name, follow_symlinks=False) for name in os.listxattr(path, follow_symlinks=False)}


def test_extended_attributes_and_acls_are_kept_and_restored_and_a_refusal_is_named_once_per_kind(workspace):
    import pytest

    from tests.conftest import without_sys_admin

    ws = workspace
    doc = ws.src / "doc.txt"
    doc.write_text("with attributes\n")
    folder = ws.src / "folder"
    folder.mkdir()
    other = folder / "other.txt"
    other.write_text("also\n")
    try:
        os.setxattr(doc, "user.comment", b"draft \x00\xff binary")
        os.setxattr(doc, "system.posix_acl_access", acl_blob(1234))
        os.setxattr(folder, "user.folder", b"a folder's attribute")
        os.setxattr(other, "trusted.origin", b"needs root")
        os.setxattr(other, "security.genarc-test", b"a security attribute")
        os.setxattr(ws.src, "user.source-root", b"the source folder's own")
        os.setxattr(doc, "trusted.origin", b"needs root too")
    except OSError as exc:
        pytest.skip(f"this file system or user cannot set extended attributes and ACLs: {exc}")
    os.chmod(doc, 0o640)  # the ACL's mask follows the group bits
    expected = {p: xattrs_of(p) for p in (doc, folder, other, ws.src)}
    ws.write_config()
    assert ws.genarc("init").code == EXIT_OK
    assert ws.genarc("run", now=DAYS[0]).code == EXIT_OK

    target = ws.root / "restored"
    assert ws.genarc("restore", "data", "--target", str(target)).code == EXIT_OK
    root = restored_root(target, ws.src)
    for path, attributes in expected.items():
        assert xattrs_of(root / path.relative_to(ws.src)) == attributes, path
    assert xattrs_of(root)[("user.source-root")] == b"the source folder's own"
    assert snapshot(root) == snapshot(ws.src)

    # An attribute changed alone is metadata: recorded, no content uploaded.
    os.setxattr(doc, "user.comment", b"final")
    changed = report_of(ws.genarc("run", "--json", now=DAYS[1]))
    assert changed["metadata_changed"] == 1 and changed["volumes"] == 0
    listed = ws.genarc("ls", "data", "--json")
    assert listed.code == EXIT_OK

    # Restored without the right to set trusted.*: named once for the kind, everything else set, exit 0.
    target = ws.root / "restored-unprivileged"
    with without_sys_admin():
        result = ws.genarc("restore", "data", "--target", str(target))
    assert result.code == EXIT_OK, result.err
    lost = [line for line in result.err.splitlines() if "trusted.* attributes" in line]
    assert len(lost) == 1 and "2 entries" in lost[0], result.err
    root = restored_root(target, ws.src)
    assert xattrs_of(root / "doc.txt") == {k: v for k, v in xattrs_of(doc).items() if not k.startswith("trusted.")}
    assert xattrs_of(root / "folder") == expected[folder]


def test_a_sparse_file_is_restored_sparse(workspace):
    ws = workspace
    sparse = ws.src / "disk.img"
    with open(sparse, "wb") as fh:
        fh.truncate(256 * 1024 * 1024)  # 256 MiB apparent
        for offset in (0, 100 * 1024 * 1024 + 12345, 256 * 1024 * 1024 - 70_000):  # data, holes between
            fh.seek(offset)
            fh.write(os.urandom(70_000))
    on_disk = sparse.stat().st_blocks * 512
    if on_disk > 8 * 1024 * 1024:
        import pytest

        pytest.skip("this file system does not keep holes")
    ws.write_config(volume_size="64MiB")
    assert ws.genarc("init").code == EXIT_OK
    assert ws.genarc("run", now=DAYS[0]).code == EXIT_OK
    listed = {e["path"].rsplit("/", 1)[-1]: e for e in ws.genarc("ls", "data", "--json").json["entries"]}
    assert listed["disk.img"]["size"] == 256 * 1024 * 1024
    target = ws.root / "restored"
    assert ws.genarc("restore", "data", "--target", str(target)).code == EXIT_OK
    restored = restored_root(target, ws.src) / "disk.img"
    assert restored.stat().st_size == sparse.stat().st_size
    assert restored.read_bytes() == sparse.read_bytes()
    assert restored.stat().st_blocks * 512 <= on_disk + 2 * 64 * 1024 * 3  # holes stay holes (block rounding)


def test_a_second_name_is_never_linked_to_a_first_name_this_restore_did_not_write(workspace):
    ws = workspace
    first = ws.src / "a.txt"
    first.write_text("the real content\n" * 100)
    os.link(first, ws.src / "b.txt")
    ws.write_config()
    assert ws.genarc("init").code == EXIT_OK
    assert ws.genarc("run", now=DAYS[0]).code == EXIT_OK
    target = ws.root / "restored"
    assert ws.genarc("restore", "data", "--target", str(target)).code == EXIT_OK
    root = restored_root(target, ws.src)
    # The target now holds something else at the first name, that a restore cannot replace: a full folder.
    (root / "a.txt").unlink()
    (root / "a.txt").mkdir()
    (root / "a.txt" / "keep").write_text("not the backup's\n")
    (root / "b.txt").write_text("stale\n")
    result = ws.genarc("restore", "data", "--target", str(target), "--overwrite")
    assert result.code == 1 and "a.txt" in result.err  # the first name is named
    assert (root / "b.txt").read_text() == "the real content\n" * 100  # the second comes back on its own
    assert (root / "b.txt").stat().st_nlink == 1 and (root / "a.txt" / "keep").read_text() == "not the backup's\n"


def _backed_up_once(ws, text: str):
    """A job holding one file, ``fresh.txt``, backed up once; the file and the job's catalog (sqlite)."""
    import sqlite3

    fresh = ws.src / "fresh.txt"
    fresh.write_text(text)
    ws.write_config()
    assert ws.genarc("init").code == EXIT_OK
    assert ws.genarc("run", now=DAYS[0]).code == EXIT_OK
    return fresh, sqlite3.connect(next((ws.root / "state").rglob("catalog/*/data.sqlite")), isolation_level=None)


def _set_read_from(catalog, ns: int) -> None:
    """Say in the catalog that its tree was read at ``ns`` (the racy-timestamp guard's reference)."""
    catalog.execute("UPDATE meta SET value = ? WHERE key = 'read_from_ns'", (str(ns),))


def test_a_change_the_stat_cannot_show_is_caught_when_the_file_was_read_as_it_changed(workspace):
    """A file system whose clock ticks coarsely gives a write made just after genarc read a file, in the same tick,
    the very stat genarc recorded. A file whose ctime is that close to (or after) the start of the scan that read
    it is confirmed by content on the next run; an older one is trusted by its stat, as before.

    The same-tick write is simulated in the catalog (its recorded content no longer matches the file's), since a
    test cannot hold a kernel clock still."""
    from archiver.backup import RACY_MARGIN_NS

    ws = workspace
    fresh, catalog = _backed_up_once(ws, "the content genarc should have\n")

    def read_before_the_last_write() -> None:  # as if the run had read the file just before a same-tick write
        done = catalog.execute("UPDATE tree SET xxh3 = ?, kxxh3 = ? WHERE CAST(path AS TEXT) LIKE '%/fresh.txt'",
                               ("0" * 32, "0" * 32))
        assert done.rowcount == 1

    ctime = fresh.stat().st_ctime_ns
    read_from = catalog.execute("SELECT value FROM meta WHERE key = 'read_from_ns'").fetchone()
    assert read_from is not None and int(read_from[0]) >= ctime  # the scan started after the file was written
    # Just inside the margin (on a slow machine the run may start later than that: the boundary is set here).
    _set_read_from(catalog, ctime + RACY_MARGIN_NS - 10**6)
    read_before_the_last_write()
    second = report_of(ws.genarc("run", "--json", now=DAYS[1]))
    assert second["changed"] == 1 and second["bytes_packed"] == fresh.stat().st_size  # caught, and stored again
    target = ws.root / "second"
    assert ws.genarc("restore", "data", "--target", str(target), "--at", DAYS[1]).code == EXIT_OK
    assert (restored_root(target, ws.src) / "fresh.txt").read_text() == "the content genarc should have\n"

    # Read long after its last change, a file's stat is trusted: it is not read again (the forged hash stays).
    assert fresh.stat().st_ctime_ns == ctime
    _set_read_from(catalog, ctime + RACY_MARGIN_NS + 10**9)
    read_before_the_last_write()
    third = report_of(ws.genarc("run", "--json", now=DAYS[2]))
    assert (third["changed"], third["bytes_packed"]) == (0, 0)


def test_a_file_that_could_not_be_confirmed_is_read_again_until_it_is(workspace, monkeypatch):
    """A racy file (see above) whose confirming read fails keeps its previous version, named; the next runs must
    not then trust its stat, or the old bytes would stay in every point without a word."""
    import errno

    from archiver import changes
    from archiver.backup import RACY_MARGIN_NS

    ws = workspace
    fresh, catalog = _backed_up_once(ws, "VERSION-1 content\n")
    # The same-tick write just after run 1 read it: other bytes, the same size and mtime, and the ctime the catalog
    # holds (set in the catalog: a test cannot hold a kernel clock still).
    before = fresh.stat()
    fresh.write_text("VERSION-2 content\n")
    os.utime(fresh, ns=(before.st_atime_ns, before.st_mtime_ns))
    ctime = fresh.stat().st_ctime_ns
    assert catalog.execute("UPDATE tree SET ctime_ns = ? WHERE CAST(path AS TEXT) LIKE '%/fresh.txt'",
                           (ctime,)).rowcount == 1

    _set_read_from(catalog, ctime)  # racy: run 2 confirms it by content, but that read fails
    real = changes.xxh3_file

    def failing(path, *args, **kwargs):
        if path.endswith("/fresh.txt"):
            raise OSError(errno.EIO, "Input/output error")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(changes, "xxh3_file", failing)
    second = ws.genarc("run", "--json", now=DAYS[1])
    assert second.code == 1 and any("fresh.txt" in w and "previous version is kept" in w
                                    for w in report_of(second)["warnings"])
    monkeypatch.setattr(changes, "xxh3_file", real)
    _set_read_from(catalog, ctime + RACY_MARGIN_NS + 10**9)  # long after: only the missing confirmation sends it to be read
    third = ws.genarc("run", "--json", now=DAYS[2])
    assert third.code == EXIT_OK and report_of(third)["changed"] == 1
    target = ws.root / "third"
    assert ws.genarc("restore", "data", "--target", str(target), "--at", DAYS[2]).code == EXIT_OK
    assert (restored_root(target, ws.src) / "fresh.txt").read_text() == "VERSION-2 content\n"
