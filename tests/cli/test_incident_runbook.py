"""Every command of docs/incident.md, run as written on a repository an attacker has written to."""

from __future__ import annotations

import os
import re
import shlex
import time
from datetime import datetime, timezone
from pathlib import Path

from archiver.clock import format_time
from tests.conftest import restored_root, snapshot

ROOT = Path(__file__).resolve().parents[2]
DAYS = [f"2027-05-{d:02d}T02:00:00Z" for d in (3, 4, 5)]
EXPECTED = {"audit": 10, "list": 0, "verify": 0, "restore": 0}  # the attack is after TIME: only audit names it


def runbook_commands() -> list[list[str]]:
    text = (ROOT / "docs" / "incident.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    return [shlex.split(line) for block in blocks for line in block.splitlines() if line.startswith("genarc ")]


def test_every_command_of_the_incident_runbook_does_what_it_says(workspace, monkeypatch):
    ws = workspace
    ws.write_config()
    (ws.src / "doc.txt").write_text("the clean tree\n")
    assert ws.genarc("init").code == 0
    for now in DAYS:
        (ws.src / f"{now[:10]}.txt").write_text(now)
        assert ws.genarc("run", now=now).code == 0
    clean = snapshot(ws.src)
    time.sleep(1.5)
    trusted_before = format_time(datetime.now(timezone.utc))
    time.sleep(1.5)
    # The attacker: a point dated 2099 over encrypted files, from a state directory of their own, and junk.
    (ws.src / "doc.txt").write_bytes(os.urandom(64))
    monkeypatch.setenv("XDG_STATE_HOME", str(ws.root / "attacker"))
    assert ws.genarc("run", now="2099-01-01T00:00:00Z").code in (0, 1)
    monkeypatch.setenv("XDG_STATE_HOME", str(ws.root / "state"))
    (ws.repo / "junk.bin").write_bytes(b"junk")
    monkeypatch.setenv("GENARC_NOW", "2027-05-06T02:00:00Z")

    commands = runbook_commands()
    assert [c[1] for c in commands] == ["audit", "list", "list", "verify", "restore"]
    target = ws.root / "restored"
    for command in commands:
        argv = [{"JOB": "data", "TIME": trusted_before, "DIR": str(target)}.get(a, a) for a in command[1:]]
        result = ws.genarc(*argv)
        assert result.code == EXPECTED[argv[0]], (argv, result.out, result.err)
        if argv[0] == "audit":
            assert "[suspect]" in result.out and "2099" in result.out and "junk.bin" in result.out
        if argv[0] == "list" and "--trusted-before" not in argv:
            assert "SUSPECT" in result.out
        if argv[0] == "list" and "--trusted-before" in argv:
            assert "SUSPECT" not in result.out and "2099" not in result.out
    assert snapshot(restored_root(target, ws.src)) == clean
