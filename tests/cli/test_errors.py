"""Bad input gets one clear sentence, a documented exit code, and nothing is lost."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from archiver.errors import (EXIT_BUSY, EXIT_CONFIG, EXIT_INTEGRITY, EXIT_OK, EXIT_PARTIAL, EXIT_STORE_UNAVAILABLE,
                             EXIT_USAGE, EXIT_WRONG_PASSWORD)
from archiver.runlock import RunLock
from tests.conftest import restored_root, snapshot, unprivileged

NOW = "2027-03-01T02:00:00Z"
LATER = "2027-03-02T02:00:00Z"


def small_tree(src: Path) -> None:
    (src / "docs").mkdir()
    for i in range(20):
        (src / "docs" / f"note{i}.txt").write_text(f"note {i}\n" * (50 + i))
    (src / "photo.raw").write_bytes(os.urandom(300_000))


@pytest.fixture
def backed_up(workspace):
    small_tree(workspace.src)
    workspace.write_config(volume_size="64KiB")
    assert workspace.genarc("init").code == EXIT_OK
    assert workspace.genarc("run", now=NOW).code == EXIT_OK
    return workspace


def one_line_error(result) -> str:
    assert "Traceback" not in result.err
    lines = [line for line in result.err.splitlines() if line.startswith("genarc: error:")]
    assert len(lines) == 1, result.err
    return lines[0]


def test_init_warns_that_a_local_repository_is_not_ransomware_proof(workspace):
    workspace.write_config()
    result = workspace.genarc("init")
    assert result.code == EXIT_OK and "not ransomware-proof" in result.err
    again = workspace.genarc("init")  # a setup script run twice: nothing changes, and that is fine
    assert again.code == EXIT_OK and "already exists" in again.out and "nothing was changed" in again.out
    (workspace.root / "password").write_text("another password\n")
    wrong = workspace.genarc("init")
    assert wrong.code == EXIT_WRONG_PASSWORD and "does not open" in one_line_error(wrong)


def test_wrong_password_has_its_own_exit_code(backed_up):
    (backed_up.root / "password").write_text("not the password\n")
    for argv in (("run",), ("list",), ("restore", "data", "--target", str(backed_up.root / "r"))):
        result = backed_up.genarc(*argv, now=LATER)
        assert result.code == EXIT_WRONG_PASSWORD
        assert "password does not open the repository" in one_line_error(result)
    assert not (backed_up.root / "r").exists()


def test_missing_source_dir_is_a_config_error_naming_it(backed_up):
    missing = backed_up.root / "gone"
    cfg = backed_up.config.read_text().replace(json.dumps([str(backed_up.src)]), json.dumps([str(missing)]))
    backed_up.config.write_text(cfg)
    result = backed_up.genarc("run", now=LATER)
    assert result.code == EXIT_CONFIG
    line = one_line_error(result)
    assert str(missing) in line and "does not exist" in line and "jobs.data.sources" in line


def test_a_python_with_an_old_sqlite_is_told_what_genarc_needs(backed_up, monkeypatch):
    import sqlite3

    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")
    result = backed_up.genarc("run", "--json", now="2027-01-02T02:00:00Z")
    assert result.code == EXIT_CONFIG, result.err
    assert "genarc needs SQLite 3.33 or later, and this Python uses SQLite 3.31.1" in result.err
    assert "Traceback" not in result.err


def test_invalid_job_file_names_file_and_key(workspace):
    workspace.config.write_text('[repository]\nurl = "r"\nencryption = "none"\n[volumes]\nsize = "huge"\n[jobs.a]\nsources = ["."]\n')
    result = workspace.genarc("list")
    assert result.code == EXIT_CONFIG
    line = one_line_error(result)
    assert str(workspace.config) in line and "volumes.size" in line


def test_no_repository_yet(workspace):
    workspace.write_config()
    result = workspace.genarc("run", now=NOW)
    assert result.code == EXIT_STORE_UNAVAILABLE and "genarc init" in one_line_error(result)


def corrupt_first_volume(ws) -> Path:
    volume = sorted(ws.repo.glob("data/volumes/*/*/v*.7z"))[0]
    volume.chmod(0o644)
    data = bytearray(volume.read_bytes())
    data[len(data) // 2] ^= 0x40
    volume.write_bytes(bytes(data))
    return volume


def test_a_corrupted_volume_byte_is_named_by_verify_and_restore(backed_up):
    volume = corrupt_first_volume(backed_up)
    key = str(volume.relative_to(backed_up.repo))
    verified = backed_up.genarc("verify")
    assert verified.code == EXIT_INTEGRITY
    assert key in verified.out and "SHA-256" in verified.out
    deep = backed_up.genarc("verify", "--deep", "--json")
    assert deep.code == EXIT_INTEGRITY and any(key in p for p in deep.json["report"]["problems"])

    target = backed_up.root / "restored"
    result = backed_up.genarc("restore", "data", "--target", str(target))
    assert result.code == EXIT_INTEGRITY
    line = one_line_error(result)
    assert key in line and ("docs/" in line or "photo.raw" in line)
    # Everything not in the damaged volume came back intact, and no damaged bytes were left behind.
    restored = snapshot(restored_root(target, backed_up.src))
    original = snapshot(backed_up.src)
    assert restored and all(original[k] == v for k, v in restored.items() if v[0] == "file")
    assert len([v for v in restored.values() if v[0] == "file"]) < len([v for v in original.values() if v[0] == "file"])


def test_a_tampered_manifest_fails_its_hmac(backed_up):
    manifest = sorted(backed_up.repo.glob("data/manifests/*/*.m7z"))[0]
    manifest.chmod(0o644)
    data = bytearray(manifest.read_bytes())
    data[-40] ^= 0x01
    manifest.write_bytes(bytes(data))
    result = backed_up.genarc("verify")
    assert result.code == EXIT_INTEGRITY and manifest.name in result.out


def test_restore_refuses_to_overwrite_without_the_flag(backed_up):
    target = backed_up.root / "r"
    assert backed_up.genarc("restore", "data", "--target", str(target)).code == EXIT_OK
    note = restored_root(target, backed_up.src) / "docs" / "note1.txt"
    note.write_text("local edit")
    result = backed_up.genarc("restore", "data", "--target", str(target))
    assert result.code == EXIT_USAGE and "--overwrite" in one_line_error(result)
    assert note.read_text() == "local edit"
    assert backed_up.genarc("restore", "data", "--target", str(target), "--overwrite").code == EXIT_OK
    assert note.read_text() == (backed_up.src / "docs" / "note1.txt").read_text()


def test_restore_include_and_at(backed_up):
    (backed_up.src / "docs" / "note1.txt").write_text("second version\n")
    assert backed_up.genarc("run", now=LATER).code == EXIT_OK
    target = backed_up.root / "r"
    pattern = str(backed_up.src / "docs" / "note1.txt").lstrip("/")
    result = backed_up.genarc("restore", "data", "--target", str(target), "--at", "2027-03-01T12:00:00Z",
                              "--include", pattern, "--json")
    assert result.code == EXIT_OK and result.json["report"]["files"] == 1
    assert (target / pattern).read_text() == "note 1\n" * 51


def test_busy_when_another_run_holds_the_lock(backed_up, monkeypatch):
    from archiver.catalog import state_dir
    from archiver.config import load

    url = load(backed_up.config).repository_url
    with RunLock(state_dir(), url):
        result = backed_up.genarc("run", now=LATER)
    assert result.code == EXIT_BUSY and "Another genarc run" in one_line_error(result)
    assert backed_up.genarc("run", now=LATER).code == EXIT_OK


def test_unreadable_then_vanished_files_are_warnings_and_the_previous_version_is_kept(backed_up):
    victim = backed_up.src / "docs" / "note3.txt"
    before = victim.read_text()
    victim.write_text(before + "changed\n")
    victim.chmod(0)
    with unprivileged():
        result = backed_up.genarc("run", now=LATER)
    assert result.code == EXIT_PARTIAL and "note3.txt" in result.err and "previous version is kept" in result.err
    target = backed_up.root / "r"
    assert backed_up.genarc("restore", "data", "--target", str(target)).code == EXIT_OK
    assert (restored_root(target, backed_up.src) / "docs" / "note3.txt").read_text() == before


def test_catalog_is_a_cache_rebuilt_from_manifests(backed_up):
    from archiver.catalog import state_dir

    (backed_up.src / "docs" / "note2.txt").write_text("edited\n")
    catalogs = list((state_dir() / "catalog").rglob("*.sqlite"))
    assert catalogs
    for c in (state_dir() / "catalog").rglob("*"):
        if c.is_file():
            c.unlink()
    result = backed_up.genarc("run", "--json", now=LATER)
    assert result.code == EXIT_OK
    report = result.json["jobs"][0]["report"]
    # Rebuilt automatically: still an incremental, and only the edited file is stored again.
    assert report["kind"] == "incremental" and report["changed"] == 1 and report["added"] == 0
    assert backed_up.genarc("catalog", "rebuild").code == EXIT_OK
    target = backed_up.root / "r"
    assert backed_up.genarc("restore", "data", "--target", str(target)).code == EXIT_OK
    assert snapshot(restored_root(target, backed_up.src)) == snapshot(backed_up.src)


def test_missing_manifest_breaks_the_chain_and_the_next_run_is_a_full(backed_up):
    (backed_up.src / "x").write_text("x")
    assert backed_up.genarc("run", now=LATER).code == EXIT_OK
    first = sorted(backed_up.repo.glob("data/manifests/*/p000001-*.m7z"))[0]
    first.unlink()  # an attacker or an accident, outside genarc
    result = backed_up.genarc("run", "--json", now="2027-03-03T02:00:00Z")
    assert result.code == EXIT_PARTIAL and "broken" in result.err
    assert result.json["jobs"][0]["report"]["kind"] == "full"
    assert backed_up.genarc("verify", "--json").code == EXIT_INTEGRITY


def test_every_command_has_help_with_an_example(capsys):
    from archiver.cli import COMMANDS, main

    assert main(["--help"]) == 0
    top = capsys.readouterr().out
    for code in (EXIT_OK, EXIT_PARTIAL, EXIT_BUSY, EXIT_WRONG_PASSWORD, EXIT_INTEGRITY):
        assert f"  {code:>3}  " in top
    for command in COMMANDS:
        name = command.__name__.rsplit(".", 1)[-1]
        assert main([name, "--help"]) == 0
        text = capsys.readouterr().out
        assert "example:" in text and "genarc" in text, name
