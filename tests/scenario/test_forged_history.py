"""An attacker with the backup key and the password rewrites what genarc shows and restores, and fails.

A week of real points is made through the CLI, with exactly the rights `genarc policy` grants
(Ceph RGW: bucket owned by another user; moto: IAM enforced). Then, holding the same key and
password, the attacker forges: a point of random data (from a state directory of their own),
a point with an old claimed time, one dated 2099, four bytes of junk at an old point's number,
an overwrite of a volume and of the repository file, and junk objects. The victim's genarc
must name every one, never prefer a forged point to a real one, restore the clean tree from
before the attack by the server's clock, and say that backups stopped.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from datetime import datetime, timedelta, timezone

import pytest

from archiver.clock import format_time, parse_time
from archiver.errors import EXIT_OK, EXIT_UNSAFE
from tests.conftest import restored_root, snapshot
from tests.scenario.test_immutable_stores import DAYS, run_every_day, sha_b64, small_tree
from tests.servers import MotoServer, without_retention_cap


def _server(request, kind: str, ws, monkeypatch, repository_extra: tuple[str, ...] = ()):
    """A bucket, an S3 client holding the backup key, the backup user's keys with the `genarc policy` rights, and
    the keys of the bucket's owner (an IAM admin on moto)."""
    if kind == "moto":
        server = MotoServer()
        request.addfinalizer(server.stop)
        bucket = server.make_bucket()
        server.make_admin()
        ws.write_config(url=f"s3://{bucket}/backups", endpoint_url=server.url, generation_days=2, volume_size="64KiB",
                        repository_extra=repository_extra)
        backup = server.make_user("backup", without_retention_cap(ws.genarc("policy", "--json").json))
        server.enforce_iam()
        owner = server.admin
    else:
        server = request.getfixturevalue("ceph")
        owner = server.make_user(f"owner-{secrets.token_hex(3)}")
        bucket = f"genarc-forge-{secrets.token_hex(4)}"
        server.client(owner).create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        ws.write_config(url=f"s3://{bucket}/backups", endpoint_url=server.url, generation_days=2, volume_size="64KiB",
                        repository_extra=repository_extra)
        backup = server.make_user(f"backup-{secrets.token_hex(3)}")
        # The owner grants the backup user exactly the statements `genarc policy` prints, conditions included.
        policy = ws.genarc("policy", "--json").json
        principal = {"AWS": [f"arn:aws:iam:::user/{server.uid_of(backup)}"]}
        server.client(owner).put_bucket_policy(Bucket=bucket, Policy=json.dumps({
            "Version": "2012-10-17", "Statement": [{**statement, "Principal": principal}
                                                   for statement in policy["Statement"]]}))
        server.client(service="iam").put_user_policy(UserName=server.uid_of(backup), PolicyName="genarc-backup",
                                                     PolicyDocument=json.dumps(ws.genarc("policy", "--json").json))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", backup.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", backup.secret_access_key)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return server, bucket, server.client(backup), backup, owner


def _as_attacker(ws, monkeypatch, now: str) -> str:
    """A run of genarc by the attacker (same key and password, their own state directory): its manifest key."""
    monkeypatch.setenv("XDG_STATE_HOME", str(ws.root / "attacker-state"))
    result = ws.genarc("run", "--json", now=now)
    monkeypatch.setenv("XDG_STATE_HOME", str(ws.root / "state"))
    assert result.code in (EXIT_OK, 1), result.err
    return result.json["jobs"][0]["report"]["manifest_key"]


@pytest.mark.parametrize("kind", ["moto", "ceph"])
def test_forged_points_junk_and_false_times_are_named_and_never_win(workspace, request, monkeypatch, kind):
    ws = workspace
    server, bucket, attacker, _, _ = _server(request, kind, ws, monkeypatch)
    small_tree(ws.src)
    assert ws.genarc("init").code == EXIT_OK
    states = run_every_day(ws)  # a week of real points: days 0..5, generations at days 0, 2, 4
    honest = ws.genarc("audit", "--json")
    assert honest.code == EXIT_OK, honest.json["report"]["findings"]  # genarc's own writes are no finding
    clean = snapshot(ws.src)
    time.sleep(1.5)
    trusted_before = format_time(datetime.now(timezone.utc))  # the server keeps second-precision upload times
    time.sleep(1.5)

    # -- the attack ------------------------------------------------------------------------------------------
    real = ws.src
    poisoned = ws.root / "poison"
    (poisoned / real.relative_to("/")).mkdir(parents=True)
    for i in range(5):
        (poisoned / f"enc{i}.bin").write_bytes(os.urandom(4000))
    monkeypatch.setenv("GENARC_NOW", DAYS[-1])
    config = ws.config.read_text()
    ws.config.write_text(config.replace(json.dumps([str(real)]), json.dumps([str(poisoned)])))
    after_last = format_time(parse_time(DAYS[-1]) + timedelta(hours=6))
    plausible = _as_attacker(ws, monkeypatch, after_last)                 # random data, at a plausible time
    backdated = _as_attacker(ws, monkeypatch, "2027-02-03T05:00:00Z")     # claims day 2, after that day's real point
    future = _as_attacker(ws, monkeypatch, "2099-01-01T00:00:00Z")        # dated 2099
    ws.config.write_text(config)
    listed = {v["Key"][len("backups/"):]: v for v in attacker.list_object_versions(
        Bucket=bucket, Prefix="backups/")["Versions"]}
    first_manifest = min(k for k in listed if "/manifests/g000001-" in k)
    junk_key = first_manifest.replace("/p000001-", "/p000002-").rsplit("-", 1)[0] + f"-{secrets.token_hex(8)}.m7z"
    volume = min(k for k in listed if "/volumes/g000001-" in k)
    for key, body in ((junk_key, b"junk"), (volume, os.urandom(1000)), ("genarc-repository.json", b'{"format": 1}'),
                      ("stray/notes.txt", b"not genarc's"),
                      ("data/volumes/g000001-20270201T020000Z/p000009-0123456789abcdef/v000001.7z", os.urandom(500))):
        attacker.put_object(Bucket=bucket, Key=f"backups/{key}", Body=body, ChecksumAlgorithm="SHA256",
                            ChecksumSHA256=sha_b64(body))

    if kind == "moto":  # the bucket owner's mistake, or an accomplice with admin rights: a volume readable by anyone
        server.client().put_object_acl(Bucket=bucket, Key=f"backups/{volume}", ACL="public-read")

    # -- the victim, reading as of a day after the last real run ------------------------------------------------
    monkeypatch.setenv("GENARC_NOW", format_time(parse_time(DAYS[-1]) + timedelta(days=1)))
    audit = ws.genarc("audit", "--json")
    assert audit.code == EXIT_UNSAFE, audit.err
    findings = audit.json["report"]["findings"]
    kinds: dict[str, list[str]] = {}
    for finding in findings:
        kinds.setdefault(finding["kind"], []).append(finding["key"])
    flags = {f["key"]: set(f["detail"]["flags"]) for f in findings if f["kind"] == "suspect"}
    assert "future" in flags[future] and "backdated" in flags[backdated] and "unreadable" in flags[junk_key], flags
    assert plausible in kinds["unknown-run"], findings  # random data: only this machine's catalog can tell
    assert volume in kinds["overwritten"]
    if kind == "moto":
        assert kinds["public"] == [volume]
    assert kinds["repository-file"] == ["genarc-repository.json"]
    assert {"stray/notes.txt", "data/volumes/g000001-20270201T020000Z/p000009-0123456789abcdef/v000001.7z"} <= set(
        kinds["unknown-object"])

    listing = ws.genarc("list", "--json")
    assert listing.code == EXIT_OK
    points = [p for g in listing.json[0]["generations"] for p in g["points"]]
    assert sum(1 for p in points if p["suspect"]) >= 3

    # --at goes by the server's order: the backdated point, claiming day 2 after that day's real point, loses.
    for day, now in enumerate(DAYS):
        at = format_time(parse_time(now) + timedelta(hours=4))
        target = ws.root / f"at-{day}"
        assert ws.genarc("restore", "data", "--target", str(target), "--at", at).code == EXIT_OK
        assert snapshot(restored_root(target, ws.src)) == states[day], day

    # Before the attack by the server's clock: the clean tree, byte-exact.
    target = ws.root / "trusted"
    assert ws.genarc("restore", "data", "--target", str(target), "--trusted-before", trusted_before).code == EXIT_OK
    assert snapshot(restored_root(target, ws.src)) == clean
    assert ws.genarc("verify", "--trusted-before", trusted_before).code == 7  # the overwritten volume is named
    assert ws.genarc("audit", "--trusted-before", trusted_before).code == EXIT_UNSAFE  # the junk objects still are

    # The 2099 point keeps nobody quiet: a week later, backups have stopped and the watch says so.
    monkeypatch.setenv("GENARC_NOW", format_time(parse_time(DAYS[-1]) + timedelta(days=7)))
    watched = ws.genarc("watch", "--json")
    assert watched.code == EXIT_UNSAFE
    kinds_seen = {f["kind"] for f in watched.json["findings"]}
    assert {"stale", "suspect"} <= kinds_seen, watched.json

    # The victim's next real run continues the newest trusted point, never the 2099 one, and says what it saw.
    run = ws.genarc("run", "--json")
    assert run.code == 1, run.err
    report = run.json["jobs"][0]["report"]
    assert parse_time(report["lock_until"]).year < 2099 and parse_time(report["generation_start"]).year < 2099
    assert any("audit" in w for w in report["warnings"])
    target = ws.root / "after"
    assert ws.genarc("restore", "data", "--target", str(target)).code == EXIT_OK
    assert snapshot(restored_root(target, ws.src)) == clean


def test_on_the_b2_simulator_forged_points_are_named_and_the_clean_tree_restores(workspace):
    """The same attack on B2 with the backup key's capabilities, through the API (the simulator lives in-process).

    Simulator gap: its upload timestamps are a counter a few seconds after 1970, not a clock. Their order is
    faithful, so the order of points, forks and --trusted-before (taken from a stored time) are tested here;
    dates far from upload times are tested on moto and Ceph above."""
    from archiver import config as config_mod
    from archiver.audit import audit
    from archiver.backup import run_job
    from archiver.clock import FixedClock
    from archiver.history import History
    from archiver.policy import b2_backup_capabilities
    from archiver.repository import Repository
    from archiver.restore import restore
    from archiver.store import open_store
    from archiver.store.b2 import B2Store
    from tests.servers import B2Sim

    ws, sim = workspace, B2Sim()
    bucket = sim.make_bucket(lock=True)
    key_id, key = sim.make_key(b2_backup_capabilities(lock=True))
    ws.write_config(url=f"b2://{bucket}/backups", generation_days=2, volume_size="64KiB")
    cfg = config_mod.load(ws.config)
    api = sim.api_for(key_id, key)
    repo = Repository.init(cfg, parse_time(DAYS[0]), store=open_store(cfg.repository_url,
                                                                        backend=B2Store(lambda: api, bucket, "backups")))
    small_tree(ws.src)
    victim_state, attacker_state = ws.root / "state", ws.root / "attacker-state"
    for day, now in enumerate(DAYS[:3]):
        (ws.src / f"day{day}.txt").write_text(f"day {day}\n")
        assert not run_job(repo, cfg, cfg.job("data"), clock=FixedClock(parse_time(now)), state_dir=victim_state).warnings
    clean = snapshot(ws.src)
    reader = FixedClock(parse_time(DAYS[3]))
    trusted_before = History.read(repo, "data", reader).points[-1].stored

    (ws.src / "day1.txt").write_bytes(os.urandom(300))  # "encrypted"
    forged = {}
    for label, now in (("plausible", DAYS[2].replace("T02", "T09")), ("backdated", DAYS[1].replace("T02", "T05")),
                       ("future", "2099-01-01T00:00:00Z")):
        forged[label] = run_job(repo, cfg, cfg.job("data"), clock=FixedClock(parse_time(now)),
                                state_dir=attacker_state).manifest_key
    b2 = api.get_bucket_by_name(bucket)
    first = next(p for p in History.read(repo, "data", reader).points if p.name.pseq == 1)
    junk_key = first.key.replace("/p000001-", "/p000002-").rsplit("-", 1)[0] + f"-{secrets.token_hex(8)}.m7z"
    b2.upload_bytes(b"junk", f"backups/{junk_key}")
    b2.upload_bytes(b"not genarc's", "backups/stray/notes.txt")
    volume = next(f.key for f in repo.store.list("data/volumes/") if "/g000001-" in f.key)
    b2.hide_file(f"backups/{volume}")

    found = audit(repo, ["data"], clock=reader, workdir=ws.root / "audit", state_dir=victim_state)
    by_kind: dict[str, set[str]] = {}
    for finding in found.findings:
        by_kind.setdefault(finding.kind, set()).add(finding.key)
    flags = {f.key: set(f.detail["flags"]) for f in found.findings if f.kind == "suspect"}
    assert "future" in flags[forged["future"]] and "backdated" in flags[forged["backdated"]], flags
    assert "unreadable" in flags[junk_key]
    assert forged["plausible"] in by_kind["unknown-run"]
    assert volume in by_kind["hidden"] and "stray/notes.txt" in by_kind["unknown-object"]

    history = History.read(repo, "data", reader)
    for label, expected in (("default", forged["plausible"]), ("trusted", None)):
        point = history.choose(repo, ws.root / "w", trusted_before=trusted_before if label == "trusted" else None)
        if expected is not None:
            assert point.key == expected  # random data at a plausible time is a point like any other ...
            continue
        target = ws.root / "trusted"  # ... which is why --trusted-before exists
        restore(repo, history, point, target=target, includes=[], overwrite=False, workdir=ws.root / "w")
        assert snapshot(restored_root(target, ws.src)) == clean


def test_a_claim_ahead_of_the_server_is_suspect_and_the_machine_hears_of_its_clock(workspace):
    """Without an injected clock, a point claiming a time after the server stored it is flagged "skewed"; the
    machine that wrote it is told to fix its clock at its next run."""
    from archiver import config as config_mod
    from archiver.backup import run_job
    from archiver.clock import FixedClock, SystemClock
    from archiver.history import History
    from archiver.repository import Repository

    ws = workspace
    ws.write_config()
    cfg = config_mod.load(ws.config)
    small_tree(ws.src)
    repo = Repository.init(cfg, datetime.now(timezone.utc))
    state = ws.root / "state"
    assert not run_job(repo, cfg, cfg.job("data"), clock=SystemClock(), state_dir=state).warnings
    ahead = FixedClock(datetime.now(timezone.utc) + timedelta(hours=2))
    skewed = run_job(repo, cfg, cfg.job("data"), clock=ahead, state_dir=state).manifest_key
    history = History.read(repo, "data", SystemClock())
    assert set(history.by_key(skewed).flags) == {"skewed", "future"}  # for two hours, the future too
    assert history.newest() is history.points[0]
    later = run_job(repo, cfg, cfg.job("data"), clock=SystemClock(), state_dir=state)
    assert any("clock was ahead" in w for w in later.warnings), later.warnings
    listing = ws.genarc("list")
    assert listing.code == EXIT_OK and "SUSPECT: claims" in listing.out and "after the server stored it" in listing.out


def test_a_restore_goes_on_past_a_lost_volume_and_names_it(workspace):
    """A volume gone from the bucket: its files are named as lost (exit 7), every other file is restored."""
    ws = workspace
    ws.write_config(volume_size="16KiB", compression="copy")
    for i in range(12):
        (ws.src / f"f{i:02d}.bin").write_bytes(os.urandom(6000))
    assert ws.genarc("init").code == EXIT_OK
    assert ws.genarc("run", now=DAYS[0]).code == EXIT_OK
    volumes = sorted(ws.repo.glob("data/volumes/*/*/v*.7z"))
    assert len(volumes) >= 3
    volumes[1].unlink()  # outside genarc: an admin, or the lifecycle rule too early
    target = ws.root / "r"
    result = ws.genarc("restore", "data", "--target", str(target), "--json")
    assert result.code == 7, result.err
    report = result.json["report"]
    lost = [e for e in report["errors"] if "is lost" in e]
    assert lost and all(volumes[1].name in e for e in lost)
    restored = snapshot(restored_root(target, ws.src))
    source = snapshot(ws.src)
    missing = {name for name in source if name not in restored}
    assert missing and len(missing) == len(lost) and report["files"] == 12 - len(lost)
    assert all(restored[name] == source[name] for name in restored)
