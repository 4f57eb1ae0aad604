"""Pay once: content the generation already stores is not uploaded again when it moves, is renamed or copied,
and files that mix incompressible and compressible blocks are compressed where they can be."""

from __future__ import annotations

import json
import os
import random
import shutil

from archiver.errors import EXIT_OK
from tests.conftest import restored_root, snapshot
from tests.scenario.test_roundtrip import assert_self_contained
from tests.scenario.test_stock_tools import PASSWORD, run_script

DAYS = [f"2027-03-{d:02d}T02:00:00Z" for d in range(1, 8)]


def text(rng: random.Random, size: int) -> bytes:
    words = [b"archive", b"volume", b"restore", b"generation", b"lock", b"bucket", b"manifest", b"\n"]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words) + b" "
    return bytes(out[:size])


def photos(folder, rng: random.Random, count: int) -> int:
    folder.mkdir(parents=True)
    total = 0
    for i in range(count):
        size = 20_000 + (i % 40) * 1000  # many files share a size: the hash, not the size, decides
        (folder / f"img{i:04d}.jpg").write_bytes(rng.randbytes(size))
        total += size
    return total


def manifest_entries(ws, generation: int, point: int) -> list[dict]:
    """The point's entries, as `genarc ls --json` cannot show them: from the catalog's view of the repository."""
    from archiver import config as config_mod, manifest
    from archiver.layout import parse_manifest_key
    from archiver.repository import Repository

    repo = Repository.open(config_mod.load(ws.config))
    keys = [k for k in (info.key for info in repo.store.list("data/manifests/"))
            if (n := parse_manifest_key(k)) and (n.gseq, n.pseq) == (generation, point)]
    assert len(keys) == 1
    loaded = manifest.load(repo, parse_manifest_key(keys[0]), ws.root / "m")
    return [loaded.header, *loaded.entries()]


def every_point_restores_exactly(ws, states: dict, objects_at_least: int) -> None:
    """Each point, by genarc's restore and by the recovery script, gives the tree it was taken of; every object
    a replayed tree names is of its own generation; verify --deep finds nothing."""
    for (gseq, pseq), state in states.items():
        target = ws.root / f"restore-{gseq}-{pseq}"
        done = ws.genarc("restore", "data", "--target", str(target), "--generation", str(gseq), "--point", str(pseq))
        assert done.code == EXIT_OK, done.err
        assert snapshot(restored_root(target, ws.src)) == state, (gseq, pseq)
        mine = ws.root / f"script-{gseq}-{pseq}"
        by_script = run_script(ws.repo, mine, "--generation", str(gseq), "--point", str(pseq))
        assert by_script.returncode == 0, by_script.stderr
        assert snapshot(restored_root(mine, ws.src)) == state, (gseq, pseq)
    assert assert_self_contained(ws.config) > objects_at_least
    deep = ws.genarc("verify", "--deep", "--json")
    assert deep.code == EXIT_OK, deep.out + deep.err


def test_a_moved_renamed_or_copied_file_refers_to_what_the_generation_stores(workspace):
    ws = workspace
    rng = random.Random(7)
    ws.write_config(password=PASSWORD, generation_days=3, keep_days=6, volume_size="1MiB", workers=2)
    assert ws.genarc("init").code == EXIT_OK
    folder_bytes = photos(ws.src / "photos", rng, 300)
    (ws.src / "notes.txt").write_bytes(text(rng, 50_000))
    full = ws.genarc("run", "--json", now=DAYS[0])
    assert full.code == EXIT_OK, full.err
    states = {(1, 1): snapshot(ws.src)}

    # Day 2: the folder is renamed, one photo is copied, notes.txt is moved, and a new photo has the size of
    # stored ones but its own content (it must be packed).
    (ws.src / "photos").rename(ws.src / "pictures")
    shutil.copyfile(ws.src / "pictures" / "img0001.jpg", ws.src / "copy-of-img0001.jpg")
    (ws.src / "archive").mkdir()
    (ws.src / "notes.txt").rename(ws.src / "archive" / "notes.txt")
    (ws.src / "pictures" / "new.jpg").write_bytes(rng.randbytes(20_000))
    result = ws.genarc("run", "--json", now=DAYS[1])
    assert result.code == EXIT_OK, result.err
    report = result.json["jobs"][0]["report"]
    states[(1, 2)] = snapshot(ws.src)
    assert (report["kind"], report["added"], report["removed"]) == ("incremental", 305, 302)  # with the folders
    assert (report["shared_files"], report["shared_bytes"]) == (302, folder_bytes + 50_000 + 21_000)
    assert report["bytes_packed"] == 20_000 and report["volumes"] == 1
    volume = report["bytes_uploaded"] - ws.repo.joinpath(report["manifest_key"]).stat().st_size
    assert volume < 0.01 * folder_bytes, volume  # one new photo, not the 300 that moved

    # The manifest lists the stored volumes it refers to, marked shared, and every object is of its generation.
    header, *entries = manifest_entries(ws, 1, 2)
    shared = [o for o in header["objects"] if o.get("shared")]
    assert shared and all(o["key"].split("/p")[0] == header["objects"][0]["key"].split("/p")[0] for o in shared)
    moved = next(e for e in entries if e["path"].endswith("pictures/img0001.jpg"))
    copied = next(e for e in entries if e["path"].endswith("copy-of-img0001.jpg"))
    assert header["objects"][moved["obj"]] == header["objects"][copied["obj"]] and moved["entry"] == copied["entry"]
    assert "photos/img0001.jpg" in moved["entry"]  # the name it was first stored under

    # Day 3: a moved file is edited; day 4 opens generation 2 with a synthetic full over shared content.
    with open(ws.src / "pictures" / "img0002.jpg", "ab") as fh:
        fh.write(b"edited")
    shutil.copyfile(ws.src / "pictures" / "img0003.jpg", ws.src / "archive" / "img0003.jpg")
    # The catalog is lost: rebuilt from the manifests, it knows the shared volumes as well as the others.
    shutil.rmtree(ws.root / "state" / "genarc" / "catalog")
    day3 = ws.genarc("run", now=DAYS[2])
    assert day3.code == EXIT_OK, day3.err
    assert "1 moved, renamed or copied file(s) (22.5 KiB) refer to what this generation already stores" in day3.out
    states[(1, 3)] = snapshot(ws.src)
    synthetic = ws.genarc("run", "--json", now=DAYS[3])
    assert synthetic.code == EXIT_OK, synthetic.err
    assert synthetic.json["jobs"][0]["report"]["kind_detail"] == "synthetic full"
    states[(2, 1)] = snapshot(ws.src)

    every_point_restores_exactly(ws, states, 300)


def test_a_file_that_changes_after_the_scan_is_packed_not_shared(workspace, monkeypatch):
    """Sharing rests on a hash read after the scan: a file that no longer matches its scan is packed as read."""
    from archiver import changes

    ws = workspace
    rng = random.Random(8)
    ws.write_config(password=PASSWORD, volume_size="1MiB")
    assert ws.genarc("init").code == EXIT_OK
    original = rng.randbytes(30_000)
    (ws.src / "a.bin").write_bytes(original)
    assert ws.genarc("run", now=DAYS[0]).code == EXIT_OK
    (ws.src / "a.bin").rename(ws.src / "b.bin")
    real = changes._hash_unchanged

    def rewritten_meanwhile(path, root, size, mtime_ns, *rest):
        with open(path, "r+b") as fh:  # same size, new bytes, after the scan saw it
            fh.write(b"X" * 100)
        os.utime(path, ns=(mtime_ns + 10**9, mtime_ns + 10**9))
        return real(path, root, size, mtime_ns, *rest)

    monkeypatch.setattr(changes, "_hash_unchanged", rewritten_meanwhile)
    result = ws.genarc("run", "--json", now=DAYS[1])
    assert result.code == EXIT_OK, result.err
    report = result.json["jobs"][0]["report"]
    assert report["shared_files"] == 0 and report["bytes_packed"] == 30_000
    target = ws.root / "r"
    assert ws.genarc("restore", "data", "--target", str(target)).code == EXIT_OK
    assert (restored_root(target, ws.src) / "b.bin").read_bytes() == b"X" * 100 + original[100:]


def test_mixed_content_is_compressed_where_it_can_be_and_still_counts_as_dense(workspace):
    """A file whose start and middle are random (the probe's samples) but half of whose blocks are text is
    compressed block by block; the tripwire still knows the probe found it incompressible."""
    ws = workspace
    rng = random.Random(9)
    ws.write_config(password=PASSWORD, volume_size="64MiB")
    assert ws.genarc("init").code == EXIT_OK
    blocks = [rng.randbytes(65536) if i % 2 == 0 else text(rng, 65536) for i in range(40)]
    (ws.src / "disk.img").write_bytes(b"".join(blocks))
    (ws.src / "readme.txt").write_bytes(text(rng, 200_000))
    result = ws.genarc("run", "--json", now=DAYS[0])
    assert result.code == EXIT_OK, result.err
    header = manifest_entries(ws, 1, 1)[0]
    by_dense = {bool(o.get("dense")): o for o in header["objects"]}
    assert sorted(by_dense) == [False, True] and {o["method"] for o in header["objects"]} == {"zstd"}
    assert by_dense[True]["size"] < 0.75 * 40 * 65536, by_dense[True]  # the text half compressed
    target = ws.root / "r"
    assert ws.genarc("restore", "data", "--target", str(target)).code == EXIT_OK
    assert (restored_root(target, ws.src) / "disk.img").read_bytes() == b"".join(blocks)
    assert json.loads(json.dumps(header["objects"]))  # plain JSON, as the recovery script reads it


def rewrite(path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)


def test_a_large_file_is_stored_in_parts_and_an_incremental_stores_only_the_changed_ones(workspace):
    ws = workspace
    rng = random.Random(10)
    ws.write_config(password=PASSWORD, generation_days=3, keep_days=6, volume_size="1MiB", workers=2)
    assert ws.genarc("init").code == EXIT_OK
    big = ws.src / "disk.img"
    size = 40 * 1024 * 1024 + 12345  # 41 parts, the last one short
    with open(big, "wb") as fh:
        for i in range(size // (1 << 20)):
            fh.write(rng.randbytes(1 << 20) if i % 3 else text(rng, 1 << 20))
        fh.write(rng.randbytes(size % (1 << 20)))
    (ws.src / "small.txt").write_bytes(text(rng, 5000))
    full = ws.genarc("run", "--json", now=DAYS[0])
    assert full.code == EXIT_OK, full.err
    states = {(1, 1): snapshot(ws.src)}
    volumes = [p for p in ws.repo.rglob("*.7z")]
    assert max(p.stat().st_size for p in volumes) < 1.1 * 1024 * 1024  # no volume holds the whole file
    header, *entries = manifest_entries(ws, 1, 1)
    entry = next(e for e in entries if e["path"].endswith("disk.img"))
    assert len(entry["parts"]) == 41 and sum(p["size"] for p in entry["parts"]) == size and "obj" not in entry

    # 1 % rewritten in place, in one run of bytes: only the parts it touches are stored again.
    rewrite(big, size // 2, rng.randbytes(size // 100))
    result = ws.genarc("run", "--json", now=DAYS[1])
    assert result.code == EXIT_OK, result.err
    report = result.json["jobs"][0]["report"]
    assert report["changed"] == 1 and report["bytes_packed"] <= 0.05 * size, report["bytes_packed"]
    states[(1, 2)] = snapshot(ws.src)

    # It is copied (the copy refers to the stored parts), and grows; then it shrinks below a volume.
    shutil.copyfile(big, ws.src / "copy.img")
    with open(big, "ab") as fh:
        fh.write(rng.randbytes(3 * 1024 * 1024))
    grown = ws.genarc("run", "--json", now=DAYS[2])
    assert grown.code == EXIT_OK, grown.err
    report = grown.json["jobs"][0]["report"]
    assert report["bytes_packed"] <= 5 * 1024 * 1024 and report["shared_files"] == 1, report
    states[(1, 3)] = snapshot(ws.src)
    synthetic = ws.genarc("run", "--json", now=DAYS[3])
    assert synthetic.code == EXIT_OK, synthetic.err
    assert synthetic.json["jobs"][0]["report"]["kind_detail"] == "synthetic full"
    states[(2, 1)] = snapshot(ws.src)
    os.truncate(big, 500_000)
    assert ws.genarc("run", now=DAYS[4]).code == EXIT_OK
    states[(2, 2)] = snapshot(ws.src)

    every_point_restores_exactly(ws, states, 40)


def colliding_pair() -> tuple[bytes, bytes]:
    """Two different 4 KiB blocks with the same plain xxh3-128: in two stripes, the low half of lane 0 is set to
    the default secret's, which zeroes the multiplier, and the high halves move by +1 and -1 (they cancel)."""
    import struct

    secret = bytes.fromhex(
        "b8fe6c3923a44bbe7c01812cf721ad1cded46de9839097db7240a4a4b7b3671f"
        "cb79e64eccc0e578825ad07dccff7221b8084674f743248ee03590e6813a264c")
    base = bytearray(random.Random(11).randbytes(4096))

    def lane(buf: bytearray, stripe: int, high: int) -> None:
        low = struct.unpack_from("<Q", secret, stripe * 8)[0] & 0xFFFFFFFF
        struct.pack_into("<Q", buf, stripe * 64, (high << 32) | low)

    a, b = bytearray(base), bytearray(base)
    lane(a, 0, 0x11111111), lane(a, 1, 0x22222222)
    lane(b, 0, 0x11111112), lane(b, 1, 0x22222221)
    return bytes(a), bytes(b)


def test_a_crafted_xxh3_collision_is_stored_not_shared(workspace):
    """Plain xxh3 collisions are easy to make; a move is matched on the repository-keyed hash as well."""
    import xxhash

    from archiver.pack import keyed_xxh3

    a, b = colliding_pair()
    assert a != b and xxhash.xxh3_128(a).hexdigest() == xxhash.xxh3_128(b).hexdigest()
    ka, kb = keyed_xxh3(12345), keyed_xxh3(12345)
    ka.update(a), kb.update(b)
    assert ka.hexdigest() != kb.hexdigest()
    ws = workspace
    ws.write_config(password=PASSWORD)
    assert ws.genarc("init").code == EXIT_OK
    (ws.src / "contract-v1.pdf").write_bytes(a)
    assert ws.genarc("run", now=DAYS[0]).code == EXIT_OK
    # The same path rewritten with its collision (same size, new mtime: confirmed by content) is stored.
    (ws.src / "contract-v1.pdf").write_bytes(b)
    report = ws.genarc("run", "--json", now=DAYS[1]).json["jobs"][0]["report"]
    assert report["changed"] == 1 and report["metadata_changed"] == 0 and report["bytes_packed"] == len(b)
    # A new path with the other one is stored too, not referred to what the generation holds.
    (ws.src / "inbox").mkdir()
    (ws.src / "inbox" / "contract-v2.pdf").write_bytes(a)
    again = ws.genarc("run", "--json", now=DAYS[2]).json["jobs"][0]["report"]
    assert again["shared_files"] == 0 and again["bytes_packed"] == len(a)
    target = ws.root / "r"
    assert ws.genarc("restore", "data", "--target", str(target)).code == EXIT_OK
    assert (restored_root(target, ws.src) / "inbox" / "contract-v2.pdf").read_bytes() == a
    assert (restored_root(target, ws.src) / "contract-v1.pdf").read_bytes() == b


def test_a_file_swapped_in_after_the_scan_keeps_neither_its_content_nor_the_others_owner(workspace, monkeypatch):
    """Between the scan and the hash, a stored secret is renamed over a new file of the same size and mtime:
    the point must not list the secret's bytes under the other file's mode (it is packed from what is there,
    with that file's own stat)."""
    from archiver import changes

    ws = workspace
    rng = random.Random(12)
    ws.write_config(password=PASSWORD)
    assert ws.genarc("init").code == EXIT_OK
    (ws.src / "private").mkdir()
    secret = ws.src / "private" / "secret.key"
    secret.write_bytes(rng.randbytes(3000))
    secret.chmod(0o600)
    assert ws.genarc("run", now=DAYS[0]).code == EXIT_OK
    (ws.src / "pub").mkdir()
    notes = ws.src / "pub" / "notes.bin"
    notes.write_bytes(rng.randbytes(3000))
    notes.chmod(0o644)
    stat = secret.stat()
    os.utime(notes, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    real = changes._hash_unchanged

    def swapped(path, *rest):
        if path.endswith("notes.bin") and secret.exists():
            os.rename(secret, notes)  # same size, same mtime: only the inode and ctime tell
        return real(path, *rest)

    monkeypatch.setattr(changes, "_hash_unchanged", swapped)
    result = ws.genarc("run", "--json", now=DAYS[1])
    assert result.json["jobs"][0]["report"]["shared_files"] == 0
    target = ws.root / "r"
    ws.genarc("restore", "data", "--target", str(target))
    restored = restored_root(target, ws.src) / "pub" / "notes.bin"
    assert not restored.exists() or (restored.stat().st_mode & 0o777) == 0o600  # stored as what was read


def test_a_moved_file_that_cannot_be_read_is_named_and_the_run_goes_on(workspace, monkeypatch):
    from archiver import changes

    ws = workspace
    ws.write_config(password=PASSWORD)
    assert ws.genarc("init").code == EXIT_OK
    (ws.src / "a.bin").write_bytes(random.Random(13).randbytes(20_000))
    (ws.src / "keep.txt").write_bytes(b"kept\n")
    assert ws.genarc("run", now=DAYS[0]).code == EXIT_OK
    (ws.src / "a.bin").rename(ws.src / "b.bin")
    (ws.src / "new.txt").write_bytes(b"new\n")

    def failing_read(fh, spans, seed):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(changes, "_read_digests", failing_read)
    result = ws.genarc("run", "--json", now=DAYS[1])
    assert result.code == EXIT_OK, result.err  # the packer then reads it (and names it if it fails there too)
    report = result.json["jobs"][0]["report"]
    assert report["shared_files"] == 0 and report["bytes_packed"] == 20_000 + 4


def test_the_clients_tripwire_sees_a_stored_payload_spread_over_text_files(workspace):
    """Text files overwritten with copies of one stored random blob: shared content, and dense. The client
    measures it as watch does, and trips."""
    ws = workspace
    rng = random.Random(14)
    ws.write_config(password=PASSWORD)
    assert ws.genarc("init").code == EXIT_OK
    blob = rng.randbytes(30_000)
    (ws.src / "blob.bin").write_bytes(blob)
    for i in range(40):
        (ws.src / f"doc{i:02d}.txt").write_bytes(text(rng, 30_000))
    assert ws.genarc("run", now=DAYS[0]).code == EXIT_OK
    for i in range(40):
        (ws.src / f"doc{i:02d}.txt").write_bytes(blob)
    result = ws.genarc("run", "--json", now=DAYS[1])
    report = result.json["jobs"][0]["report"]
    assert report["shared_files"] == 40
    profile = report["suspicion"]["profile"]
    assert profile["turned_dense"] == 40 and report["suspicion"]["suspicious"], report["suspicion"]


def test_a_file_in_parts_replaced_before_its_parts_are_read_keeps_its_previous_version(workspace, monkeypatch):
    """After the scan, another file is renamed over one stored in parts: its bytes are not stored as the scanned
    file's parts (with the scanned file's mode); the previous version is kept, named, and the next run stores it."""
    from archiver import backup

    ws = workspace
    rng = random.Random(15)
    ws.write_config(password=PASSWORD, volume_size="64KiB")
    assert ws.genarc("init").code == EXIT_OK
    big = ws.src / "big.img"
    first = rng.randbytes(300_000)
    big.write_bytes(first)
    assert ws.genarc("run", now=DAYS[0]).code == EXIT_OK
    second, intruder = rng.randbytes(300_000), rng.randbytes(300_000)
    big.write_bytes(second)
    (ws.root / "intruder").write_bytes(intruder)
    real = backup._pack_and_upload

    def swap_then_pack(run, *args, **kwargs):
        os.rename(big, ws.root / "moved-away")
        os.rename(ws.root / "intruder", big)
        return real(run, *args, **kwargs)

    monkeypatch.setattr(backup, "_pack_and_upload", swap_then_pack)
    result = ws.genarc("run", "--json", now=DAYS[1])
    assert result.code == 1 and "was replaced since it was scanned" in result.err, result.err
    target = ws.root / "r2"
    assert ws.genarc("restore", "data", "--target", str(target)).code == EXIT_OK
    assert (restored_root(target, ws.src) / "big.img").read_bytes() == first  # the previous version, not the intruder
    monkeypatch.setattr(backup, "_pack_and_upload", real)
    assert ws.genarc("run", now=DAYS[2]).code == EXIT_OK
    target = ws.root / "r3"
    assert ws.genarc("restore", "data", "--target", str(target)).code == EXIT_OK
    assert (restored_root(target, ws.src) / "big.img").read_bytes() == intruder  # what is there now
