"""Schedules: cron-started runs do only what is due, and `genarc daemon` runs each job exactly when due."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from archiver import config as config_mod
from archiver.clock import FixedClock
from archiver.daemon import Daemon
from archiver.errors import EXIT_CONFIG, EXIT_INTERRUPTED, EXIT_OK
from tests.scenario.test_crash import wait_for_volumes

START = datetime(2027, 1, 4, 0, 0, tzinfo=timezone.utc)  # a Monday


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")  # schedules speak local time; make local time UTC for the test
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def three_jobs(ws) -> None:
    ws.write_config()
    text = ws.config.read_text()
    ws.config.write_text(text + 'schedule = "daily at 02:30"\n\n'
                         f'[jobs.often]\nsources = ["{ws.src}"]\nschedule = "every 6 hours"\n\n'
                         f'[jobs.weekly]\nsources = ["{ws.src}"]\nschedule = "weekly on sunday at 03:00"\n')


def test_invalid_schedule_is_a_config_error_naming_job_and_value(workspace):
    workspace.write_config()
    workspace.config.write_text(workspace.config.read_text() + 'schedule = "daily at 25:61"\n')
    result = workspace.genarc("list")
    assert result.code == EXIT_CONFIG and "jobs.data.schedule" in result.err and "25:61" in result.err


def test_daemon_runs_each_job_when_due_and_catches_up_once(workspace):
    three_jobs(workspace)
    cfg = config_mod.load(workspace.config)
    clock = FixedClock(START)
    last: dict[str, datetime] = {}

    def run_job(name: str) -> int:
        last[name] = clock.now()
        if name == "often" and clock.now() == START + timedelta(hours=12):
            raise RuntimeError("the store fell over")  # a failing run: logged, and the daemon goes on
        return 0

    def sleep(seconds: float) -> None:
        if START + timedelta(days=2, hours=5) <= clock.now() < START + timedelta(days=2, hours=6):
            clock.at += timedelta(hours=30)  # the laptop sleeps through a night
        else:
            clock.at += timedelta(seconds=seconds)

    logs: list[str] = []
    daemon = Daemon(cfg, clock, sleep, run_job, lambda name: last.get(name), logs.append)
    daemon.serve(stop=lambda: clock.now() >= START + timedelta(days=8))
    runs = {name: [t for n, t, _ in daemon.runs if n == name] for name in ("data", "often", "weekly")}
    day = timedelta(days=1)
    # Never run before: each job runs once at start; then exactly on its schedule.
    assert runs["data"][:3] == [START, START + timedelta(hours=2, minutes=30), START + day + timedelta(hours=2, minutes=30)]
    # The night slept through (day 2, 05:xx -> day 3, 11:xx) costs one catch-up run, not two.
    slept = [t for t in runs["data"] if START + 2 * day < t < START + 4 * day]
    assert len(slept) == 2 and slept[0].date() == (START + 2 * day).date() and slept[1].date() == (START + 3 * day).date()
    assert runs["weekly"] == [START, datetime(2027, 1, 10, 3, 0, tzinfo=timezone.utc)]
    gaps = {b - a for a, b in zip(runs["often"], runs["often"][1:])}
    assert timedelta(hours=6) in gaps and all(g >= timedelta(hours=6) for g in gaps)
    assert any("the store fell over" in line for line in logs)
    assert len(runs["often"]) >= 25


def test_cron_runs_only_due_jobs_unless_named(workspace):
    ws = workspace
    (ws.src / "a.txt").write_text("a\n")
    ws.write_config()
    ws.config.write_text(ws.config.read_text() + 'schedule = "daily at 02:30"\n')
    assert ws.genarc("init").code == EXIT_OK
    first = ws.genarc("run", "--json", now="2027-01-04T01:00:00Z")
    assert first.code == EXIT_OK and [j["job"] for j in first.json["jobs"]] == ["data"]  # never run: due
    early = ws.genarc("run", "--json", now="2027-01-04T01:30:00Z")
    assert early.json["jobs"] == [] and early.json["not_due"] == ["data"]
    assert [j["job"] for j in ws.genarc("run", "--json", now="2027-01-04T02:31:00Z").json["jobs"]] == ["data"]
    named = ws.genarc("run", "data", "--json", now="2027-01-04T02:40:00Z")
    assert [j["job"] for j in named.json["jobs"]] == ["data"]


def test_sigterm_stops_the_daemon_mid_run_and_the_repository_stays_valid(workspace):
    ws = workspace
    for i in range(40):
        (ws.src / f"blob{i:02d}.bin").write_bytes(os.urandom(200_000))
    ws.write_config(volume_size="128KiB", workers=1, compression="copy")
    ws.config.write_text(ws.config.read_text() + 'schedule = "every 6 hours"\n')
    assert ws.genarc("init").code == EXIT_OK
    env = {**os.environ, "GENARC_NOW": "2027-01-04T00:00:00Z"}
    proc = subprocess.Popen([sys.executable, "-m", "archiver", "--config", str(ws.config), "daemon"], env=env,
                            cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    wait_for_volumes(ws.repo, "data/volumes/*/*/v*.7z", 3, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == EXIT_INTERRUPTED
    assert "Traceback" not in proc.stderr.read()
    assert not list(ws.repo.glob("data/manifests/*/*.m7z"))
    verified = ws.genarc("verify", "data", "--json")  # nothing committed: only orphans, which verify names
    assert verified.json["report"]["problems"] == ["job data: no restore points"]
    assert verified.json["report"]["orphans"]
    assert ws.genarc("run", now="2027-01-04T00:05:00Z").code == EXIT_OK  # and the next run completes
