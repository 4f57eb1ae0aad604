"""The progress display, checked in a pseudo-terminal as a person at a terminal would see it."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

from archiver.errors import EXIT_OK


def run_in_pty(argv: list[str], env: dict) -> tuple[int, str]:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True,
                            cwd=Path(__file__).resolve().parents[2])
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(leader, 65536)
        except OSError:  # the pty closes when the process exits
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


def render(line: str) -> str:
    """A terminal line as shown: a carriage return moves back to column 0 and later text overwrites."""
    cells: list[str] = []
    column = 0
    for char in line:
        if char == "\r":
            column = 0
            continue
        if column < len(cells):
            cells[column] = char
        else:
            cells.append(char)
        column += 1
    return "".join(cells).rstrip()


def test_progress_updates_in_place_and_leaves_a_clean_summary(workspace):
    ws = workspace
    import random

    rng = random.Random(5)
    for i in range(24):  # hex digits: compressible, but slow for LZMA2 at preset 9; slow enough to watch
        (ws.src / f"hex{i:02d}.txt").write_bytes(rng.randbytes(150_000).hex().encode())
    ws.write_config(volume_size="256KiB", workers=1, compression="lzma2", level=9)
    assert ws.genarc("init").code == EXIT_OK
    env = {**os.environ, "GENARC_NOW": "2027-09-01T02:00:00Z", "TERM": "xterm"}
    code, screen = run_in_pty([sys.executable, "-m", "archiver", "--config", str(ws.config), "run"], env)
    assert code == EXIT_OK, screen
    updates = re.findall(r"\rdata g1\.1: packing\s+([\d.]+ \w+)/([\d.]+ \w+) \((\d+)%\)", screen)
    assert len(updates) >= 3, screen[-2000:]
    shares = [int(share) for _, _, share in updates]
    assert shares == sorted(shares) and shares[-1] > shares[0]  # it moves forward
    assert "ETA" in screen and "volumes" in screen
    # What the terminal shows once it is done: the progress line wiped, the summary clean on its own lines.
    shown = [render(line) for line in screen.replace("\r\n", "\n").split("\n")]
    summary = [line for line in shown if line.startswith("data: active full into generation 1")]
    assert len(summary) == 1 and summary[0] == summary[0].rstrip() and "packing" not in summary[0]
    assert not any("packing" in line for line in shown)
    assert any(line.strip().startswith("not locked: a local directory") for line in shown)


def test_no_progress_when_not_a_terminal(workspace):
    ws = workspace
    (ws.src / "a.txt").write_text("a\n")
    ws.write_config()
    assert ws.genarc("init").code == EXIT_OK
    result = ws.genarc("run", now="2027-09-01T02:00:00Z")
    assert result.code == EXIT_OK and "\r" not in result.err and "packing" not in result.err


def test_json_log_lines(workspace):
    ws = workspace
    ws.write_config()
    import json

    result = ws.genarc("--log-format", "json", "--log-file", str(ws.root / "genarc.log"), "list")
    assert result.code != EXIT_OK
    record = json.loads(result.err.strip().splitlines()[-1])
    assert record["level"] == "error" and "genarc init" in record["message"] and record["exit_code"] == result.code
    assert json.loads((ws.root / "genarc.log").read_text().splitlines()[-1]) == record
