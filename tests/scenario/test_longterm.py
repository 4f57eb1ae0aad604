"""Long-term (GFS) restore points: the first point of each month, copied into its own locked prefix."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from archiver import config as config_mod
from archiver.backup import run_job
from archiver.clock import FixedClock, parse_time
from archiver.errors import EXIT_OK
from archiver.longterm import promote, tier_job, tier_policy
from archiver.generation import lock_until
from archiver.repository import Repository
from archiver.restore import restore
from archiver.store import StoreWrapper, open_store
from archiver.store.s3 import S3Store
from tests.conftest import history_of, restored_root, snapshot
from tests.scenario.test_immutable_stores import change, small_tree
from tests.servers import MotoServer

DAYS = ["2027-01-30T02:00:00Z", "2027-01-31T02:00:00Z", "2027-02-01T02:00:00Z", "2027-02-02T02:00:00Z"]


def with_monthly(ws, **kw) -> None:
    ws.write_config(**kw)
    text = ws.config.read_text().replace("margin_days = 1\n", "margin_days = 1\nkeep_monthly = 3\n")
    ws.config.write_text(text)


def test_first_point_of_each_month_is_kept_apart_and_restores(workspace):
    ws = workspace
    small_tree(ws.src)
    with_monthly(ws)
    assert ws.genarc("init").code == EXIT_OK
    states = {}
    promoted = []
    for day, now in enumerate(DAYS):
        if day:
            change(ws.src, day)
        states[now] = snapshot(ws.src)
        result = ws.genarc("run", "--json", now=now)
        assert result.code == EXIT_OK, result.err
        promoted.append([p["tier"] for p in result.json["jobs"][0]["report"]["longterm"]])
    assert promoted == [["monthly"], [], ["monthly"], []]  # Jan 30 and Feb 1 open their months

    listing = {item["job"]: item for item in ws.genarc("list", "--json").json}
    monthly = listing["data~monthly"]
    assert monthly["longterm"] and [len(g["points"]) for g in monthly["generations"]] == [1, 1]
    cfg = config_mod.load(ws.config)
    policy = tier_policy(cfg.retention, "monthly", 3)
    for generation in monthly["generations"]:  # a local folder locks nothing, and list says so
        assert generation["locked_until"] is None and generation["not_locked"] == "local directory"
    for now in (DAYS[0], DAYS[2]):
        target = ws.root / f"lt-{now[:10]}"
        assert ws.genarc("restore", "data~monthly", "--target", str(target), "--at", now).code == EXIT_OK
        assert snapshot(restored_root(target, ws.src)) == states[now]
    # Self-contained: the long-term manifests refer only to copies under their own prefix.
    repo = Repository.open(cfg)
    from archiver import manifest

    for name, now in zip([p.name for p in history_of(repo, "data~monthly").points], (DAYS[0], DAYS[2])):
        loaded = manifest.load(repo, name, ws.root / "m")
        asked = loaded.header["lock"]["until"]  # what a locking store would be asked for: the tier's lock
        assert asked == (parse_time(now) + timedelta(days=3 * 31 + 1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert parse_time(asked) == lock_until(parse_time(now), policy)
        assert all(o["key"].startswith("data~monthly/volumes/") and o["copied_from"].startswith("data/volumes/")
                   for o in loaded.objects)
    assert ws.genarc("verify", "--deep").code == EXIT_OK
    plan = ws.genarc("plan", "--json").json
    assert plan["longterm"]["monthly"]["lifecycle_age_days"] == 3 * 31 + 1 + 1
    assert any(r["Filter"]["Prefix"] == "data~monthly/" and r["Expiration"].get("Days") == 95
               for r in plan["s3_lifecycle"]["Rules"])


class NoCopy(StoreWrapper):
    """A store without server-side copy (rclone's plain S3, say): long-term points are uploaded again."""

    @property
    def capabilities(self):
        return dataclasses.replace(self.inner.capabilities, server_side_copy=False)


def test_without_server_side_copy_the_volumes_are_uploaded_again(workspace):
    ws = workspace
    small_tree(ws.src)
    with_monthly(ws)
    cfg = config_mod.load(ws.config)
    store = open_store(cfg.repository_url, backend=NoCopy(open_store(cfg.repository_url)))
    repo = Repository.init(cfg, parse_time(DAYS[0]), store=store)
    run_job(repo, cfg, cfg.job("data"), clock=FixedClock(parse_time(DAYS[0])), state_dir=ws.root / "state")
    history = history_of(repo)
    [promotion] = promote(repo, cfg, "data", history, history.points[-1], FixedClock(parse_time(DAYS[0])))
    assert promotion.copied_bytes == 0 and promotion.uploaded_bytes > 0
    monthly = history_of(repo, tier_job("data", "monthly"))
    restore(repo, monthly, monthly.points[0], target=ws.root / "r", includes=[], overwrite=False,
            workdir=ws.root / "w")
    assert snapshot(restored_root(ws.root / "r", ws.src)) == snapshot(ws.src)


@pytest.mark.parametrize("server_kind", ["moto", "ceph"])
def test_long_term_copies_carry_the_tier_lock_on_s3(workspace, request, server_kind):
    ws = workspace
    if server_kind == "moto":
        server = MotoServer()
        request.addfinalizer(server.stop)
    else:
        server = request.getfixturevalue("ceph")
    bucket = server.make_bucket()
    small_tree(ws.src)
    with_monthly(ws, url=f"s3://{bucket}/backups", endpoint_url=server.url)
    cfg = config_mod.load(ws.config)
    backend = S3Store(server.client, bucket, "backups")
    repo = Repository.init(cfg, parse_time(DAYS[0]), store=open_store(cfg.repository_url, backend=backend))
    run_job(repo, cfg, cfg.job("data"), clock=FixedClock(parse_time(DAYS[0])), state_dir=ws.root / "state")
    history = history_of(repo)
    [promotion] = promote(repo, cfg, "data", history, history.points[-1], FixedClock(parse_time(DAYS[0])))
    assert promotion.copied_bytes > 0 and promotion.objects >= 1
    planned = lock_until(parse_time(DAYS[0]), tier_policy(cfg.retention, "monthly", 3))
    client = server.client()
    versions = client.list_object_versions(Bucket=bucket, Prefix="backups/data~monthly/")["Versions"]
    assert versions
    for version in versions:
        # Ceph ignores lock headers on CopyObject: genarc checked each copy and set the lock itself.
        head = client.head_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
        assert head["ObjectLockMode"] == "COMPLIANCE" and head["ObjectLockRetainUntilDate"] == planned
    monthly = history_of(repo, tier_job("data", "monthly"))
    restore(repo, monthly, monthly.points[0], target=ws.root / "r", includes=[], overwrite=False,
            workdir=ws.root / "w")
    assert snapshot(restored_root(ws.root / "r", ws.src)) == snapshot(ws.src)
