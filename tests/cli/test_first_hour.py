"""A newcomer's first hour: each rough edge they hit, reproduced and held to what a careful user expects."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from archiver import __version__
from archiver.cli import main
from archiver.errors import EXIT_CONFIG, EXIT_LOCAL_IO, EXIT_OK, EXIT_UNSAFE, EXIT_USAGE
from archiver.store.local import LocalStore

ROOT = Path(__file__).resolve().parents[2]
NOW = "2027-03-01T02:00:00Z"
UNPROTECTED = LocalStore.capabilities.unprotected


@pytest.fixture
def backed_up(workspace):
    (workspace.src / "some" / "path").mkdir(parents=True)
    (workspace.src / "some" / "path" / "a.txt").write_text("a\n")
    for i in range(30):
        (workspace.src / f"file{i:02d}.txt").write_text(f"file {i}\n")
    workspace.write_config()
    assert workspace.genarc("init").code == EXIT_OK
    assert workspace.genarc("run", now=NOW).code == EXIT_OK
    return workspace


def cli(ws, *argv: str, **kwargs) -> subprocess.CompletedProcess:
    """genarc in its own process, as a shell runs it (pipes and /dev/full are real)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GENARC_NOW": NOW}
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.run([sys.executable, "-m", "archiver", "--config", str(ws.config), *argv], env=env, text=True,
                          **kwargs)


def test_ls_takes_the_path_after_the_options_as_docs_cli_shows(backed_up):
    prefix = str(backed_up.src).lstrip("/") + "/some/path"
    after = backed_up.genarc("ls", "data", "--generation", "1", "--point", "1", prefix)
    before = backed_up.genarc("ls", "data", prefix, "--generation", "1", "--point", "1")
    assert after.code == before.code == EXIT_OK
    assert after.out == before.out and "some/path/a.txt" in after.out and "file01" not in after.out
    dashed = backed_up.genarc("ls", "data", "--point", "1", "--", prefix)
    assert dashed.code == EXIT_OK and dashed.out == after.out
    extra = backed_up.genarc("ls", "data", prefix, "--point", "1", "another/path")
    assert extra.code == EXIT_USAGE and "genarc ls: error: unrecognized arguments: another/path" in extra.err
    nothing = backed_up.genarc("ls", "data", "some/path")  # the absolute prefix left out
    assert nothing.code == EXIT_USAGE and "stored paths are absolute without the leading slash" in nothing.err


def test_a_reader_that_stops_early_is_not_an_error_and_a_full_disk_is_exit_9(backed_up):
    piped = subprocess.run(f"{sys.executable} -m archiver --config {backed_up.config} ls data | head -1; "
                           "exit ${PIPESTATUS[0]}", shell=True, executable="/bin/bash", capture_output=True,
                           text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "GENARC_NOW": NOW})
    assert piped.returncode == EXIT_OK and piped.stderr == "" and len(piped.stdout.splitlines()) == 1
    with open("/dev/full", "w") as full:
        done = cli(backed_up, "ls", "data", stdout=full, stderr=subprocess.PIPE)
    assert done.returncode == EXIT_LOCAL_IO
    assert "cannot write to standard output: No space left on device" in done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    # A run whose summary nobody reads still backs up every job.
    (backed_up.src / "new.txt").write_text("new\n")
    with open("/dev/full", "w") as full:
        ran = cli(backed_up, "run", "data", stdout=full, stderr=subprocess.PIPE)
    assert ran.returncode == EXIT_LOCAL_IO
    assert "new.txt" in backed_up.genarc("ls", "data").out
    # Standard output closed before the start, or standard error full: the command still does its work.
    closed = subprocess.run(f"{sys.executable} -m archiver --config {backed_up.config} list >&-; echo $?",
                            shell=True, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "GENARC_NOW": NOW})
    assert closed.stdout == "0\n" and "Traceback" not in closed.stderr
    (backed_up.root / "password").chmod(0o644)  # a warning to write
    with open("/dev/full", "w") as full:
        warned = cli(backed_up, "list", stderr=full)
    assert warned.returncode == EXIT_OK and "job data" in warned.stdout


def test_a_job_not_due_says_when_it_is_and_how_to_run_it_now(backed_up, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")  # schedules speak local wall time
    time.tzset()
    try:
        backed_up.config.write_text(backed_up.config.read_text() + 'schedule = "daily at 02:30"\n')
        second = backed_up.genarc("run", now="2027-03-01T02:10:00Z")  # the last run was at 02:00
        assert second.code == EXIT_OK
        assert second.out.splitlines() == [
            "data: not due until 2027-03-01T02:30:00Z by its schedule; `genarc run data` runs it now"]
        as_json = backed_up.genarc("run", "--json", now="2027-03-01T02:10:00Z").json
        assert as_json["not_due"] == ["data"] and as_json["next_due"] == {"data": "2027-03-01T02:30:00Z"}
        now = backed_up.genarc("run", "data", now="2027-03-01T02:10:00Z")
        assert now.code == EXIT_OK and "point 2" in now.out
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize("command", [("list",), ("ls",), ("restore", "--target", "T"), ("verify",), ("watch",),
                                     ("audit",), ("hold", "--admin-profile", "x")])
@pytest.mark.parametrize("job", ["hmoe", "..", "../data", "a" * 300, "da\nta", "data~x~y"])
def test_an_unknown_job_is_a_usage_error_naming_the_real_ones(backed_up, command, job):
    """Also names no job file could define: none is used to build a key (no walk outside the repository)."""
    (backed_up.root / "manifests").mkdir()  # what `..` would reach next to the repository
    result = backed_up.genarc(command[0], job, *command[1:])
    assert result.code == EXIT_USAGE, (result.out, result.err)
    shown = job.replace("\n", "\\n")  # escaped once, as every name in a message
    assert f"No job '{shown}' in the repository" in result.err and "(jobs there: data)" in result.err
    assert result.out == ""


def test_a_local_repository_is_called_unlocked_everywhere(backed_up):
    (backed_up.src / "more.txt").write_text("more\n")
    run = backed_up.genarc("run", now="2027-03-02T02:00:00Z")
    assert "locked until" not in run.out and f"not locked: {UNPROTECTED}" in run.out
    report = backed_up.genarc("run", "--json", now="2027-03-03T02:00:00Z").json["jobs"][0]["report"]
    assert report["lock_until"] == report["expires_from"] == "" and report["unprotected"] == UNPROTECTED
    listed = backed_up.genarc("list")
    assert "locked until" not in listed.out and "not locked (local directory)  never expires by itself" in listed.out
    plan = backed_up.genarc("plan")
    assert plan.out.startswith(f"this repository: {UNPROTECTED}.")
    assert backed_up.genarc("plan", "--json").json["unprotected"] == UNPROTECTED
    watch = backed_up.genarc("watch", "--json", now="2027-03-02T03:00:00Z")
    doctor = backed_up.genarc("doctor", "--json")
    assert watch.code == doctor.code == EXIT_UNSAFE
    assert {"job": "", "kind": "unprotected", "message": UNPROTECTED} in watch.json["findings"]
    assert {"name": "local repository", "status": "fail", "detail": UNPROTECTED} in doctor.json["checks"]
    human = backed_up.genarc("doctor")
    assert "LocalStore" not in human.out and human.out.splitlines()[-1] == "ransomware-safe: NO (see the 1 FAIL line above)"


def test_a_restore_target_below_a_file_gets_advice_that_fits(backed_up):
    (backed_up.root / "afile").write_text("x\n")
    below = backed_up.genarc("restore", "data", "--target", str(backed_up.root / "afile" / "sub"))
    assert below.code == EXIT_LOCAL_IO and "--overwrite" not in below.err and "choose another target" in below.err
    itself = backed_up.genarc("restore", "data", "--target", str(backed_up.root / "afile"))
    assert itself.code == EXIT_USAGE and "--overwrite" not in itself.err and "choose a directory" in itself.err


def test_version_help_and_a_second_init(backed_up, capsys):
    assert main(["--version"]) == EXIT_OK and capsys.readouterr().out.strip() == f"genarc {__version__}"
    assert main([]) == EXIT_USAGE
    shown = capsys.readouterr()
    assert "COMMAND" in shown.out and "restore" in shown.out and "exit codes:" in shown.out and shown.err == ""
    again = backed_up.genarc("init")
    assert again.code == EXIT_OK and "already exists" in again.out


def test_a_password_file_others_can_read_is_named(backed_up):
    password = backed_up.root / "password"
    assert backed_up.genarc("list").err == ""  # 0600: nothing to say
    password.chmod(0o644)
    warned = backed_up.genarc("list")
    assert warned.code == EXIT_OK
    assert f"is open to users other than its owner (mode 644); run `chmod 600 {password}`" in warned.err
    # A pipe or /dev/stdin is nobody's to chmod; a binary, huge or looping "password file" is a config error.
    piped = subprocess.run(f"{sys.executable} -m archiver --repository {backed_up.repo} "
                           f"--password-file <(cat {password}) list", shell=True, executable="/bin/bash",
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert piped.returncode == EXIT_OK and "chmod" not in piped.stderr, piped.stderr
    (backed_up.root / "binary").write_bytes(b"\xff\xfe\n")
    (backed_up.root / "loop1").symlink_to("loop2")
    (backed_up.root / "loop2").symlink_to("loop1")
    for bad, said in (("binary", "is not UTF-8 text"), ("loop1", "cannot read password_file"),
                      ("/dev/zero", "holds more than 64 KiB")):
        result = backed_up.genarc("--repository", str(backed_up.repo), "--password-file",
                                  str(backed_up.root / bad), "list", job_file=False)
        assert result.code == EXIT_CONFIG and said in result.err and "internal error" not in result.err, bad


def test_an_unknown_table_is_named_with_the_one_that_was_meant(workspace):
    workspace.write_config()
    text = workspace.config.read_text().replace("[jobs.data]", "[job.data]")
    workspace.config.write_text(text)
    result = workspace.genarc("list")
    assert result.code == EXIT_CONFIG
    assert "[job]: unknown table; did you mean [jobs.data]?" in result.err and "jobs is required" not in result.err
    typo = workspace.config.read_text().replace("[job.data]", "[jobs.data]").replace("keep_days", "keep_dayz")
    workspace.config.write_text(typo)
    assert "retention.keep_dayz: unknown key; did you mean keep_days?" in workspace.genarc("list").err
    plain = typo.replace("keep_dayz", "keep_days").replace("[repository]", "[repositori]")
    workspace.config.write_text(plain)
    assert "repository is required (repositori is there: a misspelling?)" in workspace.genarc("list").err


def test_include_matches_literal_stars_and_brackets_without_a_python_warning(workspace):
    for name in ("a*b", "axb", "[x]", "x"):
        (workspace.src / name).write_text(name)
    workspace.write_config()
    assert workspace.genarc("init").code == EXIT_OK and workspace.genarc("run", now=NOW).code == EXIT_OK
    base = str(workspace.src).lstrip("/")
    cases = [(r"a\*b", {"a*b"}), ("a*b", {"a*b", "axb"}), (r"\[x]", {"[x]"}), ("[[]x]", {"[x]"}),
             ("[*]b", set()), ("?", {"x"})]
    for number, (pattern, wanted) in enumerate(cases):
        target = workspace.root / f"restored{number}"
        done = subprocess.run([sys.executable, "-W", "error", "-m", "archiver", "--config", str(workspace.config),
                               "restore", "data", "--target", str(target), "--include", f"{base}/{pattern}"],
                              env={**os.environ, "PYTHONPATH": str(ROOT), "GENARC_NOW": NOW}, capture_output=True,
                              text=True)
        assert "Warning" not in done.stderr, (pattern, done.stderr)
        got = {p.name for p in target.rglob("*") if p.is_file()} if target.exists() else set()
        assert got == wanted, pattern
        assert done.returncode == (EXIT_OK if wanted else EXIT_USAGE), (pattern, done.stderr)


def test_watch_names_the_age_as_it_was_written(backed_up):
    stale = backed_up.genarc("watch", "--max-age", "26h", "--json", now="2027-03-03T02:00:00Z")
    message, = [f["message"] for f in stale.json["findings"] if f["kind"] == "stale"]
    assert message.endswith("older than 26h")
    huge = backed_up.genarc("watch", "--max-age", "99999999999d")
    assert huge.code == EXIT_USAGE and "longer than any date can reach" in huge.err


def test_the_readme_plan_example_is_the_programs_output():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_readme_plan.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    readme = (ROOT / "README.md").read_text()
    assert "275.1 GB" not in readme and "about 4250 requests" not in readme


def test_the_readmes_use_it_section_works_on_a_fresh_account():
    readme = (ROOT / "README.md").read_text()
    use = readme.split("## Use it", 1)[1].split("\n## ", 1)[0]
    block = use.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
    assert block[0] == 'export PATH="$PWD/.venv/bin:$PATH"'
    assert block.index("mkdir -p ~/.config/genarc") < next(i for i, l in enumerate(block) if l.startswith("cp "))
    assert "TARGET" in use or "/tmp/r/home/alice/docs/a.txt" in use


def test_test_sh_prints_durations_and_cleans_its_temporary_folders():
    script = (ROOT / "scripts" / "test.sh").read_text()
    assert "--durations=15" in script and '--basetemp "$scratch/pytest"' in script
    assert 'TMPDIR="$scratch"' in script and 'rm -rf "$scratch"' in script and "trap cleanup EXIT" in script
