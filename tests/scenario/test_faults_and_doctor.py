"""Transient faults inside the retry layer, and `genarc doctor` on good and bad repositories."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from archiver import config as config_mod
from archiver.backup import run_job
from archiver.clock import FixedClock, parse_time
from archiver.doctor import diagnose
from archiver.errors import EXIT_OK, EXIT_UNSAFE, StoreError
from archiver.policy import b2_backup_capabilities
from archiver.repository import Repository
from archiver.restore import restore
from archiver.store import RequestCounts, open_store
from archiver.store.b2 import B2Store
from archiver.store.s3 import S3Store, translate
from tests.conftest import history_of, restored_root, snapshot
from tests.scenario.test_immutable_stores import small_tree
from tests.servers import B2Sim, MotoServer, without_retention_cap


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


FAULTS = [
    lambda: _client_error("InternalError", 500),
    lambda: _client_error("ServiceUnavailable", 503),
    lambda: _client_error("SlowDown", 503),
    lambda: ConnectionClosedError(endpoint_url="http://s3"),
    lambda: ReadTimeoutError(endpoint_url="http://s3"),
]


class FaultInjector:
    """Sits inside the retry layer and fails a share of calls the way botocore does, after translation.

    Some faults strike after the call reached the server (a lost reply), some before.
    """

    def __init__(self, inner, rate: float, seed: int = 7, fail_puts_after: int | None = None):
        self.inner, self.rate, self.rng = inner, rate, random.Random(seed)
        self.injected: Counter = Counter()
        self.fail_puts_after = fail_puts_after
        self.puts = 0

    @property
    def capabilities(self):
        return self.inner.capabilities

    def _fault(self, name: str):
        fault = self.rng.choice(FAULTS)()
        self.injected[type(fault).__name__] += 1
        return translate(fault, name)

    def _call(self, name: str, fn, *args, **kwargs):
        if self.rng.random() < self.rate / 2:
            raise self._fault(name)  # before the server saw it
        result = fn(*args, **kwargs)
        if self.rng.random() < self.rate / 2:
            raise self._fault(name)  # after: the reply was lost
        return result

    def put(self, key, source, *, sha256, retention=None):
        self.puts += 1
        if self.fail_puts_after is not None and self.puts > self.fail_puts_after:
            raise translate(_client_error("ServiceUnavailable", 503), "put")
        return self._call("put", self.inner.put, key, source, sha256=sha256, retention=retention)

    def get(self, key, **kw):
        return self._call("get", self.inner.get, key, **kw)

    def download(self, key, dest, **kw):
        return self._call("download", self.inner.download, key, dest, **kw)

    def stat(self, key, **kw):
        return self._call("stat", self.inner.stat, key, **kw)

    def list(self, prefix):
        return iter(self._call("list", lambda: list(self.inner.list(prefix))))

    def list_versions(self, prefix):
        return iter(self._call("list_versions", lambda: list(self.inner.list_versions(prefix))))

    def folders(self, prefix):
        return iter(self._call("folders", lambda: list(self.inner.folders(prefix))))

    def copy(self, *args, **kwargs):
        return self._call("copy", self.inner.copy, *args, **kwargs)

    def ensure_lock(self, key, **kw):
        return self._call("ensure_lock", self.inner.ensure_lock, key, **kw)


@pytest.fixture
def moto():
    server = MotoServer()
    yield server
    server.stop()


def _s3_repo(ws, server, injector_box: dict, **inject):
    bucket = server.make_bucket()
    ws.write_config(url=f"s3://{bucket}/backups", endpoint_url=server.url, volume_size="32KiB", workers=1)
    cfg = config_mod.load(ws.config)

    def inject_faults(inner):
        injector_box["injector"] = FaultInjector(inner, **inject)
        return injector_box["injector"]

    def make(injected: bool):
        backend = S3Store(server.client, bucket, "backups")
        return open_store(cfg.repository_url, backend=backend, inside_retry=inject_faults if injected else None,
                          retry_sleep=lambda s: None, counts=RequestCounts())

    return cfg, bucket, make


def test_a_run_survives_ten_percent_transient_faults(workspace, moto):
    ws = workspace
    for i in range(30):
        (ws.src / f"f{i}.bin").write_bytes(random.Random(i).randbytes(20_000))
    small_tree(ws.src)
    box: dict = {}
    cfg, bucket, make = _s3_repo(ws, moto, box, rate=0.10)
    Repository.init(cfg, parse_time("2027-03-01T00:00:00Z"), store=make(False))
    repo = Repository.open(cfg, store=make(True))
    report = run_job(repo, cfg, cfg.job("data"), clock=FixedClock(parse_time("2027-03-01T02:00:00Z")),
                     state_dir=ws.root / "state")
    injector = box["injector"]
    assert sum(injector.injected.values()) >= 3, injector.injected  # the faults really happened
    assert report.volumes >= 10 and report.requests["deletes"] == 0
    versions = moto.client().list_object_versions(Bucket=bucket, Prefix="backups/")
    assert not versions.get("DeleteMarkers")
    keys = Counter(v["Key"] for v in versions["Versions"])
    assert all(count == 1 for count in keys.values()), "a retry wrote a key twice"
    history = history_of(repo)
    target = ws.root / "r"
    restore(repo, history, history.points[-1], target=target, includes=[], overwrite=False, workdir=ws.root / "w")
    assert snapshot(restored_root(target, ws.src)) == snapshot(ws.src)
    # Every volume in the bucket is referenced: no renamed or stray copies were left behind.
    from archiver.verify import verify

    verified = verify(Repository.open(cfg, store=make(False)), ["data"], deep=True, workdir=ws.root / "v",
                      clock=FixedClock(parse_time("2099-01-01T00:00:00Z")))
    assert verified.ok and verified.orphans == [], verified.problems


def test_past_the_retry_budget_the_run_fails_cleanly_and_the_next_one_succeeds(workspace, moto):
    ws = workspace
    small_tree(ws.src)
    box: dict = {}
    cfg, bucket, make = _s3_repo(ws, moto, box, rate=0.0, fail_puts_after=3)
    Repository.init(cfg, parse_time("2027-03-01T00:00:00Z"), store=make(False))
    with pytest.raises(StoreError, match="failed 6 times"):
        run_job(Repository.open(cfg, store=make(True)), cfg, cfg.job("data"),
                clock=FixedClock(parse_time("2027-03-01T02:00:00Z")), state_dir=ws.root / "state")
    clean = Repository.open(cfg, store=make(False))
    assert history_of(clean).points == []  # nothing committed
    report = run_job(clean, cfg, cfg.job("data"), clock=FixedClock(parse_time("2027-03-01T03:00:00Z")),
                     state_dir=ws.root / "state")
    assert report.point == 1 and not report.warnings
    history = history_of(clean)
    restore(clean, history, history.points[-1], target=ws.root / "r", includes=[], overwrite=False, workdir=ws.root / "w")
    assert snapshot(restored_root(ws.root / "r", ws.src)) == snapshot(ws.src)


def lifecycle_for(cfg, prefix: str) -> dict:
    age = cfg.retention.lifecycle_age_days
    return {"Rules": [{"ID": "genarc", "Status": "Enabled", "Filter": {"Prefix": prefix}, "Expiration": {"Days": age},
                       "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
                       "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]}


def test_doctor_on_s3(workspace, moto, monkeypatch):
    ws = workspace
    safe_bucket, open_bucket = moto.make_bucket(), moto.make_bucket(lock=False)
    moto.client().put_bucket_versioning(Bucket=open_bucket, VersioningConfiguration={"Status": "Enabled"})
    ws.write_config(url=f"s3://{safe_bucket}/backups", endpoint_url=moto.url)
    cfg = config_mod.load(ws.config)
    moto.client().put_bucket_lifecycle_configuration(Bucket=safe_bucket, LifecycleConfiguration=lifecycle_for(cfg, "backups/"))
    admin = moto.make_admin()
    backup = moto.make_user("backup", without_retention_cap(ws.genarc("policy", "--json").json))
    moto.enforce_iam()

    def doctor(keys):
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys.access_key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys.secret_access_key)
        result = ws.genarc("doctor", "--json")
        return result.code, {c["name"]: c["status"] for c in result.json["checks"]}

    code, checks = doctor(backup)
    assert code == EXIT_OK, checks
    assert checks["delete probe"] == "ok" and checks["object lock"] == "ok" and checks["lifecycle"] == "ok"
    assert checks["tripwire"] == "ok"
    # A key that may not raise a lock cannot protect the last clean point: said, with the fallback.
    ws.config.write_text(ws.config.read_text().replace("[repository]\n", "[repository]\nretention_updates = false\n"))
    code, checks = doctor(backup)
    assert checks["tripwire"] == "warn"
    ws.config.write_text(ws.config.read_text().replace("retention_updates = false\n", "")
                         + "\n[tripwire]\nenabled = false\n")
    code, checks = doctor(backup)
    assert checks["tripwire"] == "warn"
    ws.write_config(url=f"s3://{safe_bucket}/backups", endpoint_url=moto.url)

    code, checks = doctor(admin)  # a key that can delete
    assert code == EXIT_UNSAFE and checks["delete probe"] == "fail"

    ws.write_config(url=f"s3://{open_bucket}/backups", endpoint_url=moto.url)
    code, checks = doctor(admin)  # a bucket without lock
    assert code == EXIT_UNSAFE and checks["object lock"] == "fail"
    human = ws.genarc("doctor")
    assert human.code == EXIT_UNSAFE and "FAIL" in human.out and "ransomware-safe: NO" in human.out

    short = lifecycle_for(cfg, "backups/")
    short["Rules"][0]["Expiration"]["Days"] = 10
    moto.client(admin).put_bucket_lifecycle_configuration(Bucket=safe_bucket, LifecycleConfiguration=short)
    ws.write_config(url=f"s3://{safe_bucket}/backups", endpoint_url=moto.url)
    code, checks = doctor(backup)
    assert code == EXIT_UNSAFE and checks["lifecycle"] == "fail"


def test_doctor_on_b2(workspace):
    sim = B2Sim()
    bucket = sim.make_bucket(lock=True)
    workspace.write_config(url=f"b2://{bucket}/backups")
    cfg = config_mod.load(workspace.config)
    # readBucketRetentions lets the key see the bucket's File Lock setting.
    good_id, good_key = sim.make_key(b2_backup_capabilities(lock=True))
    bad_id, bad_key = sim.make_key(b2_backup_capabilities(lock=True) + ["deleteFiles"])
    good = diagnose(cfg, B2Store(lambda: sim.api_for(good_id, good_key), bucket, "backups"), parse_time("2027-03-01"))
    bad = diagnose(cfg, B2Store(lambda: sim.api_for(bad_id, bad_key), bucket, "backups"), parse_time("2027-03-01"))
    good_checks = {c.name: c.status for c in good.checks}
    bad_checks = {c.name: c.status for c in bad.checks}
    assert good_checks["key capabilities"] == "ok" and good_checks["object lock"] == "ok" and good.safe
    assert good_checks["tripwire"] == "ok"  # the key has writeFileRetentions: a trip can raise locks
    no_id, no_key = sim.make_key([c for c in b2_backup_capabilities(lock=True) if c != "writeFileRetentions"])
    unable = diagnose(cfg, B2Store(lambda: sim.api_for(no_id, no_key), bucket, "backups"), parse_time("2027-03-01"))
    assert {c.name: c.status for c in unable.checks}["tripwire"] == "warn"
    assert bad_checks["key capabilities"] == "fail" and not bad.safe
    assert any("deleteFiles" in c.detail for c in bad.checks)


def test_doctor_calls_a_local_repository_unsafe(workspace):
    workspace.write_config()
    result = workspace.genarc("doctor")
    assert result.code == EXIT_UNSAFE and "ransomware-safe: NO" in result.out and "local repository" in result.out


@pytest.mark.parametrize("kind", ["moto", "ceph"])
def test_doctor_reads_rules_on_each_job_prefix_and_leaves_its_probe_marker_under_one(workspace, request, monkeypatch,
                                                                                     kind):
    """The rules `plan --apply` writes sit on job prefixes; an admin's one-day expiry on the job prefix is a
    failure, not "no lifecycle rule"; and a probe by a key that can delete leaves its marker where a rule reaches."""
    from archiver import plan as plan_mod

    ws = workspace
    server = request.getfixturevalue(kind)
    bucket = server.make_bucket()
    ws.write_config(url=f"s3://{bucket}/backups", endpoint_url=server.url)
    cfg = config_mod.load(ws.config)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.admin.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.admin.secret_access_key)
    admin = server.client()
    admin.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration=plan_mod.s3_lifecycle(cfg.retention, plan_mod.job_prefixes("backups", ["data"])))
    checks = {c["name"]: c for c in ws.genarc("doctor", "--json").json["checks"]}
    assert checks["lifecycle"]["status"] == "ok", checks["lifecycle"]
    assert checks["delete probe"]["status"] == "fail"  # the admin key can delete
    # Where the marker lands, seen without the rules: on Ceph, whose lifecycle days last seconds here, the job's
    # rule may remove an expired marker before it is listed (which would show that a rule reaches it, but not where).
    admin.delete_bucket_lifecycle(Bucket=bucket)
    ws.genarc("doctor", "--json")
    markers = admin.list_object_versions(Bucket=bucket, Prefix="backups/").get("DeleteMarkers", [])
    if kind == "ceph":  # moto gap: it leaves no marker for a key that never existed (AWS and Ceph do)
        assert markers
    assert all(m["Key"].startswith("backups/data/genarc-delete-probe-") for m in markers), markers

    one_day = lifecycle_for(cfg, "backups/data/")
    one_day["Rules"][0]["Expiration"]["Days"] = 1
    admin.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=one_day)
    checks = {c["name"]: c for c in ws.genarc("doctor", "--json").json["checks"]}
    assert checks["lifecycle"]["status"] == "fail", checks["lifecycle"]
    narrower = lifecycle_for(cfg, "backups/data/volumes/")  # a rule on part of the job counts as well
    narrower["Rules"][0]["Expiration"]["Days"] = 1
    admin.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=narrower)
    checks = {c["name"]: c for c in ws.genarc("doctor", "--json").json["checks"]}
    assert checks["lifecycle"]["status"] == "fail", checks["lifecycle"]
