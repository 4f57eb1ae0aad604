"""After a disaster: the read commands from a repository URL and a password alone.

Section 1 of docs/restore-without-genarc.md is run as printed, against moto's S3 server with IAM
enforced and the watchdog's read-only key, on a fresh state directory, with no job file anywhere.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from archiver.errors import EXIT_CONFIG, EXIT_OK, EXIT_USAGE
from tests.conftest import restored_root, snapshot
from tests.servers import MotoServer

DAYS = ["2027-03-01T02:00:00Z", "2027-03-02T02:00:00Z"]
DOC = Path(__file__).resolve().parents[2] / "docs" / "restore-without-genarc.md"


def section_one() -> list[str]:
    text = DOC.read_text()
    section = text.split("## 1. ", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return block.splitlines()


@pytest.fixture
def moto():
    server = MotoServer()
    yield server
    server.stop()


def backed_up_on_s3(ws, moto) -> tuple[str, dict]:
    """A repository on moto with two points of job `data`; the machine that wrote it is then gone."""
    bucket = moto.make_bucket()
    url = f"s3://{bucket}/backups"
    ws.write_config(url=url, endpoint_url=moto.url, keep_days=3, generation_days=2, margin_days=1)
    (ws.src / "docs").mkdir()
    (ws.src / "docs" / "a.txt").write_text("first\n")
    (ws.src / "b.bin").write_bytes(bytes(range(256)) * 40)
    ws.monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto.admin.access_key_id)
    ws.monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto.admin.secret_access_key)
    assert ws.genarc("init").code == EXIT_OK
    assert ws.genarc("run", now=DAYS[0]).code == EXIT_OK
    (ws.src / "docs" / "a.txt").write_text("second\n")
    assert ws.genarc("run", now=DAYS[1]).code == EXIT_OK
    watchdog = ws.genarc("policy", "--watchdog", "--json").json
    return url, watchdog


def test_the_docs_clean_machine_commands_work_from_the_url_and_the_password(workspace, moto, monkeypatch):
    ws = workspace
    url, watchdog_policy = backed_up_on_s3(ws, moto)
    source = snapshot(ws.src)
    moto.make_admin()
    reader = moto.make_user("watchdog", watchdog_policy)
    moto.enforce_iam()

    # The clean machine: no job file, no state, no catalog; a read-only key and the password.
    clean = ws.root / "clean-machine"
    clean.mkdir()
    monkeypatch.chdir(clean)
    ws.config.unlink()
    state = clean / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(clean / "config"))
    monkeypatch.setenv("HOME", str(clean))
    monkeypatch.setenv("GENARC_NOW", "2027-03-02T09:00:00Z")  # the simulated days; the locks are real
    lines = section_one()
    exports = [line for line in lines if line.startswith("export ")]
    assert exports == ["export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=..."]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", reader.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", reader.secret_access_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    password_line, = [line for line in lines if line.startswith("printf ")]
    password = (ws.root / "password").read_text().rstrip("\n")
    done = subprocess.run(["bash", "-c", password_line.replace("the repository password", password)], cwd=clean)
    assert done.returncode == 0 and (clean / "password").stat().st_mode & 0o777 == 0o600

    bucket, prefix = url.removeprefix("s3://").split("/", 1)
    commands = [line for line in lines if line.startswith("genarc ")]
    assert [shlex.split(c)[7] for c in commands] == ["list", "verify", "ls", "restore", "audit"]
    results = {}
    for command in commands:
        argv = [{"s3://BUCKET/PREFIX": f"s3://{bucket}/{prefix}", "ENDPOINT": moto.url, "JOB": "data"}.get(a, a)
                for a in shlex.split(command)[1:]]
        result = ws.genarc(*argv, "--json", job_file=False) if argv[6] != "ls" else ws.genarc(*argv, job_file=False)
        results[argv[6]] = result
        assert result.code == EXIT_OK, (argv, result.out, result.err)
        assert "Traceback" not in result.err
    listed = results["list"].json
    assert [item["job"] for item in listed] == ["data"]
    generation = listed[0]["generations"][0]
    assert [p["point"] for p in generation["points"]] == [1, 2]
    # Without the job file, the lock and expiry dates come from what the manifests recorded.
    assert generation["locked_until"] == "2027-03-07T02:00:00Z" and generation["lock_mode"] == "compliance"
    assert generation["dates_from"] == "recorded"  # a claim of the manifest; audit checks the server's locks
    assert "docs/a.txt" in results["ls"].out and "b.bin" in results["ls"].out
    assert snapshot(restored_root(clean / "restored", ws.src)) == source
    assert (restored_root(clean / "restored", ws.src) / "docs" / "a.txt").read_text() == "second\n"
    assert results["verify"].json["exit_code"] == EXIT_OK
    assert not state.exists() or not any(state.rglob("*.sqlite"))  # no catalog was needed, none was made

    # The job-file form of the same: only [repository]; and the environment variables.
    (clean / "genarc.toml").write_text(f'[repository]\nurl = "{url}"\nendpoint_url = "{moto.url}"\n'
                                       'region = "us-east-1"\npassword_file = "password"\n')
    assert ws.genarc("list", "data", job_file=False).code == EXIT_OK
    watched = ws.genarc("watch", "--max-age", "1000d", "--json", job_file=False)
    assert watched.code == EXIT_OK, watched.out
    needs_jobs = ws.genarc("run", job_file=False)
    assert needs_jobs.code == EXIT_CONFIG and "needs at least one job" in needs_jobs.err
    (clean / "genarc.toml").unlink()
    monkeypatch.setenv("GENARC_REPOSITORY", url)
    monkeypatch.setenv("GENARC_PASSWORD_FILE", str(clean / "password"))
    docs = str(ws.src / "docs").lstrip("/")
    via_env = ws.genarc("--endpoint-url", moto.url, "ls", "data", docs, "--json", job_file=False)
    assert via_env.code == EXIT_OK and [e["path"] for e in via_env.json["entries"]][-1].endswith("docs/a.txt")


def test_a_repository_read_from_flags_says_what_is_missing(workspace, monkeypatch):
    ws = workspace
    ws.write_config()
    (ws.src / "f.txt").write_text("x\n")
    assert ws.genarc("init").code == EXIT_OK and ws.genarc("run").code == EXIT_OK
    repo = str(ws.repo)
    no_password = ws.genarc("--repository", repo, "list", job_file=False)
    assert no_password.code == EXIT_CONFIG and "--password-file" in no_password.err
    typo = ws.genarc("--repository", repo + "x", "--password-file", str(ws.root / "password"), "list", job_file=False)
    assert typo.code == 8 and "check the URL" in typo.err and "genarc init" not in typo.err
    empty = ws.genarc("--repository", "", "list", job_file=False)
    assert empty.code == EXIT_USAGE and "--repository needs a URL" in empty.err
    # A GENARC_REPOSITORY left set after a recovery never redirects a machine whose job file is found.
    monkeypatch.setenv("GENARC_REPOSITORY", str(ws.root / "elsewhere"))
    monkeypatch.setenv("GENARC_CONFIG", str(ws.config))
    assert ws.genarc("list", job_file=False).code == EXIT_OK
    monkeypatch.delenv("GENARC_REPOSITORY")
    both = ws.genarc("--repository", repo, "--config", str(ws.config), "list", job_file=False)
    assert both.code == EXIT_USAGE and "not both" in both.err
    stray = ws.genarc("list", "--password-file", str(ws.root / "password"))
    assert stray.code == EXIT_USAGE and "goes with --repository" in stray.err
    run = ws.genarc("run", "--repository", repo, "--password-file", str(ws.root / "password"), job_file=False)
    assert run.code == EXIT_USAGE and "needs a job file" in run.err
    after = ws.genarc("list", "--repository", repo, "--password-file", str(ws.root / "password"), "--json",
                      job_file=False)  # the options also follow the command's name
    assert after.code == EXIT_OK and after.json[0]["job"] == "data"
    # A local repository locks nothing and expires nothing: said, not dated.
    generation = after.json[0]["generations"][0]
    assert generation["locked_until"] is None and generation["not_locked"] == "local directory"
    assert generation["expires_from"] is None


def test_the_manifests_recorded_dates_are_read_only_as_numbers():
    """Without a job file, list takes a generation's policy from a manifest, which whoever holds the password
    can write: anything but plain day counts gives no date (and no crash)."""
    from types import SimpleNamespace

    from archiver.cli.list import _recorded
    from archiver.errors import IntegrityError

    class Recorded:
        def __init__(self, header):
            self.header = header

        def load(self, repo, point, workdir):
            if self.header is None:
                raise IntegrityError("unreadable")
            return SimpleNamespace(header=self.header)

    good = {"keep_days": 30, "generation_days": 7, "margin_days": 1, "day_seconds": 86400}
    policy, mode = _recorded(None, Recorded({"policy": good, "lock": {"mode": "compliance"}}), None, None)
    assert (policy.lock_days, mode) == (38, "compliance")
    for header in (None, {}, {"policy": None, "lock": {}}, {"policy": {**good, "keep_days": "x"}, "lock": {}},
                   {"policy": {**good, "keep_days": -5}, "lock": {"mode": "compliance"}},
                   {"policy": {**good, "generation_days": 10**9}, "lock": {"mode": "compliance"}},
                   {"policy": {**good, "day_seconds": 0}, "lock": {"mode": "compliance"}},
                   {"policy": good, "lock": "compliance"}):
        policy, mode = _recorded(None, Recorded(header), None, None)
        assert policy is None and mode.startswith("unknown"), header
