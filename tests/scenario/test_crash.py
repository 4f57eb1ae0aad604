"""A run killed mid-upload leaves the repository valid; the next run completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from archiver.errors import EXIT_INTERRUPTED, EXIT_OK
from tests.conftest import restored_root, snapshot

FIRST, SECOND, THIRD = "2027-05-01T02:00:00Z", "2027-05-02T02:00:00Z", "2027-05-03T02:00:00Z"


def start_run(ws, now: str) -> subprocess.Popen:
    env = {**os.environ, "GENARC_NOW": now}
    return subprocess.Popen([sys.executable, "-m", "archiver", "--config", str(ws.config), "run"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])


def wait_for_volumes(repo: Path, run_glob: str, count: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(list(repo.glob(run_glob))) >= count:
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be interrupted: {proc.stderr.read()}")
        time.sleep(0.01)
    pytest.fail("no volume appeared")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_leaves_only_orphans(workspace, sig):
    ws = workspace
    (ws.src / "small.txt").write_text("first\n")
    ws.write_config(volume_size="256KiB", workers=1)
    assert ws.genarc("init").code == EXIT_OK
    assert ws.genarc("run", now=FIRST).code == EXIT_OK
    first_state = snapshot(ws.src)
    for i in range(40):
        (ws.src / f"blob{i:03d}.bin").write_bytes(os.urandom(256 * 1024))

    proc = start_run(ws, SECOND)
    wait_for_volumes(ws.repo, "data/volumes/*/p000002-*/v*.7z", 3, proc)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    if sig == signal.SIGTERM:
        err = proc.stderr.read()
        assert proc.returncode == EXIT_INTERRUPTED, err
        assert "Traceback" not in err and "signal SIGTERM" in err
    else:
        assert proc.returncode == -signal.SIGKILL

    # No manifest for the killed point: the repository still shows, and verifies, only the first one.
    assert not list(ws.repo.glob("data/manifests/*/p000002-*"))
    listing = ws.genarc("list", "--json").json[0]["generations"]
    assert [p["point"] for g in listing for p in g["points"]] == [1]
    verified = ws.genarc("verify", "--json")
    assert verified.code == EXIT_OK
    orphans = verified.json["report"]["orphans"]
    assert orphans and all("/p000002-" in key for key in orphans)

    # The next run completes (new run id, so no key collides with the orphans) and restores exactly.
    result = ws.genarc("run", "--json", now=THIRD)
    assert result.code == EXIT_OK, result.err
    assert result.json["jobs"][0]["report"]["point"] == 2
    target = ws.root / "r"
    assert ws.genarc("restore", "data", "--target", str(target)).code == EXIT_OK
    assert snapshot(restored_root(target, ws.src)) == snapshot(ws.src)
    old = ws.root / "r-old"
    assert ws.genarc("restore", "data", "--target", str(old), "--point", "1").code == EXIT_OK
    assert snapshot(restored_root(old, ws.src)) == first_state
