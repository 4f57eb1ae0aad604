"""End to end on S3 (moto with IAM enforced; Ceph RGW) and B2 (simulator), with the write-only key.

Three generations of runs, every point restored byte-exact, zero deletes, every object
locked until the planned date; then an attacker holding the client's keys tries to
destroy history, and every point still restores.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import base64
from pathlib import Path

import pytest

from archiver import config as config_mod
from archiver.backup import run_job
from archiver.clock import FixedClock, parse_time
from archiver.errors import EXIT_INTEGRITY, EXIT_OK
from archiver.generation import lock_until
from archiver.repository import Repository
from archiver.restore import restore
from archiver.store import RequestCounts, open_store
from archiver.store.b2 import B2Store
from tests.conftest import history_of, restored_root, snapshot
from tests.servers import B2Sim, MotoServer, without_retention_cap

DAYS = [f"2027-02-{1 + d:02d}T02:00:00Z" for d in range(6)]  # F = 2: generations at days 0, 2, 4


def small_tree(src: Path) -> None:
    for d in range(5):
        (src / f"dir{d}").mkdir()
        for f in range(8):
            (src / f"dir{d}" / f"f{f}.txt").write_bytes(f"{d}-{f} ".encode() * (200 + 37 * f))
    (src / "blob.bin").write_bytes(hashlib.sha256(b"seed").digest() * 5000)
    (src / "link").symlink_to("dir0/f0.txt")


def change(src: Path, day: int) -> None:
    (src / f"dir{day % 5}" / "f1.txt").write_bytes(f"changed on day {day}\n".encode() * 50)
    (src / f"new-{day}.txt").write_text(f"new on day {day}\n")
    victim = src / f"dir{(day + 2) % 5}" / f"f{day % 8}.txt"
    if victim.exists():
        victim.unlink()


def volume_generation_start(key: str) -> dt.datetime:
    gdir = key.split("/")[2]  # <job>/<kind>/g000001-20270201T020000Z/...
    return dt.datetime.strptime(gdir.split("-", 1)[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)


def sha_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def request_budget(report: dict) -> int:
    """One HTTP request per uploaded volume plus a few (listing, a lock check, the manifest); a synthetic full's
    copies, failed ones included, cost a handful each (HEADs of source and target, the copy, the lock check,
    and on servers that drop copy locks, setting the retention and checking again)."""
    synthetic = report.get("synthetic") or {}
    copies = synthetic.get("copied_volumes", 0) + len(synthetic.get("failed_copies", []))
    return report["volumes"] + 7 * copies + 5


def run_every_day(ws) -> dict[int, dict]:
    """Change the tree and run through the CLI on every simulated day; each run locks, never deletes, and
    stays within its request budget. Returns each day's tree."""
    states = {}
    for day, now in enumerate(DAYS):
        if day:
            change(ws.src, day)
        states[day] = snapshot(ws.src)
        result = ws.genarc("run", "--json", now=now)
        assert result.code == EXIT_OK, result.err
        report = result.json["jobs"][0]["report"]
        assert report["requests"]["deletes"] == 0
        assert report["lock_mode"] == "compliance"
        assert report["requests"]["http_requests"] <= request_budget(report)
    return states


def restore_every_day(ws, states: dict, tag: str) -> None:
    """Restore the point of every simulated day through the CLI and compare it with that day's tree."""
    for day, now in enumerate(DAYS):
        target = ws.root / f"{tag}-{day}"
        assert ws.genarc("restore", "data", "--target", str(target), "--at", now).code == EXIT_OK
        assert snapshot(restored_root(target, ws.src)) == states[day], day


@pytest.fixture
def moto_iam():
    server = MotoServer()
    yield server
    server.stop()


def test_s3_on_moto_with_the_write_only_key(workspace, moto_iam, monkeypatch):
    ws, server = workspace, moto_iam
    bucket = server.make_bucket()
    server.make_admin()
    ws.write_config(url=f"s3://{bucket}/backups", endpoint_url=server.url, generation_days=2, volume_size="64KiB")
    policy = ws.genarc("policy", "--json").json
    backup = server.make_user("backup", without_retention_cap(policy))
    server.enforce_iam()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", backup.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", backup.secret_access_key)
    monkeypatch.delenv("AWS_PROFILE", raising=False)

    small_tree(ws.src)
    assert ws.genarc("init").code == EXIT_OK
    states = run_every_day(ws)
    listing = ws.genarc("list", "--json").json[0]["generations"]
    assert [len(g["points"]) for g in listing] == [2, 2, 2]

    restore_every_day(ws, states, "before")

    # Every object carries the lock mode and the planned retain-until date of its generation.
    cfg = config_mod.load(ws.config)
    admin = server.client()
    versions = admin.list_object_versions(Bucket=bucket, Prefix="backups/data/")["Versions"]
    assert len(versions) > 12
    for version in versions:
        head = admin.head_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
        planned = lock_until(volume_generation_start(version["Key"][len("backups/"):]), cfg.retention)
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockRetainUntilDate"] == planned

    # The attacker holds the client's keys.
    attacker = server.client(backup)
    volume = next(v for v in versions if "/volumes/" in v["Key"])
    manifest = next(v for v in versions if "/manifests/" in v["Key"])
    for attempt in ({"Key": volume["Key"], "VersionId": volume["VersionId"]}, {"Key": volume["Key"]}):
        with pytest.raises(Exception) as denied:
            attacker.delete_object(Bucket=bucket, **attempt)
        assert "AccessDenied" in str(denied.value)
    # Overwriting is a new version on a versioned bucket; reads are pinned to the recorded version id.
    junk = b"ransom note"
    attacker.put_object(Bucket=bucket, Key=manifest["Key"], Body=junk, ChecksumAlgorithm="SHA256",
                        ChecksumSHA256=sha_b64(junk))
    # moto gap: it accepts shortening a compliance retention (AWS and Ceph refuse; proven in the Ceph test).
    attacker.put_object_retention(Bucket=bucket, Key=volume["Key"], VersionId=volume["VersionId"], ChecksumAlgorithm="SHA256",
                                   Retention={"Mode": "COMPLIANCE", "RetainUntilDate": dt.datetime(2027, 2, 2, tzinfo=dt.timezone.utc)})
    restore_every_day(ws, states, "after")
    verified = ws.genarc("verify", "--json")
    assert verified.code == EXIT_INTEGRITY
    assert any(manifest["Key"][len("backups/"):] in t for t in verified.json["report"]["tampered"])


def test_b2_on_the_simulator_with_the_write_only_key(workspace):
    ws, sim = workspace, B2Sim()
    bucket = sim.make_bucket(lock=True)
    from archiver.policy import b2_backup_capabilities

    key_id, key = sim.make_key(b2_backup_capabilities(lock=True))
    ws.write_config(url=f"b2://{bucket}/backups", generation_days=2, volume_size="64KiB")
    cfg = config_mod.load(ws.config)
    api = sim.api_for(key_id, key)
    counts = RequestCounts()
    store = open_store(cfg.repository_url, backend=B2Store(lambda: api, bucket, "backups"), counts=counts)
    small_tree(ws.src)
    repo = Repository.init(cfg, parse_time(DAYS[0]), store=store)
    state_dir = ws.root / "state"
    states = {}
    for day, now in enumerate(DAYS):
        if day:
            change(ws.src, day)
        states[day] = snapshot(ws.src)
        report = run_job(repo, cfg, cfg.job("data"), clock=FixedClock(parse_time(now)), state_dir=state_dir)
        assert not report.warnings and report.requests["deletes"] == 0 and report.lock_mode == "compliance"
    history = history_of(repo)
    assert sorted({p.name.gseq for p in history.points}) == [1, 2, 3]

    def restore_all(tag: str) -> None:
        for point in history.points:
            target = ws.root / f"{tag}-{point.name.gseq}-{point.name.pseq}"
            restore(repo, history, point, target=target, includes=[], overwrite=False, workdir=ws.root / f"w-{tag}")
            day = DAYS.index(point.claimed.strftime("%Y-%m-%dT%H:%M:%SZ"))
            assert snapshot(restored_root(target, ws.src)) == states[day]

    restore_all("before")
    files = list(store.list_versions("data/"))
    assert files and all(f.retention and f.retention.mode == "compliance" for f in files)
    for f in files:
        assert f.retention.until == lock_until(volume_generation_start(f.key), cfg.retention)

    # The attacker holds the client's key: no deleteFiles, so deletion is refused ...
    raw = api.session
    victim = next(f for f in files if "/volumes/" in f.key)
    with pytest.raises(Exception) as denied:
        api.delete_file_version(victim.version_id, f"backups/{victim.key}")
    assert "unauthorized" in str(denied.value).lower()
    # ... but writeFiles may hide. With File Lock, hiding removes nothing: reads are pinned to file ids.
    api.get_bucket_by_name(bucket).hide_file(f"backups/{victim.key}")
    # Simulator gap: update_file_retention has no checks, so shortening is not refused here
    # (the real B2 refuses to shorten compliance retention); it is not attempted.
    assert raw is not None
    restore_all("after")
    from archiver.verify import verify

    report = verify(repo, ["data"], deep=False, workdir=ws.root / "verify", clock=FixedClock(parse_time(DAYS[-1])))
    assert any(victim.key in t and "hide" in t for t in report.tampered)
