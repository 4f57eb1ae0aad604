"""Every object genarc commits is locked as planned, by whatever path it arrived, and no request lowers a lock.

A reply lost after the server completed a multipart upload, or a copy, leaves the object in the bucket
before genarc checked its lock; moto and Ceph both drop lock headers on multipart uploads. The retry that
finds the object must confirm the lock (and set it where missing), never just its size and hash.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import pytest
from botocore.exceptions import ConnectionClosedError

from archiver.errors import PermissionDenied
from archiver.store import Retention, open_store
from archiver.store.s3 import S3Store
from tests.servers import MotoServer

PLAN = Retention("compliance", datetime(2031, 3, 1, tzinfo=timezone.utc))


@pytest.fixture
def server(request):
    if request.param == "moto":
        moto = MotoServer()
        request.addfinalizer(moto.stop)
        return moto
    return request.getfixturevalue("ceph")


def _lose_one_reply(operation: str, lost: list):
    """A client factory whose first reply to ``operation`` is lost after the server acted on it."""

    def drop(**kwargs):
        if not lost:
            lost.append(operation)
            raise ConnectionClosedError(endpoint_url="injected")

    def factory(server):
        def make():
            client = server.client()
            client.meta.events.register(f"after-call.s3.{operation}", drop)
            return client
        return make

    return factory


def _head_lock(server, bucket: str, key: str) -> tuple[str, datetime]:
    head = server.client().head_object(Bucket=bucket, Key=f"p/{key}")
    return head.get("ObjectLockMode"), head.get("ObjectLockRetainUntilDate")


@pytest.mark.parametrize("server", ["moto", "ceph"], indirect=True)
@pytest.mark.parametrize("operation", ["CompleteMultipartUpload", "CopyObject"])
def test_an_object_whose_reply_was_lost_is_committed_only_locked(server, operation, tmp_path):
    bucket, lost = server.make_bucket(), []
    backend = S3Store(_lose_one_reply(operation, lost)(server), bucket, "p", multipart_threshold=1024**2,
                      part_size=5 * 1024**2)
    store = open_store(f"s3://{bucket}/p", backend=backend, retry_sleep=lambda s: None)
    data = bytes(range(256)) * 8192  # 2 MiB: multipart above the 1 MiB threshold
    digest = hashlib.sha256(data).hexdigest()
    if operation == "CopyObject":
        source = store.put("v/source", data[:1000], sha256=hashlib.sha256(data[:1000]).hexdigest(), retention=PLAN)
        info = store.copy("v/source", "v/copy", src_version_id=source.version_id,
                          sha256=hashlib.sha256(data[:1000]).hexdigest(), retention=PLAN)
        key = "v/copy"
    else:
        info = store.put("v/big", data, sha256=digest, retention=PLAN)
        key = "v/big"
    assert lost == [operation]  # the reply really was lost, and the retry found the object
    mode, until = _head_lock(server, bucket, key)
    assert mode == "COMPLIANCE" and until >= PLAN.until, (mode, until)
    assert info.retention is not None and info.retention.covers(PLAN)


@pytest.mark.parametrize("server", ["moto"], indirect=True)
def test_setting_a_missing_lock_never_lowers_a_longer_one(server):
    """moto accepts a shorter retention (AWS and Ceph refuse it), so only the request genarc sends keeps the date."""
    bucket = server.make_bucket()
    client = server.client()
    body = b"longer lock"
    client.put_object(Bucket=bucket, Key="p/k", Body=body, ObjectLockMode="GOVERNANCE",
                      ObjectLockRetainUntilDate=datetime(2033, 1, 1, tzinfo=timezone.utc),
                      ChecksumAlgorithm="SHA256")
    store = open_store(f"s3://{bucket}/p", backend=S3Store(server.client, bucket, "p"))
    info = store.ensure_lock("k", version_id=None, retention=PLAN)  # compliance asked, a longer governance held
    mode, until = _head_lock(server, bucket, "k")
    assert (mode, until) == ("COMPLIANCE", datetime(2033, 1, 1, tzinfo=timezone.utc))
    assert info.retention == Retention("compliance", datetime(2033, 1, 1, tzinfo=timezone.utc))


def test_a_lock_request_keeps_the_stronger_mode_and_the_later_date():
    governance_later = Retention("governance", datetime(2033, 1, 1, tzinfo=timezone.utc))
    compliance_sooner = Retention("compliance", datetime(2029, 1, 1, tzinfo=timezone.utc))
    assert PLAN.raised_to(governance_later) == Retention("compliance", governance_later.until)
    assert Retention("governance", PLAN.until).raised_to(compliance_sooner) == Retention("compliance", PLAN.until)
    assert PLAN.raised_to(None) == PLAN
    assert not governance_later.covers(PLAN) and compliance_sooner.covers(Retention("governance", compliance_sooner.until))


@pytest.mark.parametrize("kind", ["moto", "ceph"])
def test_the_lock_audit_names_an_extension_past_2106_and_junk_locked_for_ten_years(workspace, request, monkeypatch,
                                                                                     kind):
    """With the backup key's rights, on the real clock: a clean repository audits clean; then the attacker
    extends a volume's lock to 2126 (Ceph 16 stores it in 32 bits: it wraps to the past and unlocks the
    object) and uploads junk under volumes/ locked for ten years. The audit names both."""
    from tests.scenario.test_forged_history import _server
    from tests.scenario.test_immutable_stores import sha_b64, small_tree

    ws = workspace
    server, bucket, attacker, _, _ = _server(request, kind, ws, monkeypatch)
    small_tree(ws.src)
    assert ws.genarc("init").code == 0
    assert ws.genarc("run").code == 0
    # doctor warns before: neither server evaluates the cap (the probe's object stays, a few bytes under the job)
    cap = {c["name"]: c for c in ws.genarc("doctor", "--json").json["checks"]}["retention cap"]
    assert cap["status"] == "warn" and "retention_updates = false" in cap["detail"], cap
    clean = ws.genarc("audit", "--json")
    assert clean.code == 0, clean.json["report"]["findings"]  # the probe is genarc's own, not a finding
    assert any("probe" in n for n in clean.json["report"]["notes"])

    volume = next(v for v in attacker.list_object_versions(Bucket=bucket, Prefix="backups/data/volumes/")["Versions"])
    attacker.put_object_retention(Bucket=bucket, Key=volume["Key"], VersionId=volume["VersionId"],
                                  Retention={"Mode": "COMPLIANCE",
                                             "RetainUntilDate": datetime(2126, 1, 1, tzinfo=timezone.utc)},
                                  ChecksumAlgorithm="SHA256")  # moto keeps the date; Ceph 16 wraps it (measured)
    junk = b"ten years of junk"
    junk_key = "backups/data/volumes/g000001-20260101T000000Z/p000001-0123456789abcdef/v000001.7z"
    attacker.put_object(Bucket=bucket, Key=junk_key, Body=junk, ChecksumAlgorithm="SHA256", ChecksumSHA256=sha_b64(junk),
                        ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=datetime.now(timezone.utc).replace(
                            year=datetime.now(timezone.utc).year + 10))
    audit = ws.genarc("audit", "--json")
    assert audit.code == 10
    locks = {f["key"]: f["message"] for f in audit.json["report"]["findings"] if f["kind"] == "lock"}
    assert "longer than" in locks[junk_key[len("backups/"):]]
    found = [f["message"] for f in audit.json["report"]["findings"]
             if f["kind"] == "lock" and f["key"] == volume["Key"][len("backups/"):]]
    expected = "past 2106" if kind == "moto" else "before it was stored"
    assert any(expected in message for message in found), found


def test_without_retention_updates_the_backup_key_cannot_touch_a_lock_and_every_object_is_still_locked(
        workspace, request, monkeypatch):
    """For Ceph 16: `retention_updates = false` denies PutObjectRetention to the backup key, so the 2126 "extension"
    that unlocks an object is refused; genarc uploads in single PUTs, which Ceph locks, and never needs it."""
    from botocore.exceptions import ClientError

    from tests.scenario.test_forged_history import _server
    from tests.scenario.test_immutable_stores import small_tree

    ws = workspace
    server, bucket, attacker, keys, _ = _server(request, "ceph", ws, monkeypatch,
                                             repository_extra=("retention_updates = false",))
    policy = ws.genarc("policy", "--json").json
    assert any("s3:PutObjectRetention" in s["Action"] for s in policy["Statement"] if s["Sid"] == "NeverDestroy")
    small_tree(ws.src)
    (ws.src / "big.bin").write_bytes(bytes(range(256)) * 8192)  # 2 MiB
    assert ws.genarc("init").code == 0
    assert ws.genarc("run").code == 0
    assert ws.genarc("audit").code == 0  # every object locked as planned

    volume = next(v for v in attacker.list_object_versions(Bucket=bucket, Prefix="backups/data/volumes/")["Versions"])
    with pytest.raises(ClientError) as refused:
        attacker.put_object_retention(Bucket=bucket, Key=volume["Key"], VersionId=volume["VersionId"],
                                      Retention={"Mode": "COMPLIANCE",
                                                 "RetainUntilDate": datetime(2126, 1, 1, tzinfo=timezone.utc)},
                                      ChecksumAlgorithm="SHA256")
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError) as refused:  # nor set or lift a legal hold
        attacker.put_object_legal_hold(Bucket=bucket, Key=volume["Key"], VersionId=volume["VersionId"],
                                       LegalHold={"Status": "ON"}, ChecksumAlgorithm="SHA256")
    assert refused.value.response["Error"]["Code"] == "AccessDenied"

    # An object above the multipart threshold goes up in one PUT, locked by the server itself.
    backend = S3Store(lambda: server.client(keys), bucket, "backups", multipart_threshold=1024**2,
                      retention_updates=False)
    data = bytes(range(256)) * 8192
    info = open_store(f"s3://{bucket}/backups", backend=backend).put(
        "data/volumes/big-one", data, sha256=hashlib.sha256(data).hexdigest(), retention=PLAN)
    head = attacker.head_object(Bucket=bucket, Key="backups/data/volumes/big-one", VersionId=info.version_id)
    assert head["ObjectLockMode"] == "COMPLIANCE" and head["ObjectLockRetainUntilDate"] >= PLAN.until
    assert "-" not in head["ETag"]  # not a multipart upload


@pytest.mark.parametrize("kind", ["moto", "ceph"])
def test_hold_keeps_a_generation_with_admin_keys_and_the_backup_key_cannot_release_it(workspace, request,
                                                                                      monkeypatch, kind):
    """The admin is the bucket's owner on moto. On Ceph 16 the owner may not set a legal hold on objects another
    user wrote (AccessDenied: no bucket-owner-enforced object ownership), so there it is a system user."""
    from tests.scenario.test_forged_history import _server
    from tests.scenario.test_immutable_stores import small_tree

    ws = workspace
    server, bucket, attacker, backup, owner = _server(request, kind, ws, monkeypatch)
    small_tree(ws.src)
    assert ws.genarc("init").code == 0
    assert ws.genarc("run").code == 0
    (ws.src / "later.txt").write_text("later\n")
    assert ws.genarc("run").code == 0

    def as_admin(keys) -> None:
        monkeypatch.setenv("GENARC_ADMIN_AWS_ACCESS_KEY_ID", keys.access_key_id)
        monkeypatch.setenv("GENARC_ADMIN_AWS_SECRET_ACCESS_KEY", keys.secret_access_key)

    admin = owner
    if kind == "ceph":
        as_admin(owner)
        refused = ws.genarc("hold", "data", "--generation", "1")
        assert refused.code == PermissionDenied.exit_code and "refused" in refused.err, refused.err
        admin = server.make_user("holder", system=True)
    as_admin(admin)
    held = ws.genarc("hold", "data", "--generation", "1", "--json")
    assert held.code == 0, held.err
    objects = {v["Key"][len("backups/"):] for v in attacker.list_object_versions(
        Bucket=bucket, Prefix="backups/data/")["Versions"]}
    assert held.json["objects"] == len(objects) and len(held.json["points"]) == 2
    audit = ws.genarc("audit", "--json")
    assert audit.code == 0 and sorted(audit.json["report"]["held"]) == sorted(objects)
    held_now = audit.json["report"]["held"]
    listing = ws.genarc("list", "--json").json[0]["generations"]
    assert listing[0]["held"] and all(p["held"] for p in listing[0]["points"])
    assert "HELD until released" in ws.genarc("list").out
    # doctor knows held objects outlive the lifecycle; a year on, the lifecycle would have removed them: a warning
    holds = {c["name"]: c for c in ws.genarc("doctor", "--no-delete-probe", "--json").json["checks"]}["legal holds"]
    assert holds["status"] == "ok" and "job data generation 1 (2 point(s)" in holds["detail"], holds
    later = ws.genarc("doctor", "--no-delete-probe", "--json",
                      now=(datetime.now(timezone.utc) + timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    holds = {c["name"]: c for c in later.json["checks"]}["legal holds"]
    assert holds["status"] == "warn" and "would have removed it" in holds["detail"], holds
    monkeypatch.delenv("GENARC_NOW")

    # The backup key cannot release it. moto gap: it ignores the policy's deny on PutObjectLegalHold.
    if kind == "ceph":
        from botocore.exceptions import ClientError

        some = next(v for v in attacker.list_object_versions(Bucket=bucket, Prefix="backups/data/")["Versions"])
        with pytest.raises(ClientError) as denied:
            attacker.put_object_legal_hold(Bucket=bucket, Key=some["Key"], VersionId=some["VersionId"],
                                           LegalHold={"Status": "OFF"}, ChecksumAlgorithm="SHA256")
        assert denied.value.response["Error"]["Code"] == "AccessDenied"
        assert ws.genarc("audit", "--json").json["report"]["held"] == held_now
    assert ws.genarc("hold", "data", "--generation", "1", "--release").code == 0
    assert ws.genarc("audit", "--json").json["report"]["held"] == []
    holds = {c["name"]: c for c in ws.genarc("doctor", "--no-delete-probe", "--json").json["checks"]}["legal holds"]
    assert holds["status"] == "ok" and "no restore point is held" in holds["detail"], holds


@pytest.mark.parametrize("kind", ["moto", "ceph"])
def test_a_version_a_lifecycle_removed_reads_as_missing_not_refused(workspace, request, monkeypatch, kind):
    """Where ListBucket is limited to the prefix, Ceph answers 403 for a key or version that is gone: a manifest
    removed by the lifecycle between `list`'s listing and its read must read as missing (the point is named
    unreadable), not stop the command with "check the key's policy". A real refusal stays a refusal."""
    from archiver.errors import ObjectNotFound, PermissionDenied
    from tests.scenario.test_forged_history import _server

    ws = workspace
    server, bucket, _, backup, owner = _server(request, kind, ws, monkeypatch)
    owner_s3 = server.client(owner)
    key = "backups/data/manifests/g000001-20260101T000000Z/p000001-20260101T000000Z-0123456789abcdef.m7z"
    gone = owner_s3.put_object(Bucket=bucket, Key=key, Body=b"expired")["VersionId"]
    owner_s3.delete_object(Bucket=bucket, Key=key, VersionId=gone)  # what the lifecycle does, as the owner
    store = S3Store(lambda: server.client(backup), bucket, "backups")
    for version_id in (gone, None):
        with pytest.raises(ObjectNotFound):
            store.stat(key[len("backups/"):], version_id=version_id)
        with pytest.raises(ObjectNotFound):
            store.get(key[len("backups/"):], version_id=version_id)
    owner_s3.put_object(Bucket=bucket, Key="elsewhere/x", Body=b"not the backup key's")
    with pytest.raises(PermissionDenied):  # there, outside the key's prefix: refused, and said so
        S3Store(lambda: server.client(backup), bucket, "elsewhere").stat("x")
