"""Files larger than a volume, stored in parts: the arithmetic, and what a manifest may claim about parts."""

from __future__ import annotations

import pytest
import xxhash

from archiver.catalog import TreeTable, connect
from archiver.errors import IntegrityError
from archiver.parts import PART_SIZE, part_spans, parts_digest

OBJECTS = [{"key": "v1", "sha256": "s1"}, {"key": "v2", "sha256": "s2"}]


def test_spans_cover_the_file_and_only_a_file_larger_than_a_volume_is_split():
    assert part_spans(64 << 20, 64 << 20) == []
    spans = part_spans((64 << 20) + 1, 64 << 20)
    assert spans[0] == (0, PART_SIZE) and spans[-1] == (64 << 20, 1) and len(spans) == 9
    assert sum(length for _, length in spans) == (64 << 20) + 1
    assert part_spans(10, 4) == [(0, 4), (4, 4), (8, 2)]  # a volume smaller than a part: parts of a volume


def test_the_hash_of_parts_never_equals_a_whole_file_hash():
    digest = parts_digest([(3, xxhash.xxh3_128(b"abc").hexdigest()), (3, xxhash.xxh3_128(b"def").hexdigest())])
    assert digest.startswith("p") and len(digest) == 33
    assert digest != parts_digest([(3, xxhash.xxh3_128(b"abd").hexdigest()), (3, xxhash.xxh3_128(b"def").hexdigest())])


def entry(parts: list[dict], **extra) -> dict:
    size = sum(p["size"] for p in parts if isinstance(p, dict) and type(p.get("size")) is int)
    body = {"op": "add", "path": "big.img", "type": "file", "size": size, "mtime_ns": 1, "mode": 0o644,
            "uid": 0, "gid": 0, "xxh3": parts_digest((p["size"], p["xxh3"]) for p in parts), "parts": parts}
    body.update(extra)
    return body


def part(obj: int, data: bytes, name: str) -> dict:
    return {"obj": obj, "entry": name, "size": len(data), "xxh3": xxh3(data)}


def xxh3(data: bytes) -> str:
    return xxhash.xxh3_128(data).hexdigest()


def test_well_formed_parts_replay_into_the_tree_and_a_meta_change_keeps_them():
    tree = TreeTable(connect(":memory:"), "tree")
    parts = [part(0, b"a" * 10, "big.img.p0"), part(1, b"b" * 4, "big.img.p1")]
    tree.apply_manifest([entry(parts)], OBJECTS, "Manifest m")
    row = tree.get(b"big.img")
    assert row["parts"] == 2 and row["obj_key"] is None and row["size"] == 14
    assert [(p["obj_key"], p["entry"], p["size"]) for p in tree.parts_of(b"big.img")] == [
        ("v1", "big.img.p0", 10), ("v2", "big.img.p1", 4)]
    meta = {k: v for k, v in entry(parts).items() if k != "parts"}
    tree.apply_manifest([{**meta, "op": "meta", "mode": 0o640}], OBJECTS, "m3")
    assert tree.get(b"big.img")["mode"] == 0o640 and len(tree.parts_of(b"big.img")) == 2
    tree.apply_manifest([{"op": "remove", "path": "big.img"}], OBJECTS, "m4")
    assert tree.parts_of(b"big.img") == []


@pytest.mark.parametrize("forged, why", [
    (lambda e: {**e, "size": e["size"] + 1}, "do not add up"),
    (lambda e: {**e, "xxh3": xxh3(b"whole")}, "do not give the file's hash"),
    (lambda e: {**e, "parts": e["parts"][:1], "size": 10, "xxh3": parts_digest([(10, e["parts"][0]["xxh3"])])},
     "not a list"),
    (lambda e: {**e, "obj": 0, "entry": "x"}, "not a list"),
    (lambda e: {**e, "parts": [{**e["parts"][0], "entry": "a\x00b"}, e["parts"][1]]}, "not a list"),
    (lambda e: {**e, "parts": [{**e["parts"][0], "size": 0}, e["parts"][1]]}, "not a list"),
    (lambda e: {**e, "parts": [{**e["parts"][0], "xxh3": "not hex"}, e["parts"][1]]}, "not a list"),
    (lambda e: {**e, "type": "dir"}, "not a list"),
])
def test_forged_parts_are_refused(forged, why):
    tree = TreeTable(connect(":memory:"), "tree")
    good = entry([part(0, b"a" * 10, "p0"), part(1, b"b" * 4, "p1")])
    with pytest.raises(IntegrityError, match=why):
        tree.apply_manifest([forged(good)], OBJECTS, "Manifest m")


def test_a_part_naming_an_object_the_manifest_does_not_list_is_refused():
    tree = TreeTable(connect(":memory:"), "tree")
    with pytest.raises(IntegrityError, match="does not list"):
        tree.apply_manifest([entry([part(0, b"a", "p0"), part(7, b"b", "p1")])], OBJECTS, "Manifest m")
