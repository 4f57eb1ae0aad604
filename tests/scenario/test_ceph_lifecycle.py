"""The promise on a real server, in real time: Ceph RGW runs the lifecycle that `genarc plan` prints.

RGW's `rgw lc debug interval = 10` makes a lifecycle day last 10 seconds, and
`GENARC_DAY_SECONDS=10` makes genarc's days as long, so F, R, m and every lock date
genarc writes shrink with them. The bucket belongs to an owner (the admin); the
backup user reaches it only through a bucket policy made of the `genarc policy`
statements, so it can write and read but never delete. RGW itself places the delete
markers and removes the old versions once their locks have passed.
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
from datetime import datetime, timezone

import pytest

from archiver.errors import EXIT_OK
from archiver.generation import RetentionPolicy, restorable_until
from tests.conftest import restored_root, snapshot

DAY = 10  # seconds; matches rgw lc debug interval in scripts/ceph-rgw.sh


def _now() -> datetime:
    return datetime.now(timezone.utc)


@pytest.mark.slow
def test_rgw_lifecycle_reclaims_old_generations_and_keeps_every_point_within_r(workspace, ceph, monkeypatch):
    ws = workspace
    monkeypatch.setenv("GENARC_DAY_SECONDS", str(DAY))
    owner, backup = ceph.make_user("owner"), ceph.make_user("backup")
    owner_s3 = ceph.client(owner)
    bucket = f"genarc-lc-{secrets.token_hex(4)}"
    owner_s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    ws.write_config(url=f"s3://{bucket}/backups", endpoint_url=ceph.url, keep_days=2, generation_days=1,
                    margin_days=1, volume_size="64KiB", workers=1)
    policy = ws.genarc("policy", "--json").json
    principal = {"AWS": [f"arn:aws:iam:::user/{ceph.uid_of(backup)}"]}
    owner_s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(
        {"Version": "2012-10-17", "Statement": [{**s, "Principal": principal} for s in policy["Statement"]]}))

    monkeypatch.setenv("GENARC_ADMIN_AWS_ACCESS_KEY_ID", owner.access_key_id)
    monkeypatch.setenv("GENARC_ADMIN_AWS_SECRET_ACCESS_KEY", owner.secret_access_key)
    assert ws.genarc("plan", "--apply").code == EXIT_OK
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", backup.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", backup.secret_access_key)
    assert ws.genarc("init").code == EXIT_OK
    assert ws.genarc("plan", "--check").code == EXIT_OK
    rules = owner_s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert any(r.get("Expiration", {}).get("Days") == 5 for r in rules)  # L = F + R + m + 1 = 5 days

    retention = RetentionPolicy(keep_days=2, generation_days=1, margin_days=1, day_seconds=DAY)
    (ws.src / "static.bin").write_bytes(secrets.token_bytes(40_000))
    states: dict[str, dict] = {}
    samples: list[tuple[float, int, int]] = []  # (seconds since start, stored bytes, delete markers)
    restored = 0
    start = time.monotonic()
    run = 0

    def measure() -> None:
        listing = owner_s3.list_object_versions(Bucket=bucket, Prefix="backups/data/")
        size = sum(v["Size"] for v in listing.get("Versions", []))
        samples.append((time.monotonic() - start, size, len(listing.get("DeleteMarkers", []))))

    while time.monotonic() - start < 12 * DAY:  # at least 8 generations of runs
        run += 1
        (ws.src / f"run{run:03d}.txt").write_text(f"run {run}\n" * 200)
        stale = ws.src / f"run{run - 4:03d}.txt"
        if stale.exists():
            stale.unlink()
        result = ws.genarc("run", "--json")
        assert result.code == EXIT_OK, result.err
        report = result.json["jobs"][0]["report"]
        assert report["requests"]["deletes"] == 0
        states[report["manifest_key"]] = snapshot(ws.src)
        # Every restore point still inside R restores byte-exact, the oldest one first.
        listed = ws.genarc("list", "data", "--json")
        assert listed.code == EXIT_OK, listed.err
        listing = listed.json[0]["generations"]
        now = _now()
        inside = [(g["generation"], p) for g in listing for p in g["points"]
                  if restorable_until(datetime.fromisoformat(p["time"].replace("Z", "+00:00")), retention) > now]
        for gseq, point in (inside[0], inside[-1]) if len(inside) > 1 else inside:
            target = ws.root / "r"
            code = ws.genarc("restore", "data", "--target", str(target), "--generation", str(gseq),
                             "--point", str(point["point"])).code
            assert code == EXIT_OK, (gseq, point)
            assert snapshot(restored_root(target, ws.src)) == states[point["manifest"]]
            shutil.rmtree(target)
            restored += 1
        measure()
        time.sleep(max(0.0, DAY / 3 - 1.0))
    generations = max(g["generation"] for g in ws.genarc("list", "data", "--json").json[0]["generations"])
    assert generations >= 8 and restored >= 2 * run - 2
    # Let RGW finish what it is due to do, then look at what is left.
    deadline = time.monotonic() + 6 * DAY
    while time.monotonic() < deadline:
        measure()
        time.sleep(DAY / 2)
    versions = owner_s3.list_object_versions(Bucket=bucket, Prefix="backups/data/")
    left = {v["Key"].split("/")[3] for v in versions.get("Versions", [])}
    print(f"\nruns {run}, generations {generations}; generation dirs with versions left: {sorted(left)}")
    print("samples (s, bytes, markers):", [(round(t), b, m) for t, b, m in samples[::4]])
    assert any(markers for _, _, markers in samples), "RGW never placed a delete marker"
    assert not any(d.startswith("g000001-") or d.startswith("g000002-") for d in left), \
        "the oldest generations were not removed"
    peak_early = max(b for t, b, _ in samples if 5 * DAY <= t <= 9 * DAY)
    late = [b for t, b, _ in samples if t >= 12 * DAY]
    assert max(late) <= 1.3 * peak_early, "storage keeps growing instead of levelling off"
