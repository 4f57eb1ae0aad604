"""Hostile names and settings: one odd entry never stops a run, names never forge output, bad settings are refused."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from archiver.errors import EXIT_CONFIG, EXIT_INTERNAL, EXIT_OK, EXIT_PARTIAL
from archiver.names import escape, unescape
from tests.cli.test_monitoring import metrics_of

NOW, LATER = "2027-03-01T02:00:00Z", "2027-03-02T02:00:00Z"
BAD_TARGET = b"/nowhere/caf\xe9-\xff"


def two_jobs(ws, first: Path, second: Path, marker: Path) -> None:
    ws.write_config()
    text = ws.config.read_text().replace("[jobs.data]", "[jobs.first]").replace(json.dumps([str(ws.src)]),
                                                                                json.dumps([str(first)]))
    hooks = (f'on_success = "echo ok $GENARC_JOB $GENARC_EXIT_CODE >> {marker}"\n'
             f'on_failure = "echo failed $GENARC_JOB $GENARC_EXIT_CODE >> {marker}"\n')
    ws.config.write_text(text + hooks + f'\n[jobs.second]\nsources = ["{second}"]\n' + hooks)


def test_a_bad_entry_in_the_first_job_stops_neither_it_nor_the_next(workspace):
    ws = workspace
    first, second = ws.root / "first", ws.root / "second"
    first.mkdir()
    second.mkdir()
    os.symlink(BAD_TARGET, os.fsencode(first) + b"/link-\xfe")
    (first / "far-future.txt").write_text("content is kept\n")
    os.utime(first / "far-future.txt", ns=(16_000_000_000 * 10**9, 16_000_000_000 * 10**9))  # the year 2477
    (second / "plain.txt").write_text("second job\n")
    marker = ws.root / "hooks.log"
    two_jobs(ws, first, second, marker)
    assert ws.genarc("init").code == EXIT_OK
    metrics = ws.root / "genarc.prom"
    result = ws.genarc("run", "--json", "--metrics-file", str(metrics), now=NOW)
    assert result.code == EXIT_PARTIAL, result.err
    outcomes = {j["job"]: j for j in result.json["jobs"]}
    assert outcomes["first"]["exit_code"] == EXIT_PARTIAL and outcomes["second"]["exit_code"] == EXIT_OK
    assert any("far-future.txt" in w and "1677-2262" in w for w in outcomes["first"]["report"]["warnings"])
    assert marker.read_text().split("\n")[:2] == ["ok first 1", "ok second 0"]
    assert metrics_of(metrics)["genarc_last_run_exit_code"] in (0, 1)
    # The link with a target that is not UTF-8 comes back byte for byte.
    target = ws.root / "r"
    assert ws.genarc("restore", "first", "--target", str(target), now=NOW).code == EXIT_OK
    restored = os.fsencode(target) + os.fsencode(str(first)) + b"/link-\xfe"
    assert os.readlink(restored) == BAD_TARGET
    assert (target / str(first).lstrip("/") / "far-future.txt").read_text() == "content is kept\n"


def test_a_bug_in_one_job_fails_that_job_only(workspace, monkeypatch):
    ws = workspace
    first, second = ws.root / "first", ws.root / "second"
    first.mkdir()
    second.mkdir()
    marker = ws.root / "hooks.log"
    two_jobs(ws, first, second, marker)
    assert ws.genarc("init").code == EXIT_OK
    import archiver.engine as engine

    real = engine.run_job

    def buggy(repo, config, job, **kwargs):
        if job.name == "first":
            raise KeyError("a bug")
        return real(repo, config, job, **kwargs)

    monkeypatch.setattr(engine, "run_job", buggy)
    metrics = ws.root / "genarc.prom"
    result = ws.genarc("run", "--metrics-file", str(metrics), now=NOW)
    assert result.code == EXIT_INTERNAL
    assert "internal error" in result.err and "--debug" in result.err and "Traceback" not in result.err
    assert marker.read_text().split("\n")[:2] == [f"failed first {EXIT_INTERNAL}", "ok second 0"]
    assert "second: active full" in result.out


def fifo_name() -> str:
    return "fi\nfo\x1b[31mred"


def test_names_never_forge_a_line_and_json_keeps_every_byte(workspace):
    ws = workspace
    os.mkfifo(ws.src / fifo_name())
    (ws.src / os.fsdecode(b"caf\xe9.txt")).write_text("not utf-8 name\n")
    (ws.src / "caf\\xe9.txt").write_text("a real backslash, x, e and 9\n")
    (ws.src / "tab\there").write_text("tab\n")
    ws.write_config()
    assert ws.genarc("init").code == EXIT_OK
    run = ws.genarc("run", now=NOW)
    assert run.code == EXIT_OK
    assert "\x1b" not in run.out + run.err
    note = [line for line in run.out.splitlines() if "special file" in line]
    assert len(note) == 1 and "fi\\nfo\\u{1b}[31mred" in note[0]
    listing = ws.genarc("ls", "data", now=NOW).out.splitlines()
    assert any(line.endswith("/caf\\xe9.txt") for line in listing)
    assert any(line.endswith("/caf\\\\xe9.txt") for line in listing)  # told apart: the backslash is escaped
    assert any(line.endswith("/tab\\there") for line in listing)
    entries = ws.genarc("ls", "data", "--json", now=NOW).json["entries"]
    by_bytes = {base64.b64decode(e["path_bytes"]) if "path_bytes" in e else e["path"].encode(): e for e in entries}
    assert os.fsencode(str(ws.src).lstrip("/")) + b"/caf\xe9.txt" in by_bytes
    assert os.fsencode(str(ws.src).lstrip("/")) + b"/tab\there" in by_bytes


@pytest.mark.parametrize("name", [b"plain", b"new\nline", b"esc\x1b", b"caf\xe9", b"back\\slash", b"\\x41",
                                  "日本".encode(), b"\xff\xfe", "\u202eevil".encode(), b"\\u{1b}"])
def test_escaping_is_printable_and_reversible(name):
    shown = escape(name)
    assert shown.isprintable() and "\n" not in shown
    assert unescape(shown) == name
    assert escape(os.fsdecode(name)) == shown


@pytest.mark.parametrize("edit, key", [
    (("keep_days = 30", "keep_days = 1000000000"), "retention.keep_days"),
    (("margin_days = 1", "margin_days = -1"), "retention.margin_days"),
    (("keep_days = 30", "keep_days = 30000\nkeep_monthly = 5000"), "retention.keep_monthly"),
    (("keep_days = 30", "keep_days = 30000\ngeneration_days = 7000"), "retention"),
    (("workers = 2", "workers = 100000"), "volumes.max_files"),
])
def test_out_of_range_settings_are_a_config_error(workspace, edit, key):
    ws = workspace
    ws.write_config()
    text = ws.config.read_text()
    if "generation_days = 7000" in edit[1]:
        text = text.replace("generation_days = 7\n", "")
    ws.config.write_text(text.replace(*edit))
    result = ws.genarc("run", now=NOW)
    assert result.code == EXIT_CONFIG and key in result.err and "Traceback" not in result.err


def test_a_white_space_password_is_refused_and_a_long_span_warns(workspace):
    ws = workspace
    ws.write_config(password="   ")
    result = ws.genarc("init")
    assert result.code == EXIT_CONFIG and "white space" in result.err
    ws.write_config(keep_days=3, generation_days=7)
    result = ws.genarc("init")
    assert result.code == EXIT_OK and "generation_days (7) is longer than keep_days (3)" in result.err
    ws.monkeypatch.setenv("GENARC_DAY_SECONDS", "999999999")
    assert ws.genarc("list").code == EXIT_CONFIG


@pytest.fixture
def one_point(workspace):
    """A repository holding one point of a one-file tree."""
    (workspace.src / "a.txt").write_text("a\n")
    workspace.write_config()
    assert workspace.genarc("init").code == EXIT_OK
    assert workspace.genarc("run", now=NOW).code == EXIT_OK
    return workspace


def test_a_glob_that_cannot_match_is_a_clear_error(one_point):
    ws = one_point
    result = ws.genarc("restore", "data", "--target", str(ws.root / "r"), "--include", "[z-\x1b]", now=NOW)
    assert result.code == 2 and "--include" in result.err and "\x1b" not in result.err
    ws.write_config(exclude=["[z-a]"])
    result = ws.genarc("run", now=LATER)
    assert result.code == EXIT_CONFIG and "exclude" in result.err and "Traceback" not in result.err


def test_a_restore_target_that_is_a_file_is_a_usage_error(one_point):
    ws = one_point
    (ws.root / "a-file").write_text("not a folder\n")
    result = ws.genarc("restore", "data", "--target", str(ws.root / "a-file"), now=NOW)
    assert result.code == 2 and "not a directory" in result.err and "--overwrite" not in result.err
    assert (ws.root / "a-file").read_text() == "not a folder\n"
