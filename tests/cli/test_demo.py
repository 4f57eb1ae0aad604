"""The README's first command: `bash scripts/demo.sh` shows the product, on one screen, on a real S3 API server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("GENARC_", "AWS_", "XDG_"))}


def test_the_demo_shows_a_real_lock_a_refused_delete_a_synthetic_full_and_an_exact_restore(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh"), "--dir", str(tmp_path / "demo")],
                          capture_output=True, text=True, env=clean_env(), timeout=600)
    out = done.stdout
    assert done.returncode == 0, (out[-3000:], done.stderr[-3000:])
    assert "\033[" not in out and done.stderr == ""  # not a terminal: no bold, and no install or server noise
    assert not re.search(r"Successfully|setuptools|Obtaining|Requirement already|HTTP/1.1", out)
    assert "ransomware-safe: yes" in out and "wrote 2 lifecycle rule(s) to s3://demo-backups" in out
    assert "demo: synthetic full into generation 2, point 1" in out
    assert re.search(r"synthetic: [1-9]\d* volume\(s\) copied server-side", out)
    locked = re.findall(r"generation (\d)  started \S+  locked until (\S+)", out)
    assert [g for g, _ in locked] == ["1", "2"]
    # The server's own lock on a volume of generation 1 is the date `genarc list` planned for it.
    server_date, = re.findall(r"ObjectLockMode: COMPLIANCE  ObjectLockRetainUntilDate: (\S+)", out)
    assert server_date == locked[0][1]
    refusals = re.findall(r"refused by the server: (\w+)", out)
    assert refusals == ["AccessDenied", "AccessDenied"]  # the backup key, then the admin's key
    assert "restored tree is byte-for-byte identical to the source" in out
    assert re.search(r"checked 1 job\(s\): 2 generation\(s\), 3 point\(s\)", out)
    assert out.rstrip().endswith(f"Everything is in {tmp_path / 'demo'}.")


def test_the_local_demo_says_nothing_is_locked(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"), "--local", "--dir", str(tmp_path)],
                          capture_output=True, text=True, env=clean_env(), timeout=600)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    out = done.stdout
    assert "locked until" not in out and "not locked (local directory)" in out
    assert "synthetic full into generation 2" in out and "byte-for-byte identical" in out
    assert "ransomware-safe: NO (see the 1 FAIL line above)" in out
