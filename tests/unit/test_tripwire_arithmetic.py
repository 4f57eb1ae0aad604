"""The tripwire's arithmetic: what a point changed (Measurer) and whether it trips (judge). Pure."""

from __future__ import annotations

from archiver.catalog import TreeTable, connect, path_key
from archiver.tripwire import Measurer, Profile, TripwireSettings, judge

SETTINGS = TripwireSettings()


def tree_of(files: dict[str, tuple[int, str, str]]) -> TreeTable:
    """path -> (size, xxh3, object key); objects "z" hold compressible content, "c" incompressible."""
    tree = TreeTable(connect(":memory:"), "tree")
    for path, (size, digest, obj) in files.items():
        tree.put({"path": path_key(path), "type": "file", "size": size, "xxh3": digest, "obj_key": obj,
                  "entry": path, "mode": 0o644, "mtime_ns": 1, "uid": 0, "gid": 0})
    return tree


DENSE = {"z": False, "c": True}
# One new object of each kind: compressible, incompressible as packed now (zstd, marked dense) and as packed
# before incompressible content went to zstd (COPY).
OBJECTS = [{"key": "new-z", "method": "zstd"}, {"key": "new-d", "method": "zstd", "dense": True},
           {"key": "new-c", "method": "copy"}]


def change(path: str, size: int, digest: str, dense: bool, op: str = "change", legacy: bool = False) -> dict:
    """An entry whose content went to a compressible or a dense volume (``legacy``: a COPY volume)."""
    return {"op": op, "path": path, "type": "file", "size": size, "xxh3": digest,
            "obj": (2 if legacy else 1) if dense else 0}


def test_encrypting_in_place_and_renaming_is_measured_as_such():
    before = tree_of({f"home/doc{i}.txt": (5000, f"h{i}", "z") for i in range(100)})
    m = Measurer(before, DENSE, OBJECTS, "zstd")
    for i in range(60):  # encrypted in place
        m.entry(change(f"home/doc{i}.txt", 5000, f"x{i}", dense=True))
    for i in range(60, 80):  # encrypted and renamed
        m.entry({"op": "remove", "path": f"home/doc{i}.txt"})
        m.entry(change(f"home/doc{i}.txt.locked", 5016, f"y{i}", dense=True, op="add", legacy=i % 2 == 0))
    p = m.finish()
    assert (p.files_before, p.changed, p.added, p.removed, p.renamed) == (100, 60, 20, 20, 20)
    assert p.turned_dense == 80 and p.dense_rewrites == 80 and p.same_size == 60
    verdict = judge(p, [], SETTINGS)
    assert verdict.suspicious and verdict.score >= 1 and len(verdict.reasons) == 3


def test_ordinary_changes_do_not_trip():
    before = tree_of({**{f"src/m{i}.c": (3000, f"h{i}", "z") for i in range(200)},
                      **{f"photos/p{i}.jpg": (90000, f"j{i}", "c") for i in range(50)}})
    m = Measurer(before, DENSE, OBJECTS, "zstd")
    for i in range(80):  # a branch switch: many sources change, still compressible
        m.entry(change(f"src/m{i}.c", 3100, f"n{i}", dense=False))
    for i in range(10):  # renamed, compressible: a .c to .cpp migration is no rename the tripwire counts
        m.entry({"op": "remove", "path": f"src/m{100 + i}.c"})
        m.entry(change(f"src/m{100 + i}.cpp", 3000, f"h{100 + i}", dense=False, op="add"))
    for i in range(300):  # a photo import: new incompressible files
        m.entry(change(f"photos/new{i}.jpg", 80000, f"q{i}", dense=True, op="add"))
    m.entry({"op": "remove", "path": "lib/libz.so.1.2.13"})  # not in the tree: ignored
    p = m.finish()
    assert p.turned_dense == 0 and p.renamed == 0 and p.added == 310
    verdict = judge(p, [], SETTINGS)
    assert not verdict.suspicious and verdict.score < 1


def test_version_bumps_are_not_renames():
    before = tree_of({"lib/libz.so.1.2.13": (90000, "a", "z")})
    m = Measurer(before, DENSE, OBJECTS, "zstd")
    m.entry({"op": "remove", "path": "lib/libz.so.1.2.13"})
    m.entry(change("lib/libz.so.1.2.14", 90000, "b", dense=True, op="add"))
    assert m.finish().renamed == 0


def test_renaming_extensions_of_the_same_bytes_is_no_rename():
    """A photo library renamed from .JPG to .jpg keeps every byte (and, within a generation, refers to what is
    stored): nothing was encrypted. The same renames with new incompressible content still count."""
    before = tree_of({f"photos/IMG{i}.JPG": (90000, f"j{i}", "c") for i in range(100)})
    m = Measurer(before, DENSE, OBJECTS, "zstd")
    for i in range(100):
        m.entry({"op": "remove", "path": f"photos/IMG{i}.JPG"})
        m.entry(change(f"photos/IMG{i}.jpg", 90000, f"j{i}", dense=True, op="add"))
    p = m.finish()
    assert (p.removed, p.added, p.renamed, p.dense_rewrites) == (100, 100, 0, 0)
    assert not judge(p, [], SETTINGS).suspicious
    m = Measurer(before, DENSE, OBJECTS, "zstd")
    for i in range(100):
        m.entry({"op": "remove", "path": f"photos/IMG{i}.JPG"})
        m.entry(change(f"photos/IMG{i}.jpg", 90000, f"enc{i}", dense=True, op="add"))
    p = m.finish()
    assert p.renamed == 100 and judge(p, [], SETTINGS).suspicious


def test_a_full_lists_everything_and_only_changed_content_counts():
    before = tree_of({f"d/f{i}": (1000, f"h{i}", "z") for i in range(50)})
    m = Measurer(before, DENSE, OBJECTS, "zstd")
    for i in range(50):
        same = i >= 30
        m.entry(change(f"d/f{i}", 1000, f"h{i}" if same else f"e{i}", dense=not same, op="add"))
    p = m.finish()
    assert (p.changed, p.added, p.turned_dense) == (30, 0, 30)


def test_a_full_measured_in_one_ordered_pass_gives_the_profile_of_one_query_per_path():
    import random

    rng = random.Random(5)
    before = tree_of({f"d/f{i:03d}": (1000, f"h{i}", "z" if i % 3 else "c") for i in range(0, 300, 2)})
    entries = [change(f"d/f{i:03d}", 1000 + (i % 4 == 0), f"h{i}" if i % 5 else f"e{i}", dense=i % 7 == 0, op="add")
               for i in range(1, 320) if rng.random() < 0.8]  # in path order; some paths new, some gone
    profiles = []
    for ordered in (False, True):
        m = Measurer(before, DENSE, OBJECTS, "zstd", ordered=ordered)
        for entry in entries:
            m.entry(entry)
        profiles.append(m.finish().as_dict())
    assert profiles[0] == profiles[1] and profiles[0]["changed"] and profiles[0]["added"]


def test_an_ordered_lookup_answers_as_a_query_whatever_the_order_asked():
    import random

    rng = random.Random(9)
    names = sorted({bytes(rng.choice(b"ab/\xff\x00") for _ in range(rng.randint(1, 4))) for _ in range(400)})
    tree = TreeTable(connect(":memory:"), "tree")
    for name in names[::2]:
        tree.put({"path": name, "type": "file", "size": len(name), "entry": "e", "mode": 0o644, "mtime_ns": 1,
                  "uid": 0, "gid": 0})
    asked = names + [b"", b"\xff" * 9] + rng.sample(names, 60) + names[:10]  # in order, past the end, then anywhere
    get = tree.ordered_get()
    for name in asked:
        found, expected = get(name), tree.get(name)
        assert (found is None) == (expected is None), name
        assert found is None or tuple(found) == tuple(expected)


def test_floors_and_history():
    quiet = Profile(files_before=10, changed=10, turned_dense=10, dense_rewrites=10)
    assert not judge(quiet, [], SETTINGS).suspicious  # fewer files than min_files never trip
    first = Profile(files_before=0, added=5000)
    assert judge(first, [], SETTINGS).score == 0  # a first run has nothing to compare with
    # A job whose normal day rewrites over half its files with incompressible data (say, a media cache)...
    busy = [Profile(files_before=1000, changed=550 + 5 * i, dense_rewrites=550 + 5 * i) for i in range(10)]
    today = Profile(files_before=1000, changed=600, dense_rewrites=600)
    assert judge(today, busy[:2], SETTINGS).suspicious  # too little history: the floor decides
    learned = judge(today, busy, SETTINGS)
    assert not learned.suspicious and learned.thresholds["dense_rewrites"] > 0.6
    # ...still trips when files that used to compress stop compressing.
    assert judge(Profile(files_before=1000, changed=400, turned_dense=200, dense_rewrites=400), busy, SETTINGS).suspicious


def test_profiles_read_back_only_when_well_formed():
    p = Profile(files_before=3, changed=1, examples=["a"])
    assert Profile.from_dict(p.as_dict()) == p
    assert Profile.from_dict({"files_before": -1}) is None
    assert Profile.from_dict({"files_before": "many"}) is None
    assert Profile.from_dict("junk") is None
