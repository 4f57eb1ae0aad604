"""Synthetic fulls: a new generation made by server-side copy and repack, self-contained and locked anew."""

from __future__ import annotations

import dataclasses
import os
import signal
from datetime import timedelta

import pytest

from archiver import config as config_mod
from archiver.admin.lifecycle import LifecycleExecutor, LocalAdmin, Rule, S3Admin, UploadLedger
from archiver.backup import run_job
from archiver.clock import FixedClock, parse_time
from archiver.errors import EXIT_OK, IntegrityError, StoreError
from archiver.generation import lock_until
from archiver.plan import job_prefixes, s3_lifecycle
from archiver.repository import Repository
from archiver.restore import restore
from archiver.store import StoreWrapper, backend_of, open_store
from archiver.store.b2 import B2Store
from archiver.store.s3 import S3Store
from archiver.verify import verify
from tests.conftest import history_of, restored_root, snapshot
from tests.scenario.test_crash import start_run, wait_for_volumes
from tests.scenario.test_roundtrip import assert_self_contained
from tests.scenario.test_year_of_lifecycle import Recording
from tests.servers import B2Sim

DAYS = [f"2027-04-{1 + d:02d}T02:00:00Z" for d in range(5)]  # F = 2: generations open on days 0, 2 and 4


def tree(src, files: int = 60) -> None:
    for i in range(files):
        (src / f"d{i % 6}").mkdir(exist_ok=True)
        (src / f"d{i % 6}" / f"f{i:03d}.txt").write_bytes(f"{i} ".encode() * (400 + 13 * i))


def change(src, day: int) -> None:
    (src / "d0" / "f000.txt").write_bytes(f"changed on {day}\n".encode() * 100)
    (src / f"new{day}.txt").write_text(f"new on {day}\n")


def run_days(repo, cfg, ws, clock, days=DAYS, **kw):
    states, reports = {}, []
    for day, now in enumerate(days):
        clock.at = parse_time(now)
        if day:
            change(ws.src, day)
        report = run_job(repo, cfg, cfg.job("data"), clock=clock, state_dir=ws.root / "state", **kw)
        assert not report.warnings, report.warnings
        states[report.manifest_key] = snapshot(ws.src)
        reports.append(report)
    return states, reports


def restore_all(repo, ws, states, tag="r") -> int:
    history = history_of(repo)
    for point in history.points:
        target = ws.root / f"{tag}-{point.name.gseq}-{point.name.pseq}"
        restore(repo, history, point, target=target, includes=[], overwrite=False, workdir=ws.root / "w")
        assert snapshot(restored_root(target, ws.src)) == states[point.key], point.key
    return len(history.points)


def test_synthetic_full_on_local_copies_live_volumes_and_survives_the_old_generation(workspace):
    ws = workspace
    tree(ws.src)
    ws.write_config(generation_days=2, volume_size="16KiB", workers=1)
    cfg = config_mod.load(ws.config)
    clock, ledger = FixedClock(parse_time(DAYS[0])), UploadLedger()
    from archiver.store import LocalStore

    repo = Repository.init(cfg, clock.now(), store=open_store(cfg.repository_url,
                                                              backend=Recording(LocalStore(ws.repo), ledger, clock, "")))
    states, reports = run_days(repo, cfg, ws, clock)
    kinds = [r.kind_detail or r.kind for r in reports]
    assert kinds == ["active full", "incremental", "synthetic full", "incremental", "synthetic full"]
    for full in (reports[2], reports[4]):
        # Only what changed is uploaded; everything still live is copied, not re-read.
        assert full.synthetic["copied_volumes"] >= 5 and full.synthetic["repacked_bytes"] < 0.05 * full.bytes_scanned
        assert full.bytes_packed < 0.1 * full.bytes_scanned
    assert restore_all(repo, ws, states) == 5
    assert assert_self_contained(ws.config) > 0
    assert verify(repo, ["data"], deep=True, workdir=ws.root / "v", clock=FixedClock(parse_time(DAYS[-1]))).ok

    # The lifecycle removes generation 1 whole; every point of the later generations still restores.
    executor = LifecycleExecutor(LocalAdmin(ws.repo), Rule.from_s3(s3_lifecycle(cfg.retention, job_prefixes("", ["data"]))),
                                 uploaded_at=ledger)
    executor.apply(parse_time(DAYS[1]) + timedelta(days=cfg.retention.lifecycle_age_days))  # gen 1 is due, gen 2 not
    names = [p.name for p in history_of(repo).points]
    assert {n.gseq for n in names} == {2, 3} and not list(ws.repo.glob("data/volumes/g000001-*/*/*"))
    restore_all(repo, ws, {k: v for k, v in states.items() if "/g000001-" not in k}, tag="after")


def test_active_fulls_on_demand_by_policy_and_without_copy(workspace):
    ws = workspace
    tree(ws.src)
    ws.write_config(generation_days=2, volume_size="16KiB", workers=1)
    ws.config.write_text(ws.config.read_text() + "\n[fulls]\nactive_every = 3\n")
    cfg = config_mod.load(ws.config)
    clock = FixedClock(parse_time(DAYS[0]))
    repo = Repository.init(cfg, clock.now())
    _, reports = run_days(repo, cfg, ws, clock)
    assert [r.kind_detail for r in reports[::2]] == ["active full", "synthetic full", "active full"]
    clock.at = parse_time(DAYS[-1]) + timedelta(hours=1)
    forced = run_job(repo, cfg, cfg.job("data"), clock=clock, state_dir=ws.root / "state", force_full=True,
                     full_mode="active")
    assert forced.kind_detail == "active full" and not forced.synthetic

    class NoCopy(StoreWrapper):
        @property
        def capabilities(self):
            return dataclasses.replace(self.inner.capabilities, server_side_copy=False)

    plain = Repository.open(cfg, store=open_store(cfg.repository_url, backend=NoCopy(open_store(cfg.repository_url))))
    clock.at += timedelta(hours=1)
    report = run_job(plain, cfg, cfg.job("data"), clock=clock, state_dir=ws.root / "state", force_full=True)
    assert report.kind_detail == "active full" and any("no server-side copy" in n for n in report.notes)


class FailingCopies(StoreWrapper):
    """The first copy dies mid-way; the second lands but reports a checksum that does not match."""

    def __init__(self, inner):
        super().__init__(inner)
        self.calls = 0
        self.bad_keys: list[str] = []

    def copy(self, src_key, dst_key, *, src_version_id=None, sha256, retention=None, size=None):
        self.calls += 1
        if self.calls == 1:
            raise StoreError("connection dropped during the copy (injected)")
        if self.calls == 2:
            self.inner.copy(src_key, dst_key, src_version_id=src_version_id, sha256=sha256, retention=retention, size=size)
            self.bad_keys.append(dst_key)
            raise IntegrityError(f"The copy {dst_key} does not have the SHA-256 recorded for {src_key} (injected).")
        return self.inner.copy(src_key, dst_key, src_version_id=src_version_id, sha256=sha256, retention=retention, size=size)


def test_failed_or_mismatching_copies_are_repacked_and_never_referenced(workspace):
    ws = workspace
    tree(ws.src)
    ws.write_config(generation_days=2, volume_size="16KiB", workers=1)
    cfg = config_mod.load(ws.config)
    clock = FixedClock(parse_time(DAYS[0]))
    from archiver.store import LocalStore

    failing = FailingCopies(LocalStore(ws.repo))
    repo = Repository.init(cfg, clock.now(), store=open_store(cfg.repository_url, backend=failing))
    states, reports = run_days(repo, cfg, ws, clock, days=DAYS[:3])
    synthetic = reports[2]
    assert synthetic.synthetic["failed_copies"] and len(synthetic.synthetic["failed_copies"]) == 2
    assert any("repacked" in n for n in synthetic.notes)
    restore_all(repo, ws, states)
    report = verify(repo, ["data"], deep=True, workdir=ws.root / "v", clock=FixedClock(parse_time(DAYS[-1])))
    assert report.ok and failing.bad_keys[0] in report.orphans  # the bad copy is an orphan, never referenced


def test_a_killed_rollover_leaves_the_old_generation_intact_and_is_redone(workspace):
    ws = workspace
    for i in range(40):
        (ws.src / f"blob{i:02d}.bin").write_bytes(os.urandom(200_000))
    ws.write_config(generation_days=2, volume_size="256KiB", workers=1, compression="copy")
    assert ws.genarc("init").code == EXIT_OK
    assert ws.genarc("run", now=DAYS[0]).code == EXIT_OK
    (ws.src / "changed.txt").write_text("changed\n")
    proc = start_run(ws, DAYS[2])  # opens generation 2: a synthetic full
    wait_for_volumes(ws.repo, "data/volumes/g000002-*/p000001-*/v*.7z", 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    listing = ws.genarc("list", "--json").json[0]["generations"]
    assert [g["generation"] for g in listing] == [1]
    assert ws.genarc("verify").code == EXIT_OK
    result = ws.genarc("run", "--json", now=DAYS[2])
    assert result.code == EXIT_OK
    report = result.json["jobs"][0]["report"]
    assert report["kind_detail"] == "synthetic full" and report["generation"] == 2
    target = ws.root / "r"
    assert ws.genarc("restore", "data", "--target", str(target)).code == EXIT_OK
    assert snapshot(restored_root(target, ws.src)) == snapshot(ws.src)


@pytest.mark.parametrize("kind", ["s3-moto", "s3-ceph", "b2-sim"])
def test_synthetic_full_on_remote_stores_carries_the_new_lock(workspace, request, monkeypatch, kind):
    ws = workspace
    tree(ws.src)
    clock = FixedClock(parse_time(DAYS[0]))
    if kind == "b2-sim":
        sim = B2Sim()
        bucket = sim.make_bucket()
        from archiver.policy import b2_backup_capabilities

        key_id, key = sim.make_key(b2_backup_capabilities(lock=True))
        ws.write_config(url=f"b2://{bucket}/backups", generation_days=2, volume_size="16KiB", workers=1)
        backend = B2Store(lambda: sim.api_for(key_id, key), bucket, "backups")
    else:
        # The backup user with exactly the `genarc policy` rights (IAM enforced on moto; on Ceph, in a bucket
        # another user owns): a HEAD of a missing key must not turn every copy into a repack.
        from tests.scenario.test_forged_history import _server

        server, bucket, _, keys, _ = _server(request, "moto" if kind == "s3-moto" else "ceph", ws, monkeypatch)
        ws.write_config(url=f"s3://{bucket}/backups", endpoint_url=server.url, generation_days=2, volume_size="16KiB",
                        workers=1)
        backend = S3Store(lambda: server.client(keys), bucket, "backups")
    cfg = config_mod.load(ws.config)
    repo = Repository.init(cfg, clock.now(), store=open_store(cfg.repository_url, backend=backend))
    states, reports = run_days(repo, cfg, ws, clock, days=DAYS[:4])
    synthetic = reports[2]
    assert synthetic.kind_detail == "synthetic full" and synthetic.synthetic["copied_volumes"] >= 5, synthetic.synthetic
    assert not synthetic.synthetic.get("failed_copies"), synthetic.synthetic  # copies, not repacks
    assert synthetic.requests["deletes"] == 0
    restore_all(repo, ws, states)
    # Every object of generation 2, copies included, carries generation 2's lock date.
    planned = lock_until(parse_time(DAYS[2]), cfg.retention)
    generation2 = [v for v in backend_of(repo.store).list_versions("data/") if "/g000002-" in v.key]
    assert len(generation2) >= synthetic.synthetic["copied_volumes"] + 2
    for version in generation2:
        info = repo.store.stat(version.key, version_id=version.version_id)
        assert info.retention is not None and info.retention.mode == "compliance"
        assert abs((info.retention.until - planned).total_seconds()) <= 1, version.key
    from archiver import manifest

    names = [p.name for p in history_of(repo).points]
    first = next(n for n in names if n.gseq == 2 and n.pseq == 1)
    loaded = manifest.load(repo, first, ws.root / "m")
    assert all("/g000002-" in o["key"] for o in loaded.objects)
    assert sum(1 for o in loaded.objects if o.get("copied_from", "").startswith("data/volumes/g000001-")) >= 5

    if kind == "s3-moto":
        # The lifecycle removes generation 1 (governance bypass: moto checks locks in real time); gen 2 still restores.
        admin = S3Admin(server.client(server.admin), bucket, bypass_governance=True)
        rules = Rule.from_s3(s3_lifecycle(cfg.retention, job_prefixes("backups", ["data"])))
        born = {v.key: v.modified for v in backend_of(repo.store).list_versions("data/")}
        ledger = UploadLedger()
        for version in admin.versions("backups/data/"):
            gen_start = parse_time(DAYS[0]) if "/g000001-" in version.key else parse_time(DAYS[2])
            ledger.record(version.key, version.version_id, gen_start)
        assert born
        LifecycleExecutor(admin, rules, uploaded_at=ledger).apply(parse_time(DAYS[0]) + timedelta(days=45))
        # Compliance locks in moto's real-time future keep generation 1's versions; the markers hide them from
        # listings, and generation 2 restores from its own copies regardless.
        later = {k: v for k, v in states.items() if "/g000002-" in k}
        history = history_of(repo)
        for point in [p for p in history.points if p.name.gseq == 2]:
            target = ws.root / f"late-{point.name.pseq}"
            restore(repo, history, point, target=target, includes=[], overwrite=False, workdir=ws.root / "w2")
            assert snapshot(restored_root(target, ws.src)) == later[point.key]
