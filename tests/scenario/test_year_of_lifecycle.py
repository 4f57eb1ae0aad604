"""400 simulated days: daily runs on a changing tree, the bucket's lifecycle applied every day.

Checked weekly: every restore point younger than R restores byte-exact, none is ever
broken, and generations older than the lifecycle age are gone. At the end: the client
sent zero deletes, and the stored bytes match the planner's forecast within 15 %.
"""

from __future__ import annotations

import random
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from archiver import config as config_mod
from archiver.admin.lifecycle import LifecycleExecutor, LocalAdmin, Rule, S3Admin, UploadLedger
from archiver.backup import run_job
from archiver.clock import FixedClock, parse_time
from archiver.generation import lifecycle_age_days, restorable_until
from archiver.plan import Sizing, forecast, job_prefixes, s3_lifecycle
from archiver.repository import Repository
from archiver.restore import restore
from archiver.store import LocalStore, RequestCounts, StoreWrapper, open_store
from archiver.store.s3 import S3Store
from tests.conftest import history_of, restored_root, snapshot
from tests.servers import MotoServer, without_retention_cap

DAYS = 400
START = parse_time("2027-01-01T03:00:00Z")


class Recording(StoreWrapper):
    """Records each new object's simulated upload time, which the lifecycle executor needs
    (the servers stamp real time, and this year passes in minutes)."""

    def __init__(self, inner, ledger: UploadLedger, clock: FixedClock, prefix: str) -> None:
        super().__init__(inner)
        self.ledger, self.clock, self.prefix = ledger, clock, prefix

    def put(self, key, source, *, sha256, retention=None):
        info = self.inner.put(key, source, sha256=sha256, retention=retention)
        self.ledger.record(self.prefix + key, info.version_id, self.clock.now())
        return info

    def copy(self, src_key, dst_key, *, src_version_id=None, sha256, retention=None, size=None):
        info = self.inner.copy(src_key, dst_key, src_version_id=src_version_id, sha256=sha256, retention=retention, size=size)
        self.ledger.record(self.prefix + dst_key, info.version_id, self.clock.now())
        return info


def seed_tree(src: Path) -> None:
    rng = random.Random(4)
    for i in range(40):
        (src / f"d{i % 4}").mkdir(exist_ok=True)
        (src / f"d{i % 4}" / f"f{i:03d}.txt").write_bytes(rng.randbytes(rng.randint(500, 6000)))


def daily_change(src: Path, day: int) -> None:
    """A few percent a day: two edits, an add, a delete, a rename."""
    rng = random.Random(day)
    files = sorted(p for p in src.rglob("*.txt"))
    for p in rng.sample(files, 2):
        p.write_bytes(rng.randbytes(rng.randint(500, 6000)))
    (src / f"d{day % 4}" / f"new{day:03d}.txt").write_bytes(rng.randbytes(rng.randint(500, 4000)))
    victims = rng.sample(files, 2)
    victims[0].unlink()
    if victims[1].exists():
        victims[1].rename(victims[1].with_name(f"renamed{day:03d}.txt"))


@pytest.fixture
def moto():
    server = MotoServer()
    yield server
    server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["local", "s3-moto"])
def test_a_year_of_runs_with_lifecycle_executed(workspace, kind, request):
    ws = workspace
    clock = FixedClock(START)
    ledger = UploadLedger()
    seed_tree(ws.src)
    if kind == "local":
        ws.write_config(keep_days=14, generation_days=7, margin_days=1, workers=1)
        cfg = config_mod.load(ws.config)
        backend = Recording(LocalStore(ws.repo), ledger, clock, "")
        admin = LocalAdmin(ws.repo)
        prefix = ""
    else:
        server = request.getfixturevalue("moto")
        bucket = server.make_bucket()
        server.make_admin()
        # moto checks locks against its real clock, while this year is simulated: every simulated
        # lock date lies in the server's future. Governance mode lets the executor, as an admin with
        # bypass, remove a version once its *simulated* lock has passed (it checks that itself);
        # compliance on a real server, in real time, is the Ceph test's job.
        ws.write_config(keep_days=14, generation_days=7, margin_days=1, workers=1, lock_mode="governance",
                        url=f"s3://{bucket}/backups", endpoint_url=server.url)
        cfg = config_mod.load(ws.config)
        backup = server.make_user("backup", without_retention_cap(ws.genarc("policy", "--json").json))
        server.enforce_iam()
        backend = Recording(S3Store(lambda: server.client(backup), bucket, "backups"), ledger, clock, "backups/")
        admin = S3Admin(server.client(), bucket, bypass_governance=True)
        prefix = "backups/"
    counts = RequestCounts()
    store = open_store(cfg.repository_url, backend=backend, counts=counts)
    repo = Repository.init(cfg, START, store=store)
    rules = s3_lifecycle(cfg.retention, job_prefixes(prefix, cfg.jobs))
    executor = LifecycleExecutor(admin, Rule.from_s3(rules), uploaded_at=ledger)
    age = lifecycle_age_days(cfg.retention)
    states: dict[str, dict] = {}
    stored: list[int] = []
    fulls: list[int] = []
    incrementals: list[int] = []
    checked = 0
    for day in range(DAYS):
        clock.at = START + timedelta(days=day)
        if day:
            daily_change(ws.src, day)
        report = run_job(repo, cfg, cfg.job("data"), clock=clock, state_dir=ws.root / "state")
        assert not report.warnings
        # What a run adds to the bucket: its uploads, plus (for a synthetic full) its server-side copies.
        (fulls if report.kind == "full" else incrementals).append(report.bytes_uploaded + report.requests["bytes_copied"])
        states[report.manifest_key] = snapshot(ws.src)
        executor.apply(clock.now())
        stored.append(sum(v.size for v in admin.versions(f"{prefix}data/")))
        if day % 7 == 6:
            now = clock.now()
            history = history_of(repo)
            young = [p for p in history.points if restorable_until(p.claimed, cfg.retention) > now]
            assert len(young) == min(14, day + 1), day  # one point a day, each kept R days
            for point in young:
                target = ws.root / "restore"
                restore(repo, history, point, target=target, includes=[], overwrite=False,
                        workdir=ws.root / "work")
                assert snapshot(restored_root(target, ws.src)) == states[point.key], (day, point.key)
                shutil.rmtree(target)
                checked += 1
            # Generations whose every object is past the lifecycle age (plus the noncurrent day) are gone.
            for name in [p.name for p in history.points]:
                assert name.gstart + cfg.retention.days(age + 1 + 7) > now, f"{name.key} outlived its lifecycle"
    assert counts.snapshot()["deletes"] == 0
    assert checked > 700

    # Storage levels off (the lifecycle reclaims it) and matches the planner's forecast.
    full, incremental = sum(fulls) / len(fulls), sum(incrementals) / len(incrementals)
    sizing = Sizing(source_bytes=full, daily_change=incremental / full, compression=1.0)
    predicted, _ = forecast(cfg.retention, sizing, DAYS)
    steady = stored[100:]
    measured = sum(steady) / len(steady)
    print(f"\n{kind}: measured average stored {measured:.0f} B, planner forecast {predicted.average_bytes:.0f} B "
          f"({(measured / predicted.average_bytes - 1) * 100:+.1f} %); peak {max(steady)} vs {predicted.peak_bytes:.0f}")
    assert abs(measured / predicted.average_bytes - 1) <= 0.15
    assert max(stored[300:]) <= max(stored[100:200]) * 1.15  # no growth: storage is reclaimed
