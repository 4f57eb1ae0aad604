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
