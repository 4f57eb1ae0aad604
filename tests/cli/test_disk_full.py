"""A full disk, for the repository or for the volume spool, is a clear error that commits nothing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from archiver.errors import EXIT_LOCAL_IO, EXIT_OK
from tests.conftest import restored_root, snapshot


@pytest.fixture
def small_disk(tmp_path):
    """A real, tiny file system (tmpfs), so the kernel itself answers ENOSPC."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill_source(src: Path) -> None:
    for i in range(6):
        (src / f"blob{i}.bin").write_bytes(os.urandom(400_000))


def test_repository_disk_full(workspace, small_disk):
    fill_source(workspace.src)
    workspace.repo.rmdir() if workspace.repo.exists() else None
    repo = small_disk / "repo"
    workspace.write_config(volume_size="300KiB")
    workspace.config.write_text(workspace.config.read_text().replace(str(workspace.repo), str(repo)))
    assert workspace.genarc("init").code == EXIT_OK
    result = workspace.genarc("run", now="2027-04-01T02:00:00Z")
    assert result.code == EXIT_LOCAL_IO
    assert "disk is full" in result.err and "Traceback" not in result.err
    assert not list(repo.glob("data/manifests/**/*.m7z"))
    assert not [p for p in repo.rglob("*") if ".genarc-tmp-" in p.name]

    # With space again (a larger disk mounted over the same path), the next run completes.
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    assert workspace.genarc("run", now="2027-04-01T03:00:00Z").code == EXIT_OK
    target = workspace.root / "r"
    assert workspace.genarc("restore", "data", "--target", str(target)).code == EXIT_OK
    assert snapshot(restored_root(target, workspace.src)) == snapshot(workspace.src)


def test_spool_disk_full(workspace, small_disk, monkeypatch):
    fill_source(workspace.src)
    workspace.write_config(volume_size="2MiB", workers=1, compression="copy")
    assert workspace.genarc("init").code == EXIT_OK
    monkeypatch.setenv("TMPDIR", str(small_disk))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    result = workspace.genarc("run", now="2027-04-01T02:00:00Z")
    assert result.code == EXIT_LOCAL_IO
    assert "disk is full" in result.err and "TMPDIR" in result.err
    assert not list(workspace.repo.glob("data/manifests/**/*.m7z"))
