"""Monitoring-friendly output: the Prometheus textfile, the hooks, and two runs racing for one repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from archiver.errors import EXIT_BUSY, EXIT_CONFIG, EXIT_OK

NOW, LATER = "2027-06-01T02:00:00Z", "2027-06-02T02:00:00Z"


def metrics_of(path: Path) -> dict[str, float]:
    values = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            values[sample.name] = sample.value
    return values


def test_metrics_file_parses_and_matches_the_run(workspace):
    ws = workspace
    (ws.src / "a.txt").write_text("hello\n" * 1000)
    ws.write_config()
    assert ws.genarc("init").code == EXIT_OK
    metrics = ws.root / "textfile" / "genarc.prom"
    result = ws.genarc("run", "--json", "--metrics-file", str(metrics), now=NOW)
    assert result.code == EXIT_OK
    report = result.json["jobs"][0]["report"]
    values = metrics_of(metrics)
    assert values["genarc_last_run_exit_code"] == 0
    assert values["genarc_last_run_uploaded_bytes"] == report["bytes_uploaded"]
    assert values["genarc_last_run_files_scanned"] == report["files_scanned"]
    assert values["genarc_last_run_volumes"] == report["volumes"]
    assert values["genarc_last_run_deletes"] == 0
    assert values["genarc_last_success_timestamp_seconds"] == 1811815200.0  # 2027-06-01T02:00:00Z
    assert "genarc_lock_until_timestamp_seconds" not in values  # a local folder locks nothing: no date to alert on
    # A failed run updates the exit code but keeps the last success time.
    ws.config.write_text(ws.config.read_text().replace(str(ws.src), str(ws.root / "gone")))
    assert ws.genarc("run", "--metrics-file", str(metrics), now=LATER).code == EXIT_CONFIG
    values = metrics_of(metrics)
    assert values["genarc_last_run_exit_code"] == EXIT_CONFIG
    assert values["genarc_last_success_timestamp_seconds"] == 1811815200.0
    assert not [p for p in metrics.parent.iterdir() if p.name != "genarc.prom"]  # written atomically, no leftovers


def test_hooks_run_with_their_variables_and_a_failing_hook_is_not_fatal(workspace):
    ws = workspace
    (ws.src / "a.txt").write_text("hello\n")
    log = ws.root / "hook.log"
    ws.write_config()
    ws.config.write_text(ws.config.read_text() +
                         f'on_success = "echo ok $GENARC_JOB $GENARC_EXIT_CODE $GENARC_GENERATION.$GENARC_POINT >> {log}; exit 3"\n'
                         f'on_failure = "echo failed $GENARC_JOB $GENARC_EXIT_CODE >> {log}"\n')
    assert ws.genarc("init").code == EXIT_OK
    result = ws.genarc("run", now=NOW)
    assert result.code == EXIT_OK and "exited with 3" in result.err  # logged, never fatal
    ws.config.write_text(ws.config.read_text().replace(str(ws.src), str(ws.root / "gone")))
    assert ws.genarc("run", now=LATER).code == EXIT_CONFIG
    assert log.read_text().splitlines() == ["ok data 0 1.1", f"failed data {EXIT_CONFIG}"]


def test_two_runs_started_together_one_runs_the_other_is_busy(workspace):
    ws = workspace
    for i in range(30):
        (ws.src / f"f{i}.bin").write_bytes(os.urandom(200_000))
    ws.write_config(volume_size="128KiB", workers=1)
    assert ws.genarc("init").code == EXIT_OK
    env = {**os.environ, "GENARC_NOW": NOW}
    cmd = [sys.executable, "-m", "archiver", "--config", str(ws.config), "run"]
    cwd = Path(__file__).resolve().parents[2]
    procs = [subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outcomes = sorted((p.wait(timeout=120), p.stderr.read()) for p in procs)
    assert [code for code, _ in outcomes] == [EXIT_OK, EXIT_BUSY], outcomes
    assert "Another genarc run" in outcomes[1][1]
    listing = ws.genarc("list", "--json").json[0]["generations"]
    assert [len(g["points"]) for g in listing] == [1]
