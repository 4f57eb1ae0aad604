"""A forged manifest whose lines a partial read could miss, or that lists a path twice, is refused.

The partial read (``ls PATH``, a restore with ``--include``) finds a path's lines by their canonical spelling;
JSON allows the same record in other spellings (spaces, escapes, repeated keys), which it cannot see. Only
canonical lines are entries: every whole read (``verify``, a restore of everything, ``ls`` of the point,
a catalog rebuild) refuses a manifest with any other line, so a point that passes ``verify`` reads the same
whole or in part (docs/design.md, "Reading part of a point").
"""

from __future__ import annotations

import json

import pytest

from archiver.catalog import TreeTable, connect
from archiver.errors import EXIT_INTEGRITY, IntegrityError
from archiver.manifest import ManifestWriter
from tests.forge import row
from tests.scenario.test_hostile_restore import forged_repository

NOW = "2027-03-01T02:00:00Z"


def _forge_lines(ws, forger, rows, rewrite) -> None:
    """A point whose entry lines ``rewrite`` replaces (a list of the canonical lines in, the lines to write out)."""
    original = ManifestWriter.finish

    def finish(self, header, keys):
        self._fh.close()
        lines = rewrite(self.entries_path.read_text().splitlines())
        self.entries_path.write_text("".join(line + "\n" for line in lines))
        self.count = len(lines)
        return original(self, header, keys)

    ws.monkeypatch.setattr(ManifestWriter, "finish", finish)
    forger.point(rows)
    ws.monkeypatch.setattr(ManifestWriter, "finish", original)


def _readers_refuse(ws, partial: bool) -> None:
    readers = {
        "verify": ("verify", "data"),
        "whole restore": ("restore", "data", "--target", str(ws.root / "whole")),
        "ls of the point": ("ls", "data"),
    }
    if partial:
        readers.update({
            "one-file restore": ("restore", "data", "--target", str(ws.root / "part"), "--include", "f/a.txt"),
            "ls of the file": ("ls", "data", "f/a.txt"),
            "ls of its folder": ("ls", "data", "f"),
        })
    for name, argv in readers.items():
        result = ws.genarc(*argv, now=NOW)
        assert result.code == EXIT_INTEGRITY, (name, result.code, result.err)
        said = result.out + result.err
        assert "Traceback" not in said
        assert "not written by a genarc run" in said or "malformed" in said, (name, said)
    assert not (ws.root / "part" / "f" / "a.txt").exists() and not (ws.root / "whole" / "f" / "a.txt").exists()


def _spelled(record: dict, separators=(", ", ": ")) -> str:
    return json.dumps(record, sort_keys=True, separators=separators)


@pytest.mark.parametrize("spelling", ["spaces", "escaped path", "a repeated key", "a bogus op"])
def test_a_line_in_another_spelling_is_refused_by_every_reader(workspace, spelling):
    ws = workspace
    _, forger = forged_repository(ws)

    def rewrite(lines):
        by = {json.loads(line)["path"]: json.loads(line) for line in lines}
        good = dict(by["f/good.txt"], path="f/a.txt")
        evil = by["f/a.txt"]
        hidden = {
            "spaces": _spelled(evil),
            "escaped path": _spelled(evil, (",", ":")).replace('"f/a.txt"', '"f/\\u0061.txt"'),
            "a repeated key": '{"path":"f/b.txt",' + _spelled(evil, (",", ":"))[1:],
            "a bogus op": '{"op": "bogus", "path": "f/a.txt", "type": "nonsense"}',
        }[spelling]
        # What the search finds shows good content; what it misses removes it and adds the evil one.
        return [_spelled(by["f"], (",", ":")), _spelled(good, (",", ":")), _spelled(by["f/good.txt"], (",", ":")),
                '{"op": "remove", "path": "f/a.txt"}', hidden]

    _forge_lines(ws, forger, [row("f", "dir"), row("f/a.txt", content=b"EVIL\n"), row("f/good.txt", content=b"good\n")],
                 rewrite)
    _readers_refuse(ws, partial=False)


def test_a_path_a_full_lists_twice_is_refused_by_every_reader(workspace):
    ws = workspace
    _, forger = forged_repository(ws)

    def rewrite(lines):  # canonical lines: add, remove, and add again
        first = next(line for line in lines if json.loads(line)["path"] == "f/a.txt")
        return [first, '{"op":"remove","path":"f/a.txt"}', *lines]

    _forge_lines(ws, forger, [row("f", "dir"), row("f/a.txt", content=b"a\n")], rewrite)
    _readers_refuse(ws, partial=True)  # canonical lines: the search finds every one of them


def test_an_incremental_lists_each_path_once(tmp_path):
    tree = TreeTable(connect(tmp_path / "t.sqlite"), "tree")
    held = {"path": "a", "type": "dir", "size": 0, "mtime_ns": 1, "mode": 0o755, "uid": 0, "gid": 0}
    tree.apply_manifest([{**held, "op": "add"}], [], "m1", opening=True)
    for listed in ([{**held, "op": "meta", "mode": 0o700}, {**held, "op": "meta", "mode": 0o750}],
                   [{"op": "remove", "path": "a"}, {**held, "op": "add"}],
                   [{**held, "path": "b", "op": "add"}, {"op": "remove", "path": "b"}]):
        with pytest.raises(IntegrityError, match="lists [ab] twice"):
            tree.apply_manifest(listed, [], "m2")
    with pytest.raises(IntegrityError, match="opens a chain but lists a as meta"):
        tree.apply_manifest([{**held, "op": "meta"}], [], "m0", opening=True)
