"""The tripwire's protection on servers that keep locks: a trip extends every lock the last clean point
needs, an attacker with the backup key cannot undo it, and the lifecycle that removes an unprotected
twin leaves the protected point restorable."""

from __future__ import annotations

import json
import secrets
import shutil
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from archiver.cli import main
from archiver.errors import EXIT_OK, EXIT_SUSPICIOUS
from tests.conftest import restored_root, snapshot
from tests.scenario.test_tripwire import documents, poison

DAY = 10  # seconds; matches rgw lc debug interval in scripts/ceph-rgw.sh


class Repo:
    """One repository with its own job file, source and bucket, driven through main() as cron would."""

    def __init__(self, ws, name: str, url: str, endpoint: str | None, protect_days: int) -> None:
        self.ws, self.name = ws, name
        self.src = ws.root / f"src-{name}"
        self.src.mkdir()
        self.config = ws.root / f"{name}.toml"
        (ws.root / "password").write_text("correct horse battery staple\n")
        endpoint_lines = f'endpoint_url = "{endpoint}"\nregion = "us-east-1"\n' if endpoint else ""
        self.config.write_text(
            f'[repository]\nurl = "{url}"\n{endpoint_lines}password_file = "{ws.root / "password"}"\n\n'
            "[retention]\nkeep_days = 2\ngeneration_days = 1\nmargin_days = 1\n\n"
            '[volumes]\nsize = "64KiB"\nworkers = 1\n\n'
            f'[jobs.data]\nsources = ["{self.src}"]\n\n[tripwire]\nprotect_days = {protect_days}\n')

    def genarc(self, *argv: str):
        ws = self.ws
        ws.capsys.readouterr()
        code = main(["--config", str(self.config), *argv])
        out = ws.capsys.readouterr()
        return code, out.out, out.err


def manifests(s3, bucket: str) -> list[dict]:
    listing = s3.list_object_versions(Bucket=bucket, Prefix="backups/data/manifests/")
    return sorted(listing.get("Versions", []), key=lambda v: v["LastModified"])


def chain_versions(s3, bucket: str, upto: int) -> list[tuple[str, str]]:
    """Every version the points p000001..p<upto> of generation 1 stored: their chain's manifests and volumes."""
    found = []
    for prefix in ("backups/data/manifests/", "backups/data/volumes/"):
        for v in s3.list_object_versions(Bucket=bucket, Prefix=prefix).get("Versions", []):
            if any(f"/p{n:06d}-" in v["Key"] for n in range(1, upto + 1)) and "/g000001-" in v["Key"]:
                found.append((v["Key"], v["VersionId"]))
    return found


@pytest.mark.slow
def test_ceph_protects_the_clean_point_past_its_lifecycle_and_the_attacker_cannot_undo_it(workspace, ceph,
                                                                                          monkeypatch):
    ws = workspace
    monkeypatch.setenv("GENARC_DAY_SECONDS", str(DAY))
    owner, backup = ceph.make_user("owner"), ceph.make_user("backup")
    owner_s3, backup_s3 = ceph.client(owner), ceph.client(backup)
    repos: dict[str, Repo] = {}
    buckets: dict[str, str] = {}
    monkeypatch.setenv("GENARC_ADMIN_AWS_ACCESS_KEY_ID", owner.access_key_id)
    monkeypatch.setenv("GENARC_ADMIN_AWS_SECRET_ACCESS_KEY", owner.secret_access_key)
    for name in ("poisoned", "control"):
        bucket = buckets[name] = f"genarc-tw-{name[:4]}-{secrets.token_hex(3)}"
        owner_s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        repo = repos[name] = Repo(ws, name, f"s3://{bucket}/backups", ceph.url, protect_days=12)
        code, out, _ = repo.genarc("policy", "--json")
        principal = {"AWS": [f"arn:aws:iam:::user/{ceph.uid_of(backup)}"]}
        owner_s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(
            {"Version": "2012-10-17", "Statement": [{**s, "Principal": principal} for s in json.loads(out)["Statement"]]}))
        assert repo.genarc("plan", "--apply")[0] == EXIT_OK
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", backup.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", backup.secret_access_key)

    clean: dict[str, dict] = {}
    docs: dict[str, list[Path]] = {}
    for name, repo in repos.items():
        assert repo.genarc("init")[0] == EXIT_OK
        docs[name] = documents(repo.src, 120)
        assert repo.genarc("run")[0] == EXIT_OK
        docs[name][0].write_text("the last clean change\n" * 50)
        assert repo.genarc("run")[0] == EXIT_OK  # point 2: the last clean point
        clean[name] = snapshot(repo.src)

    poison(docs["poisoned"])
    code, out, err = repos["poisoned"].genarc("run", "--json")
    assert code == EXIT_SUSPICIOUS, err
    suspicion = json.loads(out)["jobs"][0]["report"]["suspicion"]
    protected = suspicion["protected"]
    assert not protected.get("error") and "/p000002-" in protected["point"]
    until = datetime.fromisoformat(protected["until"].replace("Z", "+00:00"))
    now = datetime.now(timezone.utc)
    assert now + timedelta(seconds=11 * DAY) < until <= now + timedelta(seconds=12 * DAY + 5)
    docs["control"][1].write_text("an ordinary change\n" * 50)
    assert repos["control"].genarc("run")[0] == EXIT_OK

    # HEAD shows the new date on every object the clean point needs (its chain: points 1 and 2).
    needed = chain_versions(owner_s3, buckets["poisoned"], upto=2)
    assert len(needed) == protected["objects"] >= 4
    for key, version in needed:
        head = backup_s3.head_object(Bucket=buckets["poisoned"], Key=key, VersionId=version)
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockRetainUntilDate"] >= until - timedelta(seconds=1), key

    # The attacker holds the backup key and the password: acknowledging changes nothing stored...
    assert repos["poisoned"].genarc("acknowledge", "data")[0] == EXIT_OK
    key, version = needed[0]
    assert backup_s3.head_object(Bucket=buckets["poisoned"], Key=key, VersionId=version)[
        "ObjectLockRetainUntilDate"] >= until - timedelta(seconds=1)
    # ...and the server refuses to shorten the lock, whoever asks.
    with pytest.raises(Exception, match="AccessDenied|InvalidRequest|Forbidden"):
        backup_s3.put_object_retention(Bucket=buckets["poisoned"], Key=key, VersionId=version,
                                       Retention={"Mode": "COMPLIANCE",
                                                  "RetainUntilDate": datetime.now(timezone.utc) + timedelta(seconds=30)})

    # F + R + m + 1 days later (and more), RGW's lifecycle has removed the control's clean point...
    start = time.monotonic()
    control_left: list = chain_versions(owner_s3, buckets["control"], upto=2)
    while time.monotonic() - start < 14 * DAY:
        time.sleep(DAY / 2)
        control_left = chain_versions(owner_s3, buckets["control"], upto=2)
        if not control_left:
            break
    with ws.capsys.disabled():
        print(f"\ncontrol's clean point gone after {time.monotonic() - start:.0f} s; "
              f"{len(chain_versions(owner_s3, buckets['poisoned'], upto=2))} protected versions left")
    assert not control_left, "RGW's lifecycle never removed the unprotected clean point"
    # ...while the protected one is all there, and restores byte-exact.
    assert sorted(chain_versions(owner_s3, buckets["poisoned"], upto=2)) == sorted(needed)
    target = ws.root / "restored"
    code, _, err = repos["poisoned"].genarc("restore", "data", "--generation", "1", "--point", "2",
                                            "--target", str(target))
    assert code == EXIT_OK, err
    assert snapshot(restored_root(target, repos["poisoned"].src)) == clean["poisoned"]
    shutil.rmtree(target)
    code, _, err = repos["control"].genarc("restore", "data", "--generation", "1", "--point", "2",
                                           "--target", str(target))
    assert code != EXIT_OK  # expired, as the lifecycle promises for an unprotected point
