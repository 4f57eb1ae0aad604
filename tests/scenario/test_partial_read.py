"""Reading part of a point: `ls PATH` and `restore --include` replay only the entries of the paths they need.

They must give exactly the rows a whole replay gives for those paths, whatever the names hold
(quotes, backslashes, newlines, bytes that are not UTF-8, a sibling that shares a prefix),
across a chain that adds, changes, moves and removes; they must still refuse what a whole
restore refuses; and they download the manifests and only the volumes the wanted files are in.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from archiver.errors import EXIT_INTEGRITY, EXIT_OK
from tests.scenario.test_hostile_restore import fingerprint, forged_repository, make_outside
from archiver.manifest import ManifestWriter
from tests.forge import row

NOW = ["2027-03-01T02:00:00Z", "2027-03-01T03:00:00Z", "2027-03-01T04:00:00Z"]
NAMES = ["a/x", "a/y/z", "ab", "a b", 'q"uote', "back\\slash", "new\nline", "été", "ünï/deep"]


def stored(ws) -> str:
    return str(ws.src).lstrip("/")


def whole_listing(ws, now: str) -> list[dict]:
    result = ws.genarc("ls", "data", "--json", now=now)
    assert result.code == EXIT_OK, result.err
    return result.json["entries"]


def under(entries: list[dict], prefix: str) -> list[dict]:
    """The entries at ``prefix`` or below it, by their exact names (base64 bytes where not UTF-8)."""
    raw = os.fsencode(prefix)

    def name(e: dict) -> bytes:
        return base64.b64decode(e["path_bytes"]) if "path_bytes" in e else e["path"].encode()
    return [e for e in entries if name(e) == raw or name(e).startswith(raw + b"/")]


@pytest.fixture
def chained(workspace):
    """Three points of one generation over tricky names: a full, then changes, a move and removals."""
    ws = workspace
    for index, name in enumerate(NAMES):
        path = ws.src / "d" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_bytes(os.urandom(3000) + name.encode() * (index + 1))
    os.mkdir(os.fsencode(ws.src / "d") + b"/raw\xff")
    Path(os.fsdecode(os.fsencode(ws.src / "d") + b"/raw\xff/inside")).write_text("not utf-8 above\n")
    ws.write_config(volume_size="16KiB")  # several volumes: a one-file restore must fetch only its own
    assert ws.genarc("init").code == EXIT_OK
    assert ws.genarc("run", now=NOW[0]).code == EXIT_OK
    (ws.src / "d" / "ab").write_bytes(b"changed\n")
    os.rename(ws.src / "d" / "a b", ws.src / "d" / "moved")
    (ws.src / "d" / "a" / "y" / "z").unlink()
    (ws.src / "d" / "a" / "y" / "new").write_text("added\n")
    assert ws.genarc("run", now=NOW[1]).code == EXIT_OK
    (ws.src / "d" / "été").unlink()
    assert ws.genarc("run", now=NOW[2]).code == EXIT_OK
    return ws


@pytest.mark.parametrize("rel", ["d/a", "d/ab", "d/a/y", "d/q\"uote", "d/back\\slash", "d/new\nline", "d/ünï",
                                 "d/été", "d/raw\udcff", "d/moved", "d"])
def test_ls_of_a_path_gives_the_rows_of_the_whole_listing(chained, rel):
    ws = chained
    prefix = f"{stored(ws)}/{rel}"
    expected = under(whole_listing(ws, NOW[2]), prefix)
    result = ws.genarc("ls", "data", prefix, "--json", now=NOW[2])
    if not expected:  # removed in the last point: named as nothing there
        assert result.code == 2 and "Nothing at" in result.err
        return
    assert result.code == EXIT_OK, result.err
    assert result.json["entries"] == expected


@pytest.mark.parametrize("block", [7, 300, 4096])
def test_a_manifest_read_in_small_blocks_gives_the_same_rows(chained, monkeypatch, block):
    """The partial read goes through a manifest in blocks cut at a line's end; lines longer than a block (7 bytes:
    every line) are carried whole, and a line is found once whatever block it falls in."""
    from archiver import manifest

    ws = chained
    expected = {rel: under(whole_listing(ws, NOW[2]), f"{stored(ws)}/{rel}") for rel in ("d", "d/a", "d/raw\udcff")}
    monkeypatch.setattr(manifest, "_BLOCK", block)
    for rel, rows in expected.items():
        result = ws.genarc("ls", "data", f"{stored(ws)}/{rel}", "--json", now=NOW[2])
        assert result.code == EXIT_OK and result.json["entries"] == rows and rows, rel


def test_an_older_point_is_read_in_part_as_it_was(chained):
    ws = chained
    prefix = f"{stored(ws)}/d/a"
    whole = ws.genarc("ls", "data", "--generation", "1", "--point", "1", "--json", now=NOW[2])
    part = ws.genarc("ls", "data", prefix, "--generation", "1", "--point", "1", "--json", now=NOW[2])
    assert part.code == EXIT_OK and part.json["entries"] == under(whole.json["entries"], prefix)
    assert any(e["path"].endswith("/a/y/z") for e in part.json["entries"])  # removed later, there then


def test_restoring_one_file_fetches_the_manifests_and_its_one_volume(chained):
    ws = chained
    one = f"{stored(ws)}/d/ab"
    target = ws.root / "r"
    result = ws.genarc("restore", "data", "--target", str(target), "--include", one, "--json", now=NOW[2])
    assert result.code == EXIT_OK, result.err
    assert (target / one).read_bytes() == b"changed\n"
    restored = [p for p in target.rglob("*") if p.is_file()]
    assert restored == [target / one]
    manifests = sorted((ws.repo / "data" / "manifests").rglob("*.m7z"))
    volumes = sorted((ws.repo / "data" / "volumes").rglob("*.7z"))
    assert len(manifests) == 3 and len(volumes) > 3
    read = result.json["report"]["read"]
    assert read["objects"] == 1 + len(manifests) + 1  # the repository's settings, the chain's manifests, one volume
    others = [p for p in ws.repo.rglob("*") if p.is_file() and p not in manifests + volumes]  # its settings
    fixed = sum(p.stat().st_size for p in manifests + others)
    sizes = [p.stat().st_size for p in volumes]
    assert fixed < read["bytes"] <= fixed + max(sizes) and read["bytes"] < fixed + sum(sizes) / 2


def test_a_glob_restore_in_part_matches_the_whole_restore(chained):
    ws = chained
    pattern = f"{stored(ws)}/d/a*"
    part, whole = ws.root / "part", ws.root / "whole"
    assert ws.genarc("restore", "data", "--target", str(part), "--include", pattern, now=NOW[2]).code == EXIT_OK
    assert ws.genarc("restore", "data", "--target", str(whole), now=NOW[2]).code == EXIT_OK
    wanted = {p.relative_to(whole) for p in whole.rglob("*")
              if str(p.relative_to(whole)).startswith(f"{stored(ws)}/d/a")}
    got = {p.relative_to(part) for p in part.rglob("*") if str(p.relative_to(part)).startswith(f"{stored(ws)}/d/")}
    assert got == wanted and any(p.name == "new" for p in got)
    for rel in got:
        if (whole / rel).is_file():
            assert (part / rel).read_bytes() == (whole / rel).read_bytes()


def test_a_partial_restore_still_refuses_a_path_under_a_forged_symlink(workspace):
    ws = workspace
    outside = make_outside(ws.root)
    repo, forger = forged_repository(ws)
    forger.point([row("f", "dir"), row("f/evil", "symlink", target=str(outside)),
                  row("f/evil/pwned.txt", content=b"planted\n"), row("f/fine.txt", content=b"fine\n")])
    before = fingerprint(outside)
    for pattern in ("f/evil/pwned.txt", "f/evil/*", "f/evil/pwned*"):
        result = ws.genarc("restore", "data", "--target", str(ws.root / "t"), "--include", pattern, now=NOW[0])
        assert result.code == EXIT_INTEGRITY and "f/evil/pwned.txt" in result.err and "symlink" in result.err
        assert fingerprint(outside) == before and "Traceback" not in result.err
    listed = ws.genarc("ls", "data", "f/evil", "--json", now=NOW[0])
    assert {e["path"] for e in listed.json["entries"]} == {"f/evil", "f/evil/pwned.txt"}


def test_a_forged_line_that_is_not_json_is_refused_where_it_is_read(workspace):
    """A manifest that passes its HMAC may still hold a line that is not an entry: a read that parses it is
    refused as forged; a read of another folder, which never parses it, goes on."""
    ws = workspace
    repo, forger = forged_repository(ws)
    original = ManifestWriter.add

    def add_with_junk(self, entry):
        original(self, entry)
        if entry.get("path") == "g/two.txt":
            self._fh.write('[{"path":"g/junk"}]\n')  # valid JSON, not an entry
            self.count += 1
    ws.monkeypatch.setattr(ManifestWriter, "add", add_with_junk)
    forger.point([row("f", "dir"), row("f/one.txt", content=b"one\n"), row("g", "dir"),
                  row("g/two.txt", content=b"two\n")])
    ws.monkeypatch.setattr(ManifestWriter, "add", original)
    bad = ws.genarc("ls", "data", "g", now=NOW[1])
    assert bad.code == EXIT_INTEGRITY and "malformed" in bad.err and "Traceback" not in bad.err
    whole = ws.genarc("restore", "data", "--target", str(ws.root / "w"), now=NOW[1])
    assert whole.code == EXIT_INTEGRITY and "malformed" in whole.err
    good = ws.genarc("restore", "data", "--target", str(ws.root / "t"), "--include", "f/one.txt", now=NOW[1])
    assert good.code == EXIT_OK, good.err
    assert (ws.root / "t" / "f" / "one.txt").read_bytes() == b"one\n"


def test_the_jobs_are_found_by_folder_without_listing_any_volume(chained):
    """`genarc list` with no job names the repository's jobs from its top-level folders and their manifests."""
    from archiver import config as config_mod
    from archiver.repository import Repository
    from archiver.store import StoreWrapper

    class Recording(StoreWrapper):
        def __init__(self, inner):
            super().__init__(inner)
            self.asked: list[tuple[str, str]] = []

        def list(self, prefix):
            self.asked.append(("list", prefix))
            return super().list(prefix)

        def list_versions(self, prefix):
            self.asked.append(("list_versions", prefix))
            return super().list_versions(prefix)

        def folders(self, prefix):
            self.asked.append(("folders", prefix))
            return super().folders(prefix)

    ws = chained
    (ws.repo / "junk" / "volumes").mkdir(parents=True)  # a folder with no manifest is not a job
    (ws.repo / "junk" / "volumes" / "v000001.7z").write_bytes(b"not genarc's")
    for odd in ("a b", "..x"):  # a manifest's name under a folder no job can be named: someone else's junk
        fake = ws.repo / odd / "manifests" / "g000001-20270301T020000Z"
        fake.mkdir(parents=True)
        (fake / "p000001-20270301T020000Z-0123456789abcdef.m7z").write_bytes(b"junk")
    repo = Repository.open(config_mod.load(ws.config))
    recorder = Recording(repo.store)
    repo.store = recorder
    assert repo.jobs() == ["data"]
    assert recorder.asked == [("folders", ""), ("list", "data/manifests/"), ("list", "junk/manifests/")]
    listed = ws.genarc("list", "--json", now=NOW[2])
    assert listed.code == EXIT_OK and [item["job"] for item in listed.json] == ["data"]

    many = [f"j{index:03d}" for index in range(101)]  # past a hundred folders, one listing of every key
    for name in many:
        (ws.repo / name).mkdir()
        (ws.repo / name / "x").write_bytes(b"junk")
    recorder.asked.clear()
    assert repo.jobs() == ["data"] and recorder.asked == [("folders", ""), ("list", "")]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_replay_takes_a_second_core_only_when_the_job_file_gives_it_one(chained, monkeypatch, workers):
    """`workers = 1` in the job file keeps a restore's (and verify's) tree digests on one core too."""
    from archiver import catalog, processes

    ws = chained
    ws.write_config(volume_size="16KiB", workers=workers)
    monkeypatch.setattr(catalog, "PARALLEL_DIGEST_ROWS", 1)  # every digest large enough to split
    started = []

    class Counted(processes.ChildSink):
        def __init__(self, *args, **kwargs):
            started.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(processes, "ChildSink", Counted)
    target = ws.root / f"r{workers}"
    done = ws.genarc("restore", "data", "--target", str(target), now=NOW[2])
    assert done.code == EXIT_OK, done.err
    assert (target / stored(ws) / "d" / "ab").read_bytes() == b"changed\n"
    assert bool(started) == (workers > 1)
