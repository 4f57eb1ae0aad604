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
from archiver.errors import EXIT_OK, EXIT_SUSPICIOUS, EXIT_UNSAFE
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


def test_b2_simulator_protects_the_clean_point_through_file_retention(workspace):
    from archiver import config as config_mod
    from archiver.admin.lifecycle import LifecycleExecutor, UploadLedger
    from archiver.backup import run_job
    from archiver.clock import FixedClock
    from archiver.generation import lifecycle_age_days
    from archiver.plan import b2_lifecycle, job_prefixes
    from archiver.policy import b2_backup_capabilities
    from archiver.repository import Repository
    from archiver.restore import restore
    from archiver.store import open_store
    from archiver.store.inspect import rules_from_b2
    from archiver.store.b2 import B2Store
    from tests.conftest import history_of
    from tests.scenario.test_year_of_lifecycle import Recording
    from tests.servers import B2Sim, B2SimAdmin

    ws = workspace
    t0 = datetime.now(timezone.utc).replace(microsecond=0)
    clock = FixedClock(t0)
    ledger = UploadLedger()  # the simulator's upload stamps are a counter: the executor goes by this record
    setups, sims = {}, {}
    for name in ("poisoned", "control"):
        # One simulator each: the simulator numbers file ids per bucket, so two buckets of one simulator
        # share ids and a read by id can reach the other bucket's file (the real B2's ids are unique).
        sim = sims[name] = B2Sim()
        key_id, key = sim.make_key(b2_backup_capabilities(lock=True))
        api = sim.api_for(key_id, key)
        bucket = sim.make_bucket(lock=True)
        src = ws.root / f"src-{name}"
        src.mkdir()
        # Governance, so that the simulated lifecycle can remove what its simulated clock has unlocked while
        # the simulator checks real time (compliance, in real time, is the Ceph test's).
        ws.write_config(url=f"b2://{bucket}/backups", keep_days=2, generation_days=1, margin_days=1,
                        volume_size="64KiB", workers=1, sources=[str(src)], lock_mode="governance")
        with open(ws.config, "a") as fh:
            fh.write("\n[tripwire]\nprotect_days = 10\n")
        cfg = config_mod.load(ws.config)
        store = open_store(cfg.repository_url, backend=Recording(B2Store(lambda api=api: api, bucket, "backups"),
                                                                 ledger, clock, "backups/"))
        repo = Repository.init(cfg, t0, store=store)
        setups[name] = (bucket, src, cfg, repo, store, documents(src, 100))

    def run(name: str, hours: float):
        _, _, cfg, repo, _, _ = setups[name]
        clock.at = t0 + timedelta(hours=hours)
        return run_job(repo, cfg, cfg.job("data"), clock=clock, state_dir=ws.root / "state")

    clean = {}
    for name, (_, src, _, _, _, docs) in setups.items():
        assert not run(name, 0).suspicious
        docs[0].write_text("the last clean change\n" * 40)
        assert not run(name, 1).suspicious
        clean[name] = snapshot(src)
    poison(setups["poisoned"][5])
    tripped = run("poisoned", 2)
    assert tripped.suspicious and tripped.suspicion["score"] >= 1
    protected = tripped.suspicion["protected"]
    assert not protected.get("error") and "/p000002-" in protected["point"]
    assert protected["until"] == (t0 + timedelta(hours=2, days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    setups["control"][5][1].write_text("an ordinary change\n" * 40)
    assert not run("control", 2).suspicious

    # Every file the clean point needs carries the new retention, in compliance mode.
    repo, store = setups["poisoned"][3], setups["poisoned"][4]
    history = history_of(repo)
    point = next(p for p in history.points if p.key == protected["point"])
    needed = history.needed(repo, [point], ws.root / "work")
    assert len(needed) == protected["objects"] >= 3
    until = t0 + timedelta(hours=2, days=10)
    for file_key, version in needed:
        info = store.stat(file_key, version_id=version)
        assert info.retention.mode == "governance" and info.retention.until == until, file_key

    control_history = history_of(setups["control"][3])
    control_needed = control_history.needed(setups["control"][3], [control_history.points[1]], ws.root / "work")

    # The bucket's lifecycle, played day by day past F + R + m + 1 days at the simulator's upload times.
    age = lifecycle_age_days(setups["poisoned"][2].retention)
    for name, (bucket, _, cfg, _, _, _) in setups.items():
        executor = LifecycleExecutor(B2SimAdmin(sims[name], bucket),
                                     rules_from_b2(b2_lifecycle(cfg.retention, job_prefixes("backups/", cfg.jobs))),
                                     uploaded_at=ledger)
        for day in range(1, age + 4):
            executor.apply(t0 + timedelta(days=day))

    # The control's clean point is gone: every version its chain had was removed.
    control_repo = setups["control"][3]
    left = {(v.key, v.version_id) for v in B2SimAdmin(sims["control"], setups["control"][0]).versions("backups/data/")}
    assert not {(f"backups/{k}", v) for k, v in control_needed} & left
    # The protected one is all there, and restores byte-exact.
    left = {(v.key, v.version_id) for v in B2SimAdmin(sims["poisoned"], setups["poisoned"][0]).versions("backups/data/")}
    assert {(f"backups/{k}", v) for k, v in needed} <= left
    history = history_of(repo)
    point = next(p for p in history.points if p.key == protected["point"])
    target = ws.root / "restored"
    restore(repo, history, point, target=target, includes=[], overwrite=False, workdir=ws.root / "w")
    assert snapshot(restored_root(target, setups["poisoned"][1])) == clean["poisoned"]
    with pytest.raises(Exception):
        control_history = history_of(control_repo)
        restore(control_repo, control_history, control_history.points[1], target=ws.root / "control",
                includes=[], overwrite=False, workdir=ws.root / "w")


def test_an_open_trip_renews_the_protection_before_it_lapses_and_acknowledging_stops_only_that(workspace,
                                                                                               monkeypatch):
    """On moto's server with the backup key's policy: simulated days, real retention requests."""
    from tests.servers import MotoServer, without_retention_cap

    ws = workspace
    moto = MotoServer()
    try:
        bucket = moto.make_bucket()
        ws.write_config(url=f"s3://{bucket}/backups", endpoint_url=moto.url, volume_size="64KiB", workers=1,
                        keep_days=2, generation_days=1, margin_days=1)  # its own lock ends 2027-05-05
        with open(ws.config, "a") as fh:
            fh.write("\n[tripwire]\nprotect_days = 20\n")
        admin = moto.make_admin()
        backup = moto.make_user("backup", without_retention_cap(ws.genarc("policy", "--json").json))
        moto.enforce_iam()
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", backup.access_key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", backup.secret_access_key)
        s3 = moto.client(admin)
        docs = documents(ws.src, 80)
        assert ws.genarc("init", now="2027-05-01T02:00:00Z").code == EXIT_OK
        assert ws.genarc("run", now="2027-05-01T02:00:00Z").code == EXIT_OK
        poison(docs)
        tripped = ws.genarc("run", "--json", now="2027-05-02T02:00:00Z")
        assert tripped.code == EXIT_SUSPICIOUS
        protected = tripped.json["jobs"][0]["report"]["suspicion"]["protected"]
        assert protected["until"] == "2027-05-22T02:00:00Z" and not protected["error"]
        clean = next(v for v in s3.list_object_versions(Bucket=bucket, Prefix="backups/data/volumes/")["Versions"]
                     if "/p000001-" in v["Key"])

        def locked_until() -> str:
            head = s3.head_object(Bucket=bucket, Key=clean["Key"], VersionId=clean["VersionId"])
            return head["ObjectLockRetainUntilDate"].strftime("%Y-%m-%dT%H:%M:%SZ")

        assert locked_until() == "2027-05-22T02:00:00Z"
        # More than half of protect_days left: nothing to renew; the run still exits 11.
        assert ws.genarc("run", now="2027-05-08T02:00:00Z").code == EXIT_SUSPICIOUS
        assert locked_until() == "2027-05-22T02:00:00Z"
        # Less than half left: renewed to protect_days from now.
        renewed = ws.genarc("run", "--json", now="2027-05-14T02:00:00Z")
        assert renewed.code == EXIT_SUSPICIOUS
        assert renewed.json["jobs"][0]["report"]["suspicion"]["protected"]["until"] == "2027-06-03T02:00:00Z"
        assert locked_until() == "2027-06-03T02:00:00Z"
        # Acknowledged: no more renewals, and the lock keeps its date.
        assert ws.genarc("acknowledge", "data", now="2027-05-15T02:00:00Z").code == EXIT_OK
        assert ws.genarc("run", now="2027-05-28T02:00:00Z").code == EXIT_OK
        assert locked_until() == "2027-06-03T02:00:00Z"
    finally:
        moto.stop()


def test_watch_with_a_read_only_key_flags_a_poisoned_point_the_client_did_not(workspace, monkeypatch):
    from tests.servers import MotoServer, without_retention_cap

    ws = workspace
    moto = MotoServer()
    try:
        bucket = moto.make_bucket()
        ws.write_config(url=f"s3://{bucket}/backups", endpoint_url=moto.url, volume_size="64KiB", workers=1)
        client_config = ws.config.read_text() + "\n[tripwire]\nenabled = false\n"  # the attacker switched it off
        watchdog_config = ws.config.read_text()
        backup = moto.make_user("backup", without_retention_cap(ws.genarc("policy", "--json").json))
        watchdog = moto.make_user("watchdog", ws.genarc("policy", "--watchdog", "--json").json)
        moto.enforce_iam()
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", backup.access_key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", backup.secret_access_key)
        docs = documents(ws.src, 100)
        assert ws.genarc("init", now="2027-05-01T02:00:00Z").code == EXIT_OK
        assert ws.genarc("run", now="2027-05-01T02:00:00Z").code == EXIT_OK
        ws.config.write_text(client_config)
        poison(docs)
        assert ws.genarc("run", now="2027-05-02T02:00:00Z").code == EXIT_OK  # the client says nothing

        ws.config.write_text(watchdog_config)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", watchdog.access_key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", watchdog.secret_access_key)
        watched = ws.genarc("watch", "--json", now="2027-05-02T03:00:00Z")
        assert watched.code == EXIT_UNSAFE
        found = {f["kind"]: f["message"] for f in watched.json["findings"]}
        assert "/p000002-" in found["suspicious"] and "incompressible" in found["suspicious"]
        assert "tripwire: True -> False" in found["drift"]
        with pytest.raises(Exception, match="AccessDenied"):  # the watchdog's key really is read-only
            moto.client(watchdog).put_object(Bucket=bucket, Key="backups/x", Body=b"x")
    finally:
        moto.stop()
