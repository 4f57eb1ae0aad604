"""genarc watch, run as a monitoring host would: another machine, a read-only key."""

from __future__ import annotations

import json

import pytest

from archiver.errors import EXIT_OK, EXIT_UNSAFE
from tests.servers import MotoServer, without_retention_cap

DAY0, DAY1, DAY2, DAY3 = "2027-08-01T02:00:00Z", "2027-08-02T02:00:00Z", "2027-08-03T02:00:00Z", "2027-08-04T02:00:00Z"


@pytest.fixture
def moto():
    server = MotoServer()
    yield server
    server.stop()


def as_key(monkeypatch, keys) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys.secret_access_key)


def findings(result) -> dict[str, str]:
    return {f["kind"]: f["message"] for f in result.json["findings"]}


def test_watch_flags_staleness_drift_and_a_broken_chain_with_a_read_only_key(workspace, moto, monkeypatch):
    ws = workspace
    bucket = moto.make_bucket()
    (ws.src / "a.txt").write_text("a\n")
    # governance: so that the test's admin can play a corrupting attacker below (compliance would stop even it)
    ws.write_config(url=f"s3://{bucket}/backups", endpoint_url=moto.url, lock_mode="governance")
    admin = moto.make_admin()
    backup = moto.make_user("backup", without_retention_cap(ws.genarc("policy", "--json").json))
    watchdog = moto.make_user("watchdog", ws.genarc("policy", "--watchdog", "--json").json)
    moto.enforce_iam()

    as_key(monkeypatch, backup)
    assert ws.genarc("init").code == EXIT_OK
    assert ws.genarc("run", now=DAY0).code == EXIT_OK
    (ws.src / "b.txt").write_text("b\n")
    assert ws.genarc("run", now=DAY1).code == EXIT_OK

    as_key(monkeypatch, watchdog)
    healthy = ws.genarc("watch", "--json", now=DAY1)
    assert healthy.code == EXIT_OK and healthy.json["findings"] == []
    # The read-only key really is read-only.
    with pytest.raises(Exception, match="AccessDenied"):
        moto.client(watchdog).put_object(Bucket=bucket, Key="backups/x", Body=b"x")

    stale = ws.genarc("watch", "--json", "--max-age", "26h", now=DAY3)
    assert stale.code == EXIT_UNSAFE and set(findings(stale)) == {"stale"}

    # An attacker on the client narrows what is backed up.
    as_key(monkeypatch, backup)
    other = ws.root / "other"
    other.mkdir()
    ws.config.write_text(ws.config.read_text().replace(json.dumps([str(ws.src)]), json.dumps([str(other)])))
    assert ws.genarc("run", now=DAY2).code == EXIT_OK
    as_key(monkeypatch, watchdog)
    drift = ws.genarc("watch", "--json", now=DAY2)
    assert drift.code == EXIT_UNSAFE and set(findings(drift)) == {"drift"}
    assert str(ws.src) in findings(drift)["drift"] and str(other) in findings(drift)["drift"]

    # Someone with admin rights removes a manifest from the middle of the chain.
    s3 = moto.client(admin)
    key = next(v for v in s3.list_object_versions(Bucket=bucket, Prefix="backups/data/manifests/")["Versions"]
               if "/p000002-" in v["Key"])
    s3.delete_object(Bucket=bucket, Key=key["Key"], VersionId=key["VersionId"], BypassGovernanceRetention=True)
    broken = ws.genarc("watch", "--json", now=DAY2)
    assert broken.code == EXIT_UNSAFE and "chain" in findings(broken)
    assert "/p000002-" in findings(broken)["chain"] and "missing" in findings(broken)["chain"]
