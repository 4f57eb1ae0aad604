#!/usr/bin/env python3
"""What genarc is for, on one screen: backups on an S3 server with Object Lock that the backup key cannot delete.

    bash scripts/demo.sh            # a local S3 server (moto's) with Object Lock, IAM and a lifecycle
    bash scripts/demo.sh --local    # the same story on a local folder (nothing is locked there)

On the S3 server it sets up the bucket as an admin would (`genarc policy` for the backup key's rights,
`genarc plan --apply` for the lifecycle), checks it with `genarc doctor`, backs up three simulated days
(GENARC_NOW) so that a synthetic full opens generation 2 by server-side copy, lists the points with their
lock dates, asks the server for a volume's lock, tries to delete that volume with the backup key and with the
admin's key (both refused by the server), restores byte-exact and verifies everything.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import logging
import os
import random
import shlex
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENARC = [sys.executable, "-m", "archiver"]
BOLD, PLAIN = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")
PASSWORD = "correct horse battery staple"


def step(text: str) -> None:
    print(f"\n{BOLD}$ {text}{PLAIN}", flush=True)


def note(text: str) -> None:
    print(f"  -> {text}", flush=True)


class Demo:
    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home, self.env = home, env
        self.config = home / "genarc.toml"

    def genarc(self, *argv: str, show: str | None = None, quiet: bool = False, check: bool = True,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        step(show or "genarc " + " ".join(shlex.quote(a) for a in argv))
        done = subprocess.run([*GENARC, "--config", str(self.config), *argv], cwd=self.home, text=True,
                              env={**self.env, **(env or {})}, capture_output=True)
        if not quiet:
            sys.stdout.write(done.stdout)
        sys.stdout.write("".join(f"  {line}\n" for line in done.stderr.splitlines()))
        sys.stdout.flush()
        if check and done.returncode != 0:
            raise SystemExit(f"demo: `genarc {' '.join(argv)}` exited {done.returncode}")
        return done


def make_source(data: Path) -> None:
    (data / "docs").mkdir(parents=True)
    (data / "photos").mkdir()
    for i in range(1, 121):
        (data / "docs" / f"note{i}.txt").write_text(f"note {i}\n" * 60)
    (data / "photos" / "holiday.raw").write_bytes(random.Random(7).randbytes(2_000_000))
    (data / "latest-note").symlink_to("docs/note1.txt")


def change_source(data: Path, day: int) -> None:
    (data / "docs" / f"note{day}.txt").write_text(f"edited on day {day}\n")
    (data / "docs" / f"note{day + 10}.txt").unlink()
    (data / "docs" / f"day{day}.txt").write_text(f"new on day {day}\n")


def write_config(path: Path, url: str, extra: str, retention: str) -> None:
    path.write_text(f'[repository]\nurl = "{url}"\npassword_file = "password"\n{extra}\n'
                    f"[retention]\n{retention}\n"
                    f'[jobs.demo]\nsources = ["data"]\nexclude = ["*.tmp"]\n')


def days(start: datetime) -> list[str]:
    """Three simulated run times: a full, an incremental, and the first run after generation 1 closed."""
    return [(start + offset).strftime("%Y-%m-%dT%H:%M:%SZ")
            for offset in (timedelta(0), timedelta(days=1), timedelta(days=2, hours=1))]


def run_days(demo: Demo, data: Path, times: list[str]) -> None:
    for day, now in enumerate(times):
        if day:
            change_source(data, day)
        env = {"GENARC_NOW": now}
        label = ["the first full", "after editing, deleting and adding a file",
                 "two days on: generation 1 is closed, generation 2 opens"][day]
        demo.genarc("run", show=f"GENARC_NOW={now} genarc run    # day {day + 1}: {label}", env=env,
                    quiet=day == 1)
        if day == 1:
            note("incremental point 1.2 written (summary left out)")
    demo.env["GENARC_NOW"] = times[-1]


def restore_and_compare(demo: Demo, data: Path) -> None:
    target = demo.home / "restored"
    demo.genarc("restore", "demo", "--target", str(target), show="genarc restore demo --target restored")
    step("diff -r data restored/.../data")
    restored = target / str(data).lstrip("/")
    if not same_tree(data, restored):
        raise SystemExit("demo: the restored tree differs from the source")
    print("  restored tree is byte-for-byte identical to the source")


def same_tree(left: Path, right: Path) -> bool:
    compared = filecmp.dircmp(left, right)
    if compared.left_only or compared.right_only or compared.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(left, right, compared.common_files, shallow=False)
    return not mismatch and not errors and all(same_tree(left / d, right / d) for d in compared.common_dirs)


def local(home: Path, env: dict[str, str]) -> None:
    demo = Demo(home, env)
    data = home / "data"
    make_source(data)
    write_config(demo.config, "repo", "", "keep_days = 3\ngeneration_days = 2\nmargin_days = 1\n")
    print("A local folder cannot lock anything: this shows genarc's backups and restores, not its protection.\n"
          "`bash scripts/demo.sh` (without --local) shows the same on an S3 server with Object Lock.")
    demo.genarc("init")
    run_days(demo, data, days(datetime.now(timezone.utc).replace(microsecond=0)))
    demo.genarc("list")
    note("the days are simulated (GENARC_NOW); \"stored\" is when the files were really written")
    restore_and_compare(demo, data)
    demo.genarc("verify", "--deep")
    demo.genarc("doctor", check=False)


def s3(home: Path, env: dict[str, str]) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.servers import MotoServer, fix_moto_copy_lock_check_in_server, without_retention_cap

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no request log on the screen
    fix_moto_copy_lock_check_in_server()
    server = MotoServer()
    try:
        _s3(home, env, server, without_retention_cap)
    finally:
        server.stop()


def _s3(home: Path, env: dict[str, str], server, without_retention_cap) -> None:
    demo = Demo(home, env)
    data = home / "data"
    make_source(data)
    admin = server.make_admin()
    bucket = server.make_bucket("demo-backups")
    print(f"A local S3 server (moto) is listening on {server.url}, with bucket {bucket}: versioning and Object Lock "
          "on, IAM enforced. The admin's key set it up; backups use a key with only the rights genarc needs.")
    write_config(demo.config, f"s3://{bucket}/genarc", f'endpoint_url = "{server.url}"\nregion = "us-east-1"\n',
                 "keep_days = 3\ngeneration_days = 2\nmargin_days = 1\n")

    policy = demo.genarc("policy", "--json", quiet=True, show="genarc policy --json > policy.json")
    document = json.loads(policy.stdout)
    (home / "policy.json").write_text(policy.stdout)
    denied = sorted({a.removeprefix("s3:") for s in document["Statement"] if s["Effect"] == "Deny"
                     and not s.get("Condition") for a in _actions(s)})
    note(f"{len(document['Statement'])} statements; always denied: {', '.join(denied)}")
    backup = server.make_user("backup", without_retention_cap(document))  # moto cannot evaluate the cap's key
    server.enforce_iam()
    note("the admin created the backup key with exactly this policy")
    admin_env = {"GENARC_ADMIN_AWS_ACCESS_KEY_ID": admin.access_key_id,
                 "GENARC_ADMIN_AWS_SECRET_ACCESS_KEY": admin.secret_access_key}
    demo.genarc("plan", "--apply", env=admin_env, show="genarc plan --apply    # with the admin's key: lifecycle rules")
    demo.env.update(AWS_ACCESS_KEY_ID=backup.access_key_id, AWS_SECRET_ACCESS_KEY=backup.secret_access_key)
    note("from here on, genarc runs with the backup key only")
    demo.genarc("init")
    times = days(datetime.now(timezone.utc).replace(microsecond=0))
    demo.genarc("doctor", env={"GENARC_NOW": times[0]})
    run_days(demo, data, times)
    demo.genarc("list")
    note("the days are simulated (GENARC_NOW); \"stored\" is the server's own clock, which no client can set")

    s3 = server.client(admin)
    volume = next(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="genarc/demo/")["Contents"]
                  if "/volumes/g000001-" in o["Key"] and o["Key"].endswith(".7z"))
    version = s3.list_object_versions(Bucket=bucket, Prefix=volume)["Versions"][0]["VersionId"]
    head = s3.head_object(Bucket=bucket, Key=volume, VersionId=version)
    step(f"aws s3api head-object --bucket {bucket} --key {volume.rsplit('/', 1)[-1]} ...   # the server's own word")
    print(f"  ObjectLockMode: {head['ObjectLockMode']}  ObjectLockRetainUntilDate: "
          f"{head['ObjectLockRetainUntilDate'].astimezone(timezone.utc):%Y-%m-%dT%H:%M:%SZ}")
    why = {"the backup key": "its policy grants no delete of any kind",
           "the admin's key": "full rights, but the version is locked in compliance mode until the date above"}
    for who, keys in (("the backup key", backup), ("the admin's key", admin)):
        step(f"aws s3api delete-object --bucket {bucket} --key ...{volume[-24:]} --version-id ...   # with {who}")
        try:
            server.client(keys).delete_object(Bucket=bucket, Key=volume, VersionId=version)
        except Exception as exc:  # botocore's ClientError: the server's refusal, as it sent it
            error = getattr(exc, "response", {}).get("Error", {})
            print(f"  refused by the server: {error.get('Code', type(exc).__name__)}: {error.get('Message', exc)}")
            note(why[who])
        else:
            raise SystemExit(f"demo: the server let {who} delete a locked version")
    restore_and_compare(demo, data)
    demo.genarc("verify", "--deep")
    print("\nThe S3 server stops with the demo, and its bucket with it; the job file, policy and restored files stay.")


def _actions(statement: dict) -> list[str]:
    actions = statement.get("Action", [])
    return [actions] if isinstance(actions, str) else list(actions)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--local", action="store_true", help="use a local folder instead of an S3 server")
    parser.add_argument("--dir", help="where to put the demo's files (default: a new temporary folder)")
    args = parser.parse_args()
    home = Path(args.dir or tempfile.mkdtemp(prefix="genarc-demo."))
    home.mkdir(parents=True, exist_ok=True)
    (home / "password").write_text(PASSWORD + "\n")
    (home / "password").chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GENARC_", "AWS_"))}
    env.update(XDG_STATE_HOME=str(home / "state"), PYTHONPATH=str(ROOT), AWS_EC2_METADATA_DISABLED="true")
    (local if args.local else s3)(home, env)
    print(f"\nEverything is in {home}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
