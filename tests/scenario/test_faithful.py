"""Faithful copies: no change to a file's content is missed, and none is stored for nothing."""

from __future__ import annotations

import os

from archiver.errors import EXIT_OK
from tests.conftest import restored_root, snapshot

DAYS = [f"2027-04-{d:02d}T02:00:00Z" for d in range(1, 10)]


def report_of(result) -> dict:
    return result.json["jobs"][0]["report"]


def test_a_rewrite_that_keeps_size_and_mtime_is_stored_and_a_chmod_uploads_nothing(workspace):
    ws = workspace
    victim = ws.src / "ledger.txt"
    victim.write_text("balance: 1000\n" * 100)
    (ws.src / "other.txt").write_text("other\n")
    ws.write_config()
    assert ws.genarc("init").code == EXIT_OK
    assert ws.genarc("run", now=DAYS[0]).code == EXIT_OK
    before = victim.stat()
    # What `touch -r`, rsync -t and ransomware do: new content, same size, old mtime.
    victim.write_text("balance: 9999\n" * 100)
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert victim.stat().st_size == before.st_size and victim.stat().st_mtime_ns == before.st_mtime_ns
    rewritten = ws.genarc("run", "--json", now=DAYS[1])
    assert rewritten.code == EXIT_OK and report_of(rewritten)["changed"] == 1
    target = ws.root / "restored"
    assert ws.genarc("restore", "data", "--target", str(target)).code == EXIT_OK
    assert snapshot(restored_root(target, ws.src)) == snapshot(ws.src)
    # A chmod changes only the ctime: confirmed by hash, recorded as metadata, no content uploaded.
    victim.chmod(0o600)
    chmodded = ws.genarc("run", "--json", now=DAYS[2])
    report = report_of(chmodded)
    assert chmodded.code == EXIT_OK and report["metadata_changed"] == 1 and report["changed"] == 0
    assert report["volumes"] == 0 and report["bytes_packed"] == 0
    # Nothing at all: nothing is even read again.
    quiet = report_of(ws.genarc("run", "--json", now=DAYS[3]))
    assert (quiet["changed"], quiet["metadata_changed"], quiet["volumes"]) == (0, 0, 0)
