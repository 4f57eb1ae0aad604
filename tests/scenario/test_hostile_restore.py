"""Restore is not a second way in: links in the target and forged points never make it write outside the target.

The attacker holds the keys and the password, so a forged point passes every HMAC check;
and anything may already sit in a restore target. Whatever either holds, nothing outside
the target changes, every refused entry is named, and the rest is restored.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from archiver import config as config_mod
from archiver.errors import EXIT_INTEGRITY, EXIT_OK, EXIT_PARTIAL
from archiver.repository import Repository
from tests.conftest import restored_root, snapshot
from tests.forge import Forger, row

NOW = "2027-03-01T02:00:00Z"


def fingerprint(root: Path) -> dict[str, tuple]:
    """Everything under ``root`` (links not followed): what must not change outside a target."""
    seen: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            st = path.lstat()
            if path.is_symlink():
                seen[str(path)] = ("link", os.readlink(path))
            elif path.is_dir():
                seen[str(path)] = ("dir", st.st_mode, st.st_mtime_ns)
            else:
                seen[str(path)] = ("file", st.st_mode, st.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return seen


def make_outside(root: Path) -> Path:
    """A directory the restore must never touch, holding files named like the ones restored."""
    outside = root / "outside"
    (outside / "b" / "c").mkdir(parents=True)
    for name in ("file.txt", "top.txt", "b/c/file.txt", "b/deep.txt", "pwned.txt", "escape.txt"):
        (outside / name).write_text("outside, must not change\n")
    os.chmod(outside / "b", 0o751)
    return outside


@pytest.fixture
def backed_up(workspace):
    ws = workspace
    (ws.src / "a" / "b" / "c").mkdir(parents=True)
    (ws.src / "a" / "top.txt").write_text("top\n")
    (ws.src / "a" / "b" / "deep.txt").write_text("deep\n")
    (ws.src / "a" / "b" / "c" / "file.txt").write_text("file\n" * 100)
    (ws.src / "a" / "b" / "c" / "link").symlink_to("file.txt")
    ws.write_config()
    assert ws.genarc("init").code == EXIT_OK
    assert ws.genarc("run", now=NOW).code == EXIT_OK
    return ws


def levels(ws) -> list[Path]:
    """Every level of the restored paths below the target, from the first component to the files."""
    rel = Path(str(ws.src).lstrip("/"))
    parts = [*rel.parts, "a", "b", "c", "file.txt"]
    return [Path(*parts[:i]) for i in range(1, len(parts) + 1)]


@pytest.mark.parametrize("overwrite", [False, True])
def test_links_already_in_the_target_never_lead_outside(backed_up, overwrite):
    ws = backed_up
    outside = make_outside(ws.root)
    for index, level in enumerate(levels(ws)):
        target = ws.root / f"target-{int(overwrite)}-{index}"
        (target / level).parent.mkdir(parents=True, exist_ok=True)
        link_to = outside / "file.txt" if level.name == "file.txt" else outside
        (target / level).symlink_to(link_to)
        before = fingerprint(outside)
        argv = ["restore", "data", "--target", str(target)] + (["--overwrite"] if overwrite else [])
        result = ws.genarc(*argv, now=NOW)
        assert fingerprint(outside) == before, f"restore wrote outside the target through {level}"
        assert "Traceback" not in result.err
        if overwrite:
            # --overwrite replaces the link itself (never what it points to) and restores the exact tree.
            assert result.code == EXIT_OK, result.err
            assert snapshot(restored_root(target, ws.src)) == snapshot(ws.src)
            assert not (target / level).is_symlink()
        elif level.name == "file.txt":
            assert result.code == 2 and "--overwrite" in result.err  # an existing file: nothing restored
        else:
            assert result.code == EXIT_PARTIAL, result.err
            assert "refused" in result.err and str(level) in result.err
            assert (target / level).is_symlink()


def forged_repository(ws, job: str = "data") -> tuple[Repository, Forger]:
    ws.write_config()
    assert ws.genarc("init").code == EXIT_OK
    repo = Repository.open(config_mod.load(ws.config))
    return repo, Forger(repo, job, datetime(2027, 3, 1, 2, tzinfo=timezone.utc))


def restore_and_verify(ws, outside: Path, *extra: str):
    before = fingerprint(outside)
    target = ws.root / "target"
    restored = ws.genarc("restore", "data", "--target", str(target), *extra, now=NOW)
    assert fingerprint(outside) == before, restored.err
    assert "Traceback" not in restored.err
    verified = ws.genarc("verify", "data", "--json", now=NOW)
    return restored, verified, target


def test_a_forged_link_then_child_writes_nothing_outside_and_verify_names_it(workspace):
    ws = workspace
    outside = make_outside(ws.root)
    repo, forger = forged_repository(ws)
    forger.point([row("f", "dir"), row("f/evil", "symlink", target=str(outside)),
                  row("f/evil/pwned.txt", content=b"planted\n"), row("f/fine.txt", content=b"fine\n")])
    restored, verified, target = restore_and_verify(ws, outside)
    assert restored.code == EXIT_INTEGRITY and "f/evil/pwned.txt" in restored.err
    assert (target / "f" / "fine.txt").read_bytes() == b"fine\n"  # the rest is restored
    assert os.readlink(target / "f" / "evil") == str(outside)
    assert verified.code == EXIT_INTEGRITY
    assert any("f/evil/pwned.txt" in p and "symlink" in p for p in verified.json["report"]["problems"])


@pytest.mark.parametrize("path", ["f/../../escape.txt", "/tmp/escape.txt", "f/./x", "f//x"])
def test_a_forged_path_that_climbs_or_is_absolute_is_refused_and_named(workspace, path):
    ws = workspace
    outside = make_outside(ws.root)
    repo, forger = forged_repository(ws)
    forger.point([row("f", "dir"), row(path, content=b"escape\n"), row("f/fine.txt", content=b"fine\n")])
    restored, verified, target = restore_and_verify(ws, outside)
    assert restored.code == EXIT_INTEGRITY and path in restored.err
    assert (target / "f" / "fine.txt").read_bytes() == b"fine\n"
    assert not (ws.root / "escape.txt").exists() and not Path("/tmp/escape.txt").exists()
    assert verified.code == EXIT_INTEGRITY
    assert any(path in p for p in verified.json["report"]["problems"])


def test_a_forged_point_listing_a_path_twice_is_refused_whole(workspace):
    ws = workspace
    outside = make_outside(ws.root)
    repo, forger = forged_repository(ws)
    forger.point([row("f", "dir"), row("f/twice", content=b"one\n"), row("f/twice", "symlink", target=str(outside))])
    restored, verified, target = restore_and_verify(ws, outside)
    assert restored.code == EXIT_INTEGRITY and "f/twice" in restored.err
    assert not (target / "f" / "twice").exists()
    assert verified.code == EXIT_INTEGRITY
    assert any("f/twice" in p for p in verified.json["report"]["problems"])


def test_a_directory_replaced_by_a_link_between_two_points(workspace):
    ws = workspace
    outside = make_outside(ws.root)
    repo, forger = forged_repository(ws)
    dir_row, file_row = row("d", "dir"), row("d/pwned.txt", content=b"through the link\n")
    forger.point([dir_row, file_row])
    link_row = row("d", "symlink", target=str(outside))
    forger.point([link_row, file_row], listed=[(link_row, "change")], full=False)
    restored, verified, target = restore_and_verify(ws, outside)
    assert restored.code == EXIT_INTEGRITY and "d/pwned.txt" in restored.err
    assert verified.code == EXIT_INTEGRITY
    assert any("d/pwned.txt" in p for p in verified.json["report"]["problems"])
    # The honest first point still restores.
    first = ws.genarc("restore", "data", "--target", str(ws.root / "first"), "--point", "1", now=NOW)
    assert first.code == EXIT_OK and (ws.root / "first" / "d" / "pwned.txt").read_bytes() == b"through the link\n"


def test_overwrite_restores_a_volume_spread_over_many_folders(workspace):
    """More folders in one volume than the target keeps open: every file is replaced, nothing left behind."""
    ws = workspace
    for i in range(90):
        (ws.src / f"dir{i:02d}").mkdir()
        (ws.src / f"dir{i:02d}" / "f.txt").write_text(f"file {i}\n")
    ws.write_config(volume_size="16MiB")
    assert ws.genarc("init").code == EXIT_OK
    assert ws.genarc("run", now=NOW).code == EXIT_OK
    target = ws.root / "target"
    assert ws.genarc("restore", "data", "--target", str(target), now=NOW).code == EXIT_OK
    for i in range(90):
        (restored_root(target, ws.src) / f"dir{i:02d}" / "f.txt").write_text("stale\n")
    again = ws.genarc("restore", "data", "--target", str(target), "--overwrite", now=NOW)
    assert again.code == EXIT_OK, again.err
    assert snapshot(restored_root(target, ws.src)) == snapshot(ws.src)
    assert not [p for p in target.rglob("*") if ".genarc-restore-" in p.name]


def test_restore_keeps_few_files_open(workspace):
    """A volume of 1500 files restores under a 256-descriptor limit: each file is closed once written."""
    import subprocess
    import sys

    ws = workspace
    for i in range(1500):
        (ws.src / f"f{i:04d}.txt").write_text(f"{i}\n")
    ws.write_config(volume_size="16MiB", workers=1)
    assert ws.genarc("init").code == EXIT_OK
    assert ws.genarc("run", now=NOW).code == EXIT_OK
    code = ("import resource, sys; from archiver.cli import main; "
            "resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1])); "
            "sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "--config", str(ws.config), "restore", "data", "--target",
                           str(ws.root / "target")], capture_output=True, text=True,
                          env={**os.environ, "GENARC_NOW": NOW})
    assert done.returncode == EXIT_OK, done.stderr
    assert snapshot(restored_root(ws.root / "target", ws.src)) == snapshot(ws.src)


@pytest.mark.parametrize("damage", ["uid without gid", "lone surrogate path", "lone surrogate target",
                                    "object without entry", "negative object"])
def test_malformed_forged_entries_are_named_never_a_crash(workspace, damage):
    ws = workspace
    outside = make_outside(ws.root)
    repo, forger = forged_repository(ws)
    rows = [row("f", "dir"), row("f/fine.txt", content=b"fine\n")]
    bad = row("f/bad.txt", "symlink", target="x") if "target" in damage else row("f/bad.txt", content=b"bad\n")
    rows.append(bad)
    forger.point(rows)  # an honest point 1 ...
    import archiver.manifest as manifest_mod

    real = manifest_mod.entry_of

    def damaged(row_, path, op, index, *parts):
        entry = real(row_, path, op, index, *parts)
        if path != "f/bad.txt":
            return entry
        if damage == "uid without gid":
            entry["gid"] = None
        elif damage == "lone surrogate path":
            entry["path"] = "f/\ud800"
        elif damage == "lone surrogate target":
            entry["target"] = "\ud800"
        elif damage == "object without entry":
            entry.pop("entry", None)
        else:
            entry["obj"] = -1
        return entry

    import archiver.point as point_mod

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(point_mod, "entry_of", damaged)
        forger.generation = 2
        forger.point([dict(r) for r in rows])  # ... and a forged point 2, a new generation
    restored, verified, target = restore_and_verify(ws, outside)
    assert restored.code == EXIT_INTEGRITY and "malformed" in restored.err
    assert verified.code == EXIT_INTEGRITY
    assert any("malformed" in p for p in verified.json["report"]["problems"])
    older = ws.genarc("restore", "data", "--target", str(ws.root / "older"), "--generation", "1", now=NOW)
    assert older.code == EXIT_OK
    ws.write_config()
    assert ws.genarc("run", now="2027-03-02T02:00:00Z").code != 70  # the next run is not stopped either


def test_paths_sharing_one_entry_and_a_missing_entry(workspace):
    ws = workspace
    outside = make_outside(ws.root)
    repo, forger = forged_repository(ws)
    one, two, gone = row("one.txt", content=b"same\n"), row("two.txt", content=b"same\n"), row("gone.txt",
                                                                                              content=b"gone\n")
    import archiver.point as point_mod

    real = point_mod.entry_of

    def share(row_, path, op, index, *parts):
        entry = real(row_, path, op, index, *parts)
        if path == "two.txt":
            entry["entry"] = real(one, "one.txt", op, index)["entry"]
        if path == "gone.txt":
            entry["entry"] = "no-such-entry"
        return entry

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(point_mod, "entry_of", share)
        forger.point([one, two, gone])
    restored, verified, target = restore_and_verify(ws, outside)
    assert (target / "one.txt").read_bytes() == b"same\n" and (target / "two.txt").read_bytes() == b"same\n"
    assert restored.code == EXIT_INTEGRITY and "gone.txt" in restored.err and "missing" in restored.err
    assert not (target / "gone.txt").exists()


def test_every_entry_the_target_blocks_is_named_and_it_is_not_the_points_fault(backed_up):
    from tests.conftest import unprivileged

    ws = backed_up
    target = ws.root / "target"
    deep = target / str(ws.src).lstrip("/") / "a"
    deep.mkdir(parents=True)
    (deep / "b").write_text("a file where a folder goes\n")
    os.chmod(deep, 0o555)  # a folder the restore may not write into
    with unprivileged():
        result = ws.genarc("restore", "data", "--target", str(target), now=NOW)
    os.chmod(deep, 0o755)
    assert result.code == EXIT_PARTIAL, result.err
    for name in ("a/b/deep.txt", "a/b/c/file.txt", "a/top.txt"):
        assert name in result.err, name


def forge_with(ws, patch_target: str, replace) -> tuple[Path, Forger]:
    """A forged point whose manifest is damaged by ``replace`` wrapped around archiver.point.<patch_target>."""
    import archiver.point as point_mod

    outside = make_outside(ws.root)
    repo, forger = forged_repository(ws)
    real = getattr(point_mod, patch_target)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(point_mod, patch_target, lambda *a, **k: replace(real(*a, **k)))
        forger.point([row("f", "dir"), row("f/x.txt", content=b"x\n")])
    return outside, forger


@pytest.mark.parametrize("damage", ["entry line not an object", "tree not an object", "parent not an object",
                                    "object key with NUL", "object key too long", "object of another generation"])
def test_hostile_manifest_shapes_are_integrity_errors_everywhere(workspace, damage):
    ws = workspace

    def entry_damage(writer):
        add = writer.add
        writer.add = lambda entry: add([1] if entry.get("path") == "f/x.txt" else entry)
        return writer

    def header_damage(header):
        if damage == "tree not an object":
            header["tree"] = [1]
        elif damage == "parent not an object":
            header["parent"] = "x"
        elif damage == "object key with NUL":
            header["objects"][0]["key"] += "\x00"
        elif damage == "object key too long":
            header["objects"][0]["key"] = header["objects"][0]["key"][:-9] + "v" * 300 + ".7z"
        else:
            header["objects"][0]["key"] = header["objects"][0]["key"].replace("g000001", "g000009")
        return header

    if damage == "entry line not an object":
        outside, _ = forge_with(ws, "ManifestWriter", entry_damage)
    else:
        outside, _ = forge_with(ws, "build_header", header_damage)
    restored, verified, target = restore_and_verify(ws, outside)
    assert restored.code == EXIT_INTEGRITY, restored.err
    assert verified.code == EXIT_INTEGRITY and "Traceback" not in verified.err
    listed = ws.genarc("ls", "data", now=NOW)
    deep = ws.genarc("verify", "data", "--deep", now=NOW)
    assert listed.code == EXIT_INTEGRITY and deep.code == EXIT_INTEGRITY
    assert not target.exists() or not any(target.rglob("x.txt"))


def test_a_forged_entry_larger_than_recorded_cannot_fill_the_disk(workspace):
    ws = workspace
    outside = make_outside(ws.root)
    repo, forger = forged_repository(ws)
    bomb = row("f/bomb", content=b"small")
    bomb["content"] = bytes(64 * 1024 * 1024)  # the volume holds 64 MiB of zeros; the manifest says 5 bytes
    forger.point([row("f", "dir"), bomb, row("f/fine.txt", content=b"fine\n")])
    restored, verified, target = restore_and_verify(ws, outside)
    assert restored.code == EXIT_INTEGRITY and "more bytes than recorded" in restored.err
    assert sum(p.stat().st_size for p in target.rglob("*") if p.is_file()) < 1024 * 1024
    deep = ws.genarc("verify", "data", "--deep", "--json", now=NOW)
    assert deep.code == EXIT_INTEGRITY
    assert any("larger than recorded" in p for p in deep.json["report"]["problems"])


def test_a_name_too_long_for_any_file_system_is_the_points_fault(workspace):
    ws = workspace
    outside = make_outside(ws.root)
    repo, forger = forged_repository(ws)
    forger.point([row("f", "dir"), row("f/" + "n" * 300, content=b"long\n"), row("f/fine.txt", content=b"fine\n")])
    restored, verified, target = restore_and_verify(ws, outside)
    assert restored.code == EXIT_INTEGRITY and "255 bytes" in restored.err
    assert verified.code == EXIT_INTEGRITY
    assert (target / "f" / "fine.txt").read_bytes() == b"fine\n"


def test_unsafe_entries_outside_the_include_do_not_fail_the_restore(workspace):
    ws = workspace
    outside = make_outside(ws.root)
    repo, forger = forged_repository(ws)
    forger.point([row("f", "dir"), row("f/../escape.txt", content=b"x\n"), row("g", "dir"),
                  row("g/wanted.txt", content=b"wanted\n")])
    restored, _, target = restore_and_verify(ws, outside, "--include", "g/**")
    assert restored.code == EXIT_OK, restored.err
    assert (target / "g" / "wanted.txt").read_bytes() == b"wanted\n"


def test_a_forged_part_that_fails_its_hash_leaves_no_file_and_is_named(workspace):
    """A manifest (HMAC and all) whose file in parts claims a hash one part's bytes do not have: the file is
    not left in the target half-written, the rest is restored, and verify --deep names the part."""
    ws = workspace
    outside = make_outside(ws.root)
    repo, forger = forged_repository(ws)
    big = row("big.img", content=bytes(range(256)) * 40)
    big.update(split=[4096, 4096, 2048], lie=1)
    forger.point([big, row("fine.txt", content=b"fine\n")])
    restored, verified, target = restore_and_verify(ws, outside)
    assert restored.code == EXIT_INTEGRITY and "big.img" in restored.err and "fails its xxh3 check" in restored.err
    assert not (target / "big.img").exists() and (target / "fine.txt").read_bytes() == b"fine\n"
    deep = ws.genarc("verify", "data", "--deep", "--json", now=NOW)
    assert deep.code == EXIT_INTEGRITY and "big.img" in deep.out, deep.out


def test_a_point_whose_tree_is_not_the_one_it_records(workspace):
    """Each point records the digest of its whole tree. A restore checks the digest of the point it restores
    (the tree that point's writer had); verify checks every point of the chain and names the one that is off."""
    ws = workspace
    repo, forger = forged_repository(ws)
    a, b, c = row("a.txt", content=b"a\n"), row("b.txt", content=b"b\n"), row("c.txt", content=b"c\n")
    forger.point([a])
    forger.point([a, b], listed=[], full=False)  # records a tree holding b, but lists nothing that adds it
    forger.point([a, c], listed=[(c, "add")], full=False)  # consistent again: a and c is what the chain gives
    tip = ws.genarc("restore", "data", "--target", str(ws.root / "tip"), now=NOW)
    assert tip.code == EXIT_OK, tip.err
    assert sorted(p.name for p in (ws.root / "tip").iterdir()) == ["a.txt", "c.txt"]
    middle = ws.genarc("restore", "data", "--target", str(ws.root / "middle"), "--point", "2", now=NOW)
    assert middle.code == EXIT_INTEGRITY and "does not give the tree it recorded" in middle.err
    assert not (ws.root / "middle").exists() or not any((ws.root / "middle").iterdir())
    verified = ws.genarc("verify", "data", "--json", now=NOW)
    assert verified.code == EXIT_INTEGRITY
    assert any("does not give the tree it recorded" in p for p in verified.json["report"]["problems"])
