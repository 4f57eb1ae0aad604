import io
import os
import threading
import time

import pytest
import py7zr

from archiver.config import JobConfig
from archiver.pack import PlannedFile, VolumePlan, entry_name, looks_incompressible, plan_volumes, write_volume
from archiver.scan import ExcludeMatcher, walk


def test_exclude_patterns():
    m = ExcludeMatcher(("*.tmp", "**/.cache/**", "/abs/skip", "build/**", "[ab]?.log"))
    assert m.excluded("/home/u/x.tmp", "/home/u")
    assert m.excluded("/home/u/.cache/deep/f", "/home/u")
    assert not m.excluded("/home/u/.cache", "/home/u")  # the directory stays, its contents go
    assert m.excluded("/abs/skip", "/abs")
    assert m.excluded("/src/build/a/b.o", "/src")
    assert not m.excluded("/src/sub/build/b.o", "/src")
    assert m.excluded("/x/a1.log", "/x") and not m.excluded("/x/c1.log", "/x")


def test_walk_skips_special_files_and_excluded_dirs(tmp_path):
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "f").write_text("x")
    (tmp_path / "skipme").mkdir()
    (tmp_path / "skipme" / "f").write_text("x")
    os.mkfifo(tmp_path / "fifo")
    notes = []
    job = JobConfig("j", (str(tmp_path),), ("skipme",))
    names = [e.name for e in walk(job, lambda level, msg: notes.append((level, msg)))]
    assert names == [str(tmp_path).lstrip("/")] + [str(tmp_path / p).lstrip("/") for p in ("keep", "keep/f")]
    assert notes and notes[0][0] == "note" and "fifo" in notes[0][1]


def test_entry_names_fall_back_for_awkward_paths():
    assert entry_name("/home/a/b.txt", 3) == "home/a/b.txt"
    assert entry_name("/home/new\nline", 3).startswith("_genarc/odd/")
    assert entry_name("/home/" + os.fsdecode(b"\xff\xfe"), 4).startswith("_genarc/odd/")
    assert entry_name("/home/back\\slash", 5).startswith("_genarc/odd/")


def test_probe_and_plan_split_incompressible_files(tmp_path):
    text = tmp_path / "text"
    text.write_bytes(b"hello world " * 50000)
    noise = tmp_path / "noise"
    noise.write_bytes(os.urandom(600000))
    assert not looks_incompressible(str(text), text.stat().st_size)
    assert looks_incompressible(str(noise), noise.stat().st_size)
    files = [PlannedFile(str(text), text.stat().st_size), PlannedFile(str(noise), noise.stat().st_size)]
    plans = list(plan_volumes(files, method="zstd", level=3, volume_size=10**9, max_files=100))
    # zstd decides per block, so it packs both streams; the incompressible one is marked dense.
    assert sorted((p.method, p.dense, [f.path for f in p.files]) for p in plans) == [
        ("zstd", False, [str(text)]), ("zstd", True, [str(noise)])]
    # LZMA2 would spend seconds a megabyte on random bytes: its dense stream is COPY.
    plans = list(plan_volumes(files, method="lzma2", level=1, volume_size=10**9, max_files=100))
    assert sorted((p.method, p.dense, [f.path for f in p.files]) for p in plans) == [
        ("copy", True, [str(noise)]), ("lzma2", False, [str(text)])]


def test_plan_caps_bytes_and_file_count(tmp_path):
    files = []
    for i in range(10):
        p = tmp_path / f"f{i}"
        p.write_bytes(b"a" * 1000)
        files.append(PlannedFile(str(p), 1000))
    plans = list(plan_volumes(files, method="zstd", level=3, volume_size=3500, max_files=100))
    assert [len(p.files) for p in plans] == [3, 3, 3, 1]
    plans = list(plan_volumes(files, method="zstd", level=3, volume_size=10**9, max_files=4))
    assert [len(p.files) for p in plans] == [4, 4, 2]


def test_a_file_changing_while_read_is_never_stored_torn(tmp_path):
    victim = tmp_path / "busy.log"
    victim.write_bytes(os.urandom(8 * 1024 * 1024))
    stop = threading.Event()

    def scribble():
        with open(victim, "r+b") as fh:
            while not stop.is_set():
                fh.seek(0)
                fh.write(os.urandom(4096))
                fh.flush()
                os.utime(victim)
                time.sleep(0.0005)

    writer = threading.Thread(target=scribble)
    writer.start()
    try:
        plan = VolumePlan(1, "copy", 0, [PlannedFile(str(victim), victim.stat().st_size)])
        result = write_volume(plan, str(tmp_path / "v.7z"), None)
    finally:
        stop.set()
        writer.join()
    assert result.files[0].status == "torn"
    assert "kept changing" in result.files[0].message


def test_volume_is_a_standard_encrypted_7z(tmp_path):
    f = tmp_path / "a.txt"
    f.write_bytes(b"content")
    plan = VolumePlan(1, "zstd", 3, [PlannedFile(str(f), 7)])
    result = write_volume(plan, str(tmp_path / "v.7z"), "pw")
    assert result.files[0].status == "ok"
    with py7zr.SevenZipFile(tmp_path / "v.7z", "r", password="pw") as archive:
        assert archive.needs_password()
        assert archive.getnames() == [str(f).lstrip("/")]
    factory = py7zr.io.BytesIOFactory(1 << 20)
    with py7zr.SevenZipFile(tmp_path / "v.7z", "r", password="pw") as archive:
        archive.extractall(path=tmp_path / "x", factory=factory)
    assert factory.get(str(tmp_path / "x" / str(f).lstrip("/"))).read() == b"content"
    assert result.sha256 and result.size == (tmp_path / "v.7z").stat().st_size


def test_a_file_turned_fifo_after_the_scan_never_blocks_the_run(tmp_path):
    """The scan saw a file; by the time it is read it is a FIFO that nobody writes to."""
    import signal

    from archiver.pack import xxh3_file

    fifo = tmp_path / "was-a-file"
    os.mkfifo(fifo)
    signal.alarm(20)  # a regression would hang here, not fail: make it fail
    try:
        assert not looks_incompressible(str(fifo), 1 << 20, str(tmp_path))
        with pytest.raises(OSError):
            xxh3_file(str(fifo), str(tmp_path))
        plan = VolumePlan(1, "copy", 0, [PlannedFile(str(fifo), 1 << 20, str(tmp_path))])
        result = write_volume(plan, str(tmp_path / "v.7z"), None)
    finally:
        signal.alarm(0)
    assert result.files[0].status == "unreadable" and "regular file" in result.files[0].message


def test_a_folder_turned_link_after_the_scan_is_not_followed(tmp_path):
    """src/u was a folder at scan time; now it links to a folder outside the source: nothing is read there."""
    src, elsewhere = tmp_path / "src", tmp_path / "elsewhere"
    src.mkdir()
    elsewhere.mkdir()
    (elsewhere / "secret").write_bytes(b"outside the source")
    (src / "u").symlink_to(elsewhere)
    plan = VolumePlan(1, "copy", 0, [PlannedFile(str(src / "u" / "secret"), 18, str(src))])
    result = write_volume(plan, str(tmp_path / "v.7z"), None)
    assert result.files[0].status == "unreadable" and "no longer a folder" in result.files[0].message


def test_a_folder_swapped_for_a_link_during_the_scan_is_not_followed(tmp_path):
    """The scan has listed z as a folder; before it descends, z becomes a link out of the source."""
    src, outside = tmp_path / "src", tmp_path / "outside"
    (src / "a").mkdir(parents=True)
    (src / "z").mkdir()
    (outside / "secretdir").mkdir(parents=True)
    (outside / "secret.txt").write_text("outside\n")
    notes: list[tuple[str, str]] = []
    job = JobConfig("j", (str(src),))
    seen = []
    for entry in walk(job, lambda level, message: notes.append((level, message))):
        seen.append(entry.path)
        if entry.path == str(src / "z"):
            (src / "z").rmdir()
            (src / "z").symlink_to(outside)
    assert not [p for p in seen if p.startswith(str(src / "z") + "/")]
    assert any(level == "warning" and str(src / "z") in message for level, message in notes)


def test_holes_are_read_as_zeros_without_reading_them(tmp_path):
    from archiver.pack import _hole_or_data

    path = tmp_path / "sparse"
    with open(path, "wb") as fh:
        fh.truncate(4 * 1024 * 1024)
        fh.seek(1024 * 1024)
        fh.write(b"data" * 1024)
    expected = path.read_bytes()
    fd = os.open(path, os.O_RDONLY)
    try:
        out, position = bytearray(), 0
        while position < len(expected):
            chunk = _hole_or_data(fd, position, 300_000)
            assert chunk
            out += chunk
            position += len(chunk)
    finally:
        os.close(fd)
    assert bytes(out) == expected


def test_a_scanned_row_is_what_the_tree_table_stores_for_the_entry(tmp_path):
    """The scan builds each row directly (it runs once per file); it must equal the general conversion, with
    numbers past sqlite's range folded, odd link targets and attributes kept, and the op undecided."""
    from archiver.catalog import TREE_COLUMNS, TreeTable
    from archiver.changes import SCANNED_COLUMNS, Op, _values_from_entry
    from archiver.scan import Entry

    entries = [
        Entry("/src/a file", "file", 0, 2**64 + 5, 0o644, 1000, 1000, 2**64 - 1, 2**63 + 7, None, -5, 2, '{"user.k":"dg=="}'),
        Entry("/src/link", "symlink", 0, 1, 0o777, 0, 0, 1, 2, os.fsdecode(b"to-\xff"), 3),
        Entry("/src/" + os.fsdecode(b"\xfe"), "dir", 0, -(2**70), 0o755, 1, 1, 1, 3, None, 4),
    ]
    for entry in entries:
        row = {"path": os.fsencode(entry.name), "type": entry.type, "size": entry.size, "mtime_ns": entry.mtime_ns,
               "mode": entry.mode, "uid": entry.uid, "gid": entry.gid, "dev": entry.dev, "ino": entry.ino,
               "target": entry.target, "xxh3": None if entry.size or entry.type != "file" else _values_from_entry(entry)[10],
               "ctime_ns": entry.ctime_ns, "xattrs": entry.xattrs, "op": Op.UNDECIDED.value}
        stored = dict(zip(TREE_COLUMNS, TreeTable.values_of(row)))
        assert _values_from_entry(entry) == [stored.pop(c) for c in SCANNED_COLUMNS]
        assert set(stored.values()) == {None}  # what a scan leaves NULL, classification fills
    assert _values_from_entry(entries[0])[SCANNED_COLUMNS.index("xxh3")] is not None  # an empty file's hash


def test_py7zr_asks_for_the_memory_available_at_most_once_a_second(monkeypatch):
    """py7zr sizes each entry's decompression chunk from the memory available, asking psutil per entry; genarc
    lets it ask at most once a second (a restore of 14,000 files spent a second there)."""
    import psutil
    import py7zr.py7zr

    from archiver import sevenzip

    assert sevenzip.CHECKED_VERSION and getattr(py7zr.py7zr.get_memory_limit, "throttled", False)
    asked = []
    real = psutil.virtual_memory
    monkeypatch.setattr(psutil, "virtual_memory", lambda: asked.append(1) or real())
    limits = {py7zr.py7zr.get_memory_limit() for _ in range(5000)}
    assert len(asked) <= 1 and len(limits) == 1
    assert 1_000_000 <= limits.pop() <= 128_000_000  # py7zr's own bounds


def test_py7zr_checks_crcs_without_slicing_and_gets_the_same_values(tmp_path):
    """py7zr's CRC helper copies every MiB it checks into a slice; genarc's gives zlib the whole buffer. Same
    values for every length around the slice size, any starting value and any kind of buffer, and a corrupt
    entry is still caught by its CRC."""
    import random
    import zlib

    import py7zr.archiveinfo
    import py7zr.compressor
    import py7zr.helpers
    import py7zr.py7zr

    from archiver import sevenzip

    for module in (py7zr.helpers, py7zr.compressor, py7zr.archiveinfo, py7zr.py7zr):
        assert module.calculate_crc32 is sevenzip._crc32, module.__name__
    data = random.Random(7).randbytes(3 * (1 << 20) + 5)

    def sliced(buf, value=0, blocksize=1 << 20):  # py7zr 1.1.4's calculate_crc32
        for pos in range(0, max(len(buf), 1), blocksize):
            value = zlib.crc32(buf[pos:pos + blocksize], value)
        return value & 0xFFFFFFFF

    for length in (0, 1, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, len(data)):
        for value in (0, 1, 0xFFFFFFFF, 0x1234_5678):
            chunk = data[:length]
            expected = sliced(chunk, value)
            assert sevenzip._crc32(chunk, value) == expected
            assert sevenzip._crc32(bytearray(chunk), value) == expected
            assert sevenzip._crc32(memoryview(chunk), value) == expected
    # A volume still fails its CRC when an entry's bytes change after compression (COPY: stored as written).
    volume = tmp_path / "v.7z"
    with py7zr.SevenZipFile(volume, "w", filters=[{"id": py7zr.FILTER_COPY}]) as archive:
        archive.writestr(data, "big")
    raw = bytearray(volume.read_bytes())
    raw[32 + (2 << 20)] ^= 1  # a byte of the entry, past the 32-byte signature header
    volume.write_bytes(bytes(raw))
    with py7zr.SevenZipFile(volume, "r") as archive:
        assert archive.testzip() == "big"  # the entry whose CRC fails


def test_7z_aes_runs_in_openssl_and_gives_the_bytes_pycryptodomex_gives(tmp_path, monkeypatch):
    """py7zr's 7zAES cipher is OpenSSL's AES-CBC (several times pycryptodomex's speed): a volume written through
    it opens with pycryptodomex's CBC, and the other way round; 7zz opens it too when installed."""
    import shutil
    import subprocess

    import py7zr.compressor
    from Cryptodome.Cipher import AES

    from archiver import sevenzip

    assert getattr(py7zr.compressor.AES, "openssl", False)
    payload = {f"d/f{i}": os.urandom(i * 997) + b"text " * (i * 300) for i in range(12)}

    def write(path):
        with sevenzip.open_for_writing(path, "deflate", 0, "pw") as archive:  # a method stock 7zz reads
            for name, data in payload.items():
                archive.writestr(data, name)

    def read(path):
        out = tmp_path / f"{path.stem}-out"
        with py7zr.SevenZipFile(path, "r", password="pw") as archive:
            archive.extractall(out)
        return {f"d/{p.name}": p.read_bytes() for p in (out / "d").iterdir()}

    write(tmp_path / "openssl.7z")
    monkeypatch.setattr(py7zr.compressor, "AES", AES)  # pycryptodomex alone, as py7zr ships
    assert read(tmp_path / "openssl.7z") == payload
    write(tmp_path / "pycryptodomex.7z")
    monkeypatch.undo()
    assert read(tmp_path / "pycryptodomex.7z") == payload
    assert py7zr.compressor.AES.new(b"k" * 32, AES.MODE_ECB).encrypt(b"x" * 16) == \
        AES.new(b"k" * 32, AES.MODE_ECB).encrypt(b"x" * 16)  # other modes go to pycryptodomex
    with pytest.raises(ValueError):
        py7zr.compressor.AES.new(b"k" * 32, AES.MODE_CBC, b"i" * 16).encrypt(b"x" * 15)
    if shutil.which("7zz"):
        out = tmp_path / "7zz-out"
        subprocess.run(["7zz", "x", "-y", "-ppw", f"-o{out}", str(tmp_path / "openssl.7z")], check=True,
                       capture_output=True)
        assert {f"d/{p.name}": p.read_bytes() for p in (out / "d").iterdir()} == payload


def test_extraction_into_sinks_vets_entry_names_without_resolving_paths(tmp_path, monkeypatch):
    """Entries streamed into genarc's sinks are not resolved on disk (py7zr's realpath costs ~14 lstat calls an
    entry), but a name that climbs out or is absolute is still refused; a real extraction keeps py7zr's check."""
    import py7zr.exceptions

    from archiver import sevenzip

    def volume(name, entries):
        path = tmp_path / name
        with sevenzip.open_for_writing(path, "zstd", 3, "pw") as archive:
            for entry in entries:
                sevenzip.write_entry(archive, io.BytesIO(entry.encode()), entry)
        return path

    resolved = []
    real = os.path.realpath
    monkeypatch.setattr(os.path, "realpath", lambda *a, **k: resolved.append(a[0]) or real(*a, **k))
    good = volume("good.7z", ["a/b", "c"])
    sinks = sevenzip.extract_entries(good, "pw", ["a/b", "c"], tmp_path / "x", lambda entry: sevenzip.HashSink())
    assert {e: s.length for e, s in sinks.items()} == {"a/b": 3, "c": 1} and resolved == []
    for bad in ("../evil", "a/../../evil"):
        with pytest.raises(py7zr.exceptions.Bad7zFile):
            sevenzip.extract_entries(volume("bad.7z", [bad]), "pw", [bad], tmp_path / "x", lambda e: sevenzip.HashSink())
        (tmp_path / "bad.7z").unlink()
    with py7zr.SevenZipFile(good, "r", password="pw") as archive:
        archive.extractall(tmp_path / "real")
    assert resolved and (tmp_path / "real" / "a" / "b").read_bytes() == b"a/b"


def test_genarcs_writer_records_each_entry_as_py7zr_does(tmp_path):
    """genarc's writer makes each entry's record itself (no pathlib, one reading of the clock): the archive
    lists the same names, sizes and attributes as one py7zr writes, a name not in pathlib's form included,
    and reads back the same bytes."""
    from archiver import sevenzip

    names = ["a/b", "c", "d/e/f.txt", "g//h", "./i", "j/./k", "l/"]
    payload = {name: f"content of {name}".encode() * 7 for name in names}

    def listing(path):
        with py7zr.SevenZipFile(path, "r", password="pw") as archive:
            members = [(m.filename, m.uncompressed, m.is_directory, m.is_symlink, m.is_file) for m in archive.list()]
            attributes = [f.get("attributes") for f in archive.header.files_info.files]
            out = tmp_path / f"{path.stem}-out"
            archive.extractall(out)
        return members, attributes, {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    ours, theirs = tmp_path / "ours.7z", tmp_path / "theirs.7z"
    with sevenzip.open_for_writing(ours, "zstd", 3, "pw") as archive:
        assert type(archive) is not py7zr.SevenZipFile
        for name, data in payload.items():
            sevenzip.write_entry(archive, io.BytesIO(data), name)
    with py7zr.SevenZipFile(theirs, "w", filters=sevenzip.filters("zstd", 3, True), password="pw",
                            header_encryption=True) as archive:
        for name, data in payload.items():
            archive._writef(io.BytesIO(data), name)
    assert listing(ours) == listing(theirs)
    assert [m[0] for m in listing(ours)[0]] == ["a/b", "c", "d/e/f.txt", "g/h", "i", "j/k", "l"]


def test_the_7z_key_is_the_one_py7zr_derives():
    """genarc derives 7zAES's key with slices instead of an object per round; it must be py7zr's key, for any
    password length (records wider than a cache line), salt and number of rounds, including 7-Zip's 2^19."""
    import py7zr.helpers

    from archiver import sevenzip

    for password in ("", "p", "correct horse battery staple \u00fc", "x" * 300):
        for salt in (b"", b"\x01\x02salt"):
            for cycles in (0, 1, 8, 9, 14, 15, 16):
                encoded = password.encode("utf-16LE")
                assert sevenzip._key_rounds(encoded, cycles, salt) == \
                    py7zr.helpers.calculate_key(encoded, cycles, salt, "sha256"), (password, salt, cycles)
    assert sevenzip._key_rounds(b"p\x00w\x00", 19, b"") == py7zr.helpers.calculate_key(b"p\x00w\x00", 19, b"", "sha256")


def test_attributes_are_read_for_an_entry_whose_path_is_too_long_to_ask_by(tmp_path):
    # Most entries are asked for their attributes by path; one whose path passes PATH_MAX is asked through
    # its folder's descriptor instead, and keeps them.
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    depth = 0
    try:
        while depth * 201 < 4400:
            os.mkdir("d" * 200, dir_fd=fd)
            inner = os.open("d" * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd, depth = inner, depth + 1
        made = os.open("deep.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(made, b"deep")
        os.close(made)
        try:
            os.setxattr(f"/proc/self/fd/{fd}/deep.txt", "user.k", b"v")
        except OSError:
            pytest.skip("no user attributes on this file system")
    finally:
        os.close(fd)
    (tmp_path / "near.txt").write_text("near")
    os.setxattr(tmp_path / "near.txt", "user.k", b"w")
    job = JobConfig("j", (str(tmp_path),), ())
    found = {e.name.rsplit("/", 1)[-1]: e for e in walk(job, lambda level, msg: None) if e.type == "file"}
    assert len(os.fsencode(found["deep.txt"].path)) > 4096
    assert found["deep.txt"].xattrs is not None and "user.k" in found["deep.txt"].xattrs
    assert found["near.txt"].xattrs is not None and "user.k" in found["near.txt"].xattrs


def test_a_scan_in_another_process_records_what_a_scan_in_this_one_does(tmp_path):
    """With a core to spare the walk runs in a process of its own: the same rows, the same hard links, and the
    same warnings and notes, in the same order."""
    import sqlite3

    from archiver import processes
    from archiver.changes import ScanTable, scanned

    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for index in range(2500):  # more than a batch
        (src / "sub" / f"f{index:04d}").write_bytes(b"x" * (index % 7))
    (src / "a").write_bytes(b"one file, two names")
    os.link(src / "a", src / "sub" / "b")
    os.symlink("/etc/passwd", src / "outside")
    os.mkfifo(src / "fifo")
    (src / "far").write_bytes(b"from the future")
    os.utime(src / "far", ns=(0, 2**63 + 10**9))  # beyond what the catalog can hold
    (src / os.fsdecode(b"odd-\xff")).write_bytes(b"a name that is not UTF-8")
    job = JobConfig("j", (str(src),), ())

    def scan_with(found):
        conn = sqlite3.connect(":memory:", isolation_level=None)
        conn.row_factory = sqlite3.Row
        said: list[tuple[str, str]] = []
        table = ScanTable(conn)
        table.fill(found, lambda level, message: said.append((level, message)))
        return [tuple(row) for row in conn.execute("SELECT * FROM scan ORDER BY path")], said

    here = scan_with(scanned(job))
    there = scan_with(processes.generate_in_child(lambda: scanned(job)))
    assert there == here
    rows, said = here
    assert len(rows) == 2500 + 7  # the root, sub, its files, a, b, the link, far and the odd name
    linked = {os.fsdecode(row[0]).rsplit("/", 1)[-1]: row[18] for row in rows if row[18] is not None}
    assert list(linked) == ["b"] and linked["b"].endswith(b"/src/a")
    assert [level for level, _ in said] == ["warning", "note"]  # in walk order: far, then fifo
    assert "far has a modification time outside" in said[0][1] and "fifo" in said[1][1]


def test_a_folder_swapped_while_its_files_are_asked_by_path_loses_no_attributes(tmp_path, monkeypatch):
    """The walk asks a run of files for attributes by path and trusts a "none" only if the folder's path still
    leads to the folder it lists: swapped for a link to files with none while they are asked, the files are
    asked again through the folder's descriptor, and keep their own."""
    (tmp_path / "src" / "d").mkdir(parents=True)
    (tmp_path / "other" / "d").mkdir(parents=True)
    for i in range(300):  # more than one run of files
        (tmp_path / "src" / "d" / f"f{i:03}").write_text("mine")
        (tmp_path / "other" / "d" / f"f{i:03}").write_text("theirs")
    try:
        for i in (0, 299):
            os.setxattr(tmp_path / "src" / "d" / f"f{i:03}", "user.secret", b"keep-me")
    except OSError:
        pytest.skip("no user attributes on this file system")
    real, asked = os.listxattr, []

    def swapping(path, *args, **kwargs):
        if str(path).endswith("/src/d/f000") and not asked:
            asked.append(path)
            (tmp_path / "src" / "d").rename(tmp_path / "src" / "d.moved")
            (tmp_path / "src" / "d").symlink_to(tmp_path / "other" / "d")
        if str(path).endswith("/src/d/f256") and len(asked) == 1:  # the next run: swapped back meanwhile
            asked.append(path)
            (tmp_path / "src" / "d").unlink()
            (tmp_path / "src" / "d.moved").rename(tmp_path / "src" / "d")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "listxattr", swapping)
    said: list = []
    found = {e.name.rsplit("/", 1)[-1]: e for e in walk(JobConfig("j", (str(tmp_path / "src"),)),
                                                        lambda *a: said.append(a)) if e.type == "file"}
    assert len(asked) == 2 and len(found) == 300
    assert "user.secret" in found["f000"].xattrs and "user.secret" in found["f299"].xattrs
    assert [n for n, e in found.items() if e.xattrs] == ["f000", "f299"]
    assert said == []


def test_a_folder_swapped_after_the_stat_neither_lends_nor_loses_attributes(tmp_path):
    """The attributes of the entry stat'ed in its folder, whatever its path now leads to: a file with others,
    or one with none (its ACLs would be lost without a word)."""
    from archiver.scan import _xattrs_at

    (tmp_path / "src" / "d").mkdir(parents=True)
    (tmp_path / "other" / "d").mkdir(parents=True)
    (tmp_path / "src" / "d" / "f").write_text("mine")
    (tmp_path / "other" / "d" / "f").write_text("theirs")
    try:
        os.setxattr(tmp_path / "src" / "d" / "f", "user.secret", b"keep-me")
        os.setxattr(tmp_path / "other" / "d" / "f", "user.planted", b"lent")
    except OSError:
        pytest.skip("no user attributes on this file system")
    fd = os.open(tmp_path / "src" / "d", os.O_RDONLY | os.O_DIRECTORY)
    try:
        st = os.stat("f", dir_fd=fd, follow_symlinks=False)
        path, said = str(tmp_path / "src" / "d" / "f"), []
        (tmp_path / "src" / "d").rename(tmp_path / "src" / "d.moved")  # the folder swapped for a link
        (tmp_path / "src" / "d").symlink_to(tmp_path / "other" / "d")
        assert "user.secret" in _xattrs_at(fd, "f", st, path, lambda *a: said.append(a))
        os.removexattr(tmp_path / "other" / "d" / "f", "user.planted")
        assert "user.secret" in _xattrs_at(fd, "f", st, path, lambda *a: said.append(a))
        assert said == []
    finally:
        os.close(fd)
