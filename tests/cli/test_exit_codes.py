"""Every exit code in the documented table is produced by a real scenario, with one line and no traceback."""

from __future__ import annotations

import os
import signal

import pytest

from archiver import errors
from archiver.catalog import state_dir
from archiver.config import load
from archiver.errors import EXIT_CODES
from archiver.runlock import RunLock
from tests.conftest import unprivileged

NOW = "2027-07-01T02:00:00Z"
PRODUCED: dict[int, str] = {}


@pytest.fixture
def ready(workspace):
    (workspace.src / "a.txt").write_text("hello\n")
    workspace.write_config()
    assert workspace.genarc("init").code == 0
    return workspace


def check(result, code: int, scenario: str, report_on_stdout: bool = False) -> None:
    assert result.code == code, (scenario, result.err)
    assert "Traceback" not in result.err
    if code not in (0, 1) and not report_on_stdout:
        errors_said = [line for line in result.err.splitlines() if line.startswith("genarc: ") and "error" in line]
        assert len(errors_said) == 1, result.err  # one sentence
    PRODUCED[code] = scenario


def test_ok_partial_usage_config(ready):
    check(ready.genarc("run", now=NOW), errors.EXIT_OK, "a clean run")
    secret = ready.src / "secret.txt"
    secret.write_text("x")
    secret.chmod(0)
    with unprivileged():
        check(ready.genarc("run", now=NOW), errors.EXIT_PARTIAL, "an unreadable file")
    check(ready.genarc("restore", "nosuchjob", "--target", str(ready.root / "t")), errors.EXIT_USAGE, "an unknown job")
    ready.config.write_text(ready.config.read_text().replace("keep_days = 30", "keep_days = -1"))
    check(ready.genarc("run", now=NOW), errors.EXIT_CONFIG, "an invalid job file")


def test_busy_password_integrity_unavailable_unsafe(ready):
    with RunLock(state_dir(), load(ready.config).repository_url):
        check(ready.genarc("run", now=NOW), errors.EXIT_BUSY, "another run holds the lock")
    check(ready.genarc("run", now=NOW), errors.EXIT_OK, "a clean run")
    manifest = next(ready.repo.glob("data/manifests/*/*.m7z"))
    manifest.chmod(0o644)
    manifest.write_bytes(manifest.read_bytes()[:-10])
    check(ready.genarc("verify"), errors.EXIT_INTEGRITY, "a truncated manifest", report_on_stdout=True)
    check(ready.genarc("doctor"), errors.EXIT_UNSAFE, "a local repository", report_on_stdout=True)
    (ready.root / "password").write_text("wrong\n")
    check(ready.genarc("list"), errors.EXIT_WRONG_PASSWORD, "a wrong password")
    ready.config.write_text(ready.config.read_text().replace(str(ready.repo), str(ready.root / "elsewhere")))
    check(ready.genarc("list"), errors.EXIT_STORE_UNAVAILABLE, "no repository there")


def test_permission_and_local_io(workspace, monkeypatch):
    ws = workspace
    (ws.src / "a.txt").write_text("hello\n")
    ws.repo.mkdir()
    ws.repo.chmod(0o555)
    ws.write_config()
    with unprivileged():
        check(ws.genarc("init"), errors.EXIT_PERMISSION, "a repository directory that refuses writes")
    ws.repo.chmod(0o755)
    assert ws.genarc("init").code == 0
    locked = ws.root / "no-state"
    locked.mkdir(mode=0o555)
    monkeypatch.setenv("XDG_STATE_HOME", str(locked / "state"))
    with unprivileged():
        check(ws.genarc("run", now=NOW), errors.EXIT_LOCAL_IO, "a state directory that refuses writes")


def test_internal_error_and_interrupted(ready, monkeypatch):
    import archiver.engine as engine

    def broken(*args, **kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr(engine, "run_job", broken)
    result = ready.genarc("run", now=NOW)
    check(result, errors.EXIT_INTERNAL, "a bug")
    assert "internal error" in result.err and "--debug" in result.err
    monkeypatch.undo()

    import archiver.changes as changes

    real_walk, run = changes.walk, os.getpid()

    def walk_then_sigterm(job, report):  # in the walk's own process, when there is a core to spare
        # As systemd stops a service, in the middle of the scan: the run and every process of it.
        os.kill(run, signal.SIGTERM)
        if os.getpid() != run:
            os.kill(os.getpid(), signal.SIGTERM)
        yield from real_walk(job, report)

    monkeypatch.setattr(changes, "walk", walk_then_sigterm)
    ready.monkeypatch.setenv("XDG_STATE_HOME", str(ready.root / "state"))
    check(ready.genarc("run", now=NOW), errors.EXIT_INTERRUPTED, "SIGTERM during a run")
    assert not list(ready.repo.glob("data/manifests/*/*.m7z"))


def test_suspicious(ready):
    texts = [ready.src / f"doc{i}.txt" for i in range(40)]
    for path in texts:
        path.write_text(f"an ordinary document, number {path.name}\n" * 40)
    check(ready.genarc("run", now=NOW), errors.EXIT_OK, "a clean run")
    for path in texts:
        path.write_bytes(os.urandom(path.stat().st_size))  # encrypted in place
    result = ready.genarc("run", now="2027-07-02T02:00:00Z")
    check(result, errors.EXIT_SUSPICIOUS, "the tripwire tripped", report_on_stdout=True)
    assert "SUSPICIOUS" in result.out and "genarc acknowledge data" in result.out


def test_every_documented_code_was_produced():
    """Runs last in this module: the table has no code that no scenario produces."""
    assert set(PRODUCED) == set(EXIT_CODES), sorted(set(EXIT_CODES) - set(PRODUCED))
