import json

import pytest

from archiver import manifest
from archiver.catalog import canonical_line

HOSTILE = [
    ["tmp/a\udcff\udc80b", "file", 300, "0" * 32, 0o644, -1, 0, 2**64 + 1, None],
    {"path": "\x00\x1f\x7f\\\"'\u2028\u00e9\U0001f600", "b": [True, False, None], "a": {"z": 1.5, "y": -0.0}},
    {3: "int keys", 2: "sorted as numbers", 10: [[], {}, ""]},
    [10**40, -(10**40), 1e-300, 3.141592653589793, float("inf"), float("nan")],
    "a string at the top \n\udcff",
    [],
    {},
]


@pytest.mark.parametrize("value", HOSTILE)
def test_manifest_json_is_the_standard_encoders_text(value):
    # The encoder built once gives exactly what json's canonical settings give: manifest lines and the tree
    # digest of every earlier point depend on it.
    want = json.dumps(value, ensure_ascii=True, sort_keys=True, separators=(",", ":"))
    assert manifest._DIRECT is not None  # CPython's C encoder is in use, so the comparison tests it
    assert manifest.dumps(value) == want


def test_a_digest_line_is_unchanged_for_hostile_names():
    row = {"path": "tmp/\udcff[\"],[\n", "type": "symlink", "size": 0, "xxh3": None, "mode": 0o777, "mtime_ns": 5,
           "uid": 1, "gid": 2, "target": b"../\xff", "link": None, "xattrs": '{"user.k": "dg=="}'}
    assert canonical_line(row) == (
        '["tmp/\\udcff[\\"],[\\n","symlink",0,null,511,5,1,2,"../\\udcff",{"xattrs":{"user.k":"dg=="}}]\n').encode()


def _hostile_tree(rows: int):
    import sqlite3

    from archiver.catalog import TreeTable

    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.row_factory = sqlite3.Row
    tree = TreeTable(conn, "tree")
    for index in range(rows):
        name = b"src/d%03d/" % (index % 97) + (b"f\xff%06d" % index if index % 5 == 0 else b"f%06d" % index)
        tree.put({"path": name, "type": ("file", "dir", "symlink")[index % 3], "size": index, "mtime_ns": -index,
                  "mode": 0o644, "uid": index % 2, "gid": None, "dev": 2**64 - 1, "ino": index,
                  "target": b"../\xfe" if index % 3 == 2 else None, "xxh3": "%032x" % index,
                  "link": b"src/d000/f000000" if index % 11 == 0 else None,
                  "xattrs": '{"user.k":"dg=="}' if index % 7 == 0 else None})
    return tree


def test_a_tree_digest_taken_on_two_cores_is_the_one_taken_on_one(monkeypatch):
    from archiver import catalog
    from archiver.catalog import TreeDigest

    tree = _hostile_tree(5000)
    one = tree.digest()
    assert tree.digest(parallel=True) == one  # below the threshold: on this core
    monkeypatch.setattr(catalog, "PARALLEL_DIGEST_ROWS", 10)
    assert tree.digest(parallel=True) == one  # half the lines made in another process
    with TreeDigest(parallel=True) as digest:  # how a full takes it: every line made in another process
        for row in tree.rows():
            digest.add(row)
        assert digest.hexdigest() == one
    tree.conn.execute("UPDATE tree SET xattrs = 'not json' WHERE path = (SELECT min(path) FROM tree)")
    with pytest.raises(json.JSONDecodeError):  # a failure over there is raised here
        tree.digest(parallel=True)
