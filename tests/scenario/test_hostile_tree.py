"""A source tree any local user could make: every entry round-trips or is named, and nothing stops the run."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from archiver.errors import EXIT_OK, EXIT_PARTIAL
from archiver.names import escape
from tests.conftest import restored_root, snapshot

NOW = "2027-03-01T02:00:00Z"
NAMES = ["new\nline", "tab\tname", "back\\slash", "esc\x1b[2Jclear", "star*", "question?", "[bracket]", "-leading-dash",
         "--double", " space ", "x" * 255, os.fsdecode(b"caf\xe9"), os.fsdecode(b"\xff\xfe\xfd"), "日本語", "\u202eevil"]
TIMES = {"before-1970": -86400 * 365 * 10 * 10**9, "after-2100": 4_200_000_000 * 10**9, "epoch": 0}


def deep_path(root: Path) -> str:
    """Directories nested beyond PATH_MAX (4096), made one component at a time."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    name = "d" * 200
    for _ in range(25):
        os.mkdir(name, dir_fd=fd)
        child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    with open(os.open("bottom.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as out:
        out.write("too deep\n")
    os.close(fd)
    return name


def build_hostile(src: Path) -> dict[str, Path]:
    names = src / "names"
    names.mkdir()
    for name in NAMES:
        (names / name).write_text(f"content of {name!r}\n")
        (names / (name[:200] + ".d")).mkdir()
    links = src / "links"
    links.mkdir()
    os.symlink(b"/nowhere/caf\xe9", os.fsencode(links / "bad-target"))
    os.symlink("loop-b", links / "loop-a")
    os.symlink("loop-a", links / "loop-b")
    os.symlink("../does/not/exist", links / "dangling")
    os.symlink("..", links / "up")
    os.symlink("/", links / "root")
    modes = src / "modes"
    modes.mkdir()
    for label, mode in (("none", 0o000), ("setuid", 0o4755), ("setgid", 0o2755), ("sticky-file", 0o1644)):
        (modes / label).write_text(label)
        os.chmod(modes / label, mode)
    (modes / "sticky-dir").mkdir()
    os.chmod(modes / "sticky-dir", 0o1777)
    (modes / "closed-dir").mkdir()
    (modes / "closed-dir" / "inside.txt").write_text("inside a mode-000 folder\n")
    os.chmod(modes / "closed-dir", 0o000)
    times = src / "times"
    times.mkdir()
    for label, ns in TIMES.items():
        (times / label).write_text(label)
        os.utime(times / label, ns=(ns, ns))
    special = src / "special"
    special.mkdir()
    os.mkfifo(special / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(special / "socket"))
    sock.close()
    skipped = {"fifo": special / "fifo", "socket": special / "socket"}
    if os.geteuid() == 0:
        os.mknod(special / "null-device", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        skipped["device"] = special / "null-device"
    deep = src / "deep"
    deep.mkdir()
    deep_path(deep)
    return skipped


def read_deep(folder: Path) -> bytes:
    """The bottom file of :func:`deep_path`, read one component at a time (its path is beyond PATH_MAX)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(25):
        child = os.open("d" * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    with open(os.open("bottom.txt", os.O_RDONLY, dir_fd=fd), "rb") as fh:
        os.close(fd)
        return fh.read()


@pytest.mark.skipif(os.geteuid() != 0, reason="device nodes and mode-000 folders need root to set up and read")
def test_a_hostile_tree_round_trips_and_what_is_skipped_is_named(workspace):
    ws = workspace
    skipped = build_hostile(ws.src)
    ws.write_config(volume_size="64KiB")
    assert ws.genarc("init").code == EXIT_OK
    run = ws.genarc("run", "--json", now=NOW)
    assert run.code in (EXIT_OK, EXIT_PARTIAL), run.err
    report = run.json["jobs"][0]["report"]
    said = "\n".join(report["notes"] + report["warnings"])
    for label, path in skipped.items():
        assert escape(str(path)) in said or str(path) in said, label
    target = ws.root / "target"
    restore = ws.genarc("restore", "data", "--target", str(target), now=NOW)
    assert restore.code == EXIT_OK, restore.err
    back = restored_root(target, ws.src)
    for part in ("names", "links", "modes", "times"):  # deep/ cannot be walked by path: read below
        assert snapshot(back / part) == snapshot(ws.src / part), part
    assert read_deep(back / "deep") == read_deep(ws.src / "deep") == b"too deep\n"  # beyond PATH_MAX, both ways
    st = os.stat(restored_root(target, ws.src) / "modes" / "setuid")
    assert stat.S_IMODE(st.st_mode) == 0o4755
    assert os.readlink(os.fsencode(restored_root(target, ws.src) / "links" / "bad-target")) == b"/nowhere/caf\xe9"
    # A second run over the same tree changes nothing and stops at nothing.
    again = ws.genarc("run", "--json", now="2027-03-02T02:00:00Z")
    assert again.code in (EXIT_OK, EXIT_PARTIAL)
    second = again.json["jobs"][0]["report"]
    assert (second["added"], second["changed"], second["removed"]) == (0, 0, 0)
