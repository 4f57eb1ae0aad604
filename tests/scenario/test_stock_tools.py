"""docs/restore-without-genarc.md, tested: a full generation's volumes open with stock tools."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from archiver.errors import EXIT_OK

PASSWORD = "correct horse battery staple"
SEVEN_ZIP = shutil.which("7zz") or shutil.which("7z")


def make_tree(src: Path) -> dict[str, bytes]:
    files = {
        "docs/readme.txt": b"hello from genarc\n" * 200,
        "docs/deep/nested/notes.md": b"# notes\n" * 500,
        "bin/random.bin": os.urandom(200_000),  # incompressible: goes into a COPY volume
        "unicode/naïve café.txt": "ünïcödé\n".encode() * 30,
    }
    for rel, data in files.items():
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return {str(src / rel).lstrip("/"): data for rel, data in files.items()}


def full_volumes(repo: Path) -> list[Path]:
    return sorted(repo.glob("data/volumes/g000001-*/p000001-*/v*.7z"))


def check_extracted(out: Path, expected: dict[str, bytes]) -> None:
    for name, data in expected.items():
        assert (out / name).read_bytes() == data, name


@pytest.mark.parametrize("compression", ["zstd", "deflate"])
def test_py7zr_command_line_extracts_a_full_generation(workspace, compression):
    expected = make_tree(workspace.src)
    workspace.write_config(password=PASSWORD, compression=compression, volume_size="64KiB")
    assert workspace.genarc("init").code == EXIT_OK
    assert workspace.genarc("run", now="2027-02-01T02:00:00Z").code == EXIT_OK
    volumes = full_volumes(workspace.repo)
    assert len(volumes) >= 2
    out = workspace.root / "out"
    for volume in volumes:
        # py7zr asks for the password with getpass; without a terminal it reads standard input.
        done = subprocess.run([sys.executable, "-m", "py7zr", "x", "-P", str(volume), str(out)],
                              input=PASSWORD + "\n", capture_output=True, text=True, start_new_session=True)
        assert done.returncode == 0, done.stderr
    check_extracted(out, expected)


@pytest.mark.skipif(SEVEN_ZIP is None, reason="Debian's 7zip (7zz) is not installed")
@pytest.mark.parametrize("compression", ["deflate", "lzma2"])
def test_stock_7zip_extracts_stock_compatible_methods(workspace, compression):
    expected = make_tree(workspace.src)
    workspace.write_config(password=PASSWORD, compression=compression, volume_size="64KiB")
    assert workspace.genarc("init").code == EXIT_OK
    assert workspace.genarc("run", now="2027-02-01T02:00:00Z").code == EXIT_OK
    out = workspace.root / "out"
    for volume in full_volumes(workspace.repo):
        done = subprocess.run([SEVEN_ZIP, "x", f"-p{PASSWORD}", f"-o{out}", "-y", str(volume)],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    check_extracted(out, expected)


@pytest.mark.skipif(SEVEN_ZIP is None, reason="Debian's 7zip (7zz) is not installed")
def test_stock_7zip_needs_the_password_to_even_list_names(workspace):
    make_tree(workspace.src)
    workspace.write_config(password=PASSWORD, compression="deflate")
    assert workspace.genarc("init").code == EXIT_OK
    assert workspace.genarc("run", now="2027-02-01T02:00:00Z").code == EXIT_OK
    done = subprocess.run([SEVEN_ZIP, "l", "-pwrong", str(full_volumes(workspace.repo)[0])],
                          capture_output=True, text=True)
    assert done.returncode != 0 and "readme.txt" not in done.stdout
