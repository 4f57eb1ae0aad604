"""The scale benchmarks run from a clean checkout (tiny sizes, no peers) and their latency proxy is faithful.

They are measured by hand (README, "Performance"); here only that they run to the end, write their
JSON with every step, and that the proxy delays without changing a byte. No timing is judged.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from latency_proxy import LatencyProxy  # noqa: E402


def _echo_server() -> tuple[socket.socket, int]:
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(1 << 16):
                    conn.sendall(data[::-1])

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def test_the_proxy_forwards_every_byte_both_ways_after_its_delay():
    server, port = _echo_server()
    proxy = LatencyProxy(port, 40).start()
    try:
        payload = os.urandom(300_000)
        with socket.create_connection(("127.0.0.1", proxy.port)) as conn:
            started = time.monotonic()
            conn.sendall(payload[:10])
            first = b""
            while len(first) < 10:
                first += conn.recv(10 - len(first))
            waited = time.monotonic() - started
            conn.sendall(payload[10:])
            conn.shutdown(socket.SHUT_WR)
            rest = b""
            while data := conn.recv(1 << 16):
                rest += data
        assert first == payload[:10][::-1]  # each chunk is echoed reversed: bytes and order are kept
        assert len(rest) == len(payload) - 10
        assert waited >= 0.04 * 4 - 0.005  # handshake round trip, then one way and back
    finally:
        proxy.stop()
        server.close()


def _bench(script: str, *args: str, tmp_path: Path) -> dict:
    out = tmp_path / f"{script}.json"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args, "--no-peers", "--workdir",
                           str(tmp_path / "work"), "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text())


def test_the_far_bucket_bench_runs_on_moto(tmp_path):
    result = _bench("bench_far.py", "--s3", "moto", "--size-gib", "0.01", "--delay-ms", "5", tmp_path=tmp_path)
    rows = {(r["tool"], r["where"]): r for r in result["results"]}
    assert set(rows) == {("genarc", "direct"), ("genarc", "far")}
    assert all(run["volumes"] >= 1 for row in rows.values() for run in row["runs"])  # each was a real full


def test_the_many_files_bench_runs(tmp_path):
    result = _bench("bench_many.py", "--files", "1500", tmp_path=tmp_path)
    rows = {row["step"]: row for row in result["rows"] if row["tool"] == "genarc"}
    # The restored file was compared too, and the last run was checked to open generation 2 by copies.
    assert set(rows) == {"full", "unchanged", "ls folder", "restore 1 file", "synthetic full"}
    assert 0 < rows["restore 1 file"]["bytes_read"] and 0 < rows["ls folder"]["bytes_read"]


def test_the_many_files_bench_compares_a_ref_with_this_checkout(tmp_path):
    result = _bench("bench_many.py", "--files", "200", "--against", "HEAD", "--repeat", "2", tmp_path=tmp_path)
    runs = {(row["tool"], row["step"]): row["runs"] for row in result["rows"]}
    ref = f"genarc ({result['against']})"
    assert set(runs) == {(tool, step) for tool in (ref, "genarc (this checkout)") for step in ("full", "unchanged")}
    assert all(len(times) == 2 and all(t > 0 for t in times) for times in runs.values())
    assert (tmp_path / "work" / f"code-{result['against']}" / "archiver" / "backup.py").is_file()  # REF's own code


def test_the_local_bench_runs_with_its_restores_elsewhere(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = _bench("bench_local.py", "--size-gib", "0.005", "--big-gib", "0", "--restore-dir", str(elsewhere),
                    tmp_path=tmp_path)
    steps = {(r["tool"], r["step"]) for r in result["results"]}
    assert {("genarc", s) for s in ("full", "incremental", "unchanged", "restore")} <= steps
    assert ("cp -a", "restore") in steps and "restore time genarc/cp -a (the floor)" in result["ratios"]
    restored = next(r for r in result["results"] if r["tool"] == "genarc" and r["step"] == "restore")
    assert f"into {elsewhere}/" in restored["note"] and result["restores_into"] == str(elsewhere)
    assert list(elsewhere.iterdir()) == []  # removed once every tool has restored there
