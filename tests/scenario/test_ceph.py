"""The lock claims, proven on a server that enforces them: Ceph RADOS Gateway.

The backup user runs genarc under an enforced IAM user policy (the one `genarc policy`
prints). Ceph ignores lock headers on CopyObject and CreateMultipartUpload, so genarc
checks every such object with a HEAD and sets a missing lock itself; the contract
suite covers that path, this test covers runs and attacks.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets

import pytest

from archiver import config as config_mod
from archiver.errors import EXIT_INTEGRITY, EXIT_OK, EXIT_PERMISSION
from archiver.generation import lock_until
from tests.scenario.test_immutable_stores import (restore_every_day, run_every_day, sha_b64, small_tree,
                                                  volume_generation_start)


def test_ceph_enforces_what_genarc_promises(workspace, ceph, monkeypatch):
    ws = workspace
    backup = ceph.make_user("backup")
    owner_client = ceph.client(backup)
    bucket = f"genarc-ceph-{secrets.token_hex(4)}"
    owner_client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    ws.write_config(url=f"s3://{bucket}/backups", endpoint_url=ceph.url, generation_days=2, volume_size="64KiB")
    policy = ws.genarc("policy", "--json").json
    uid = ceph.uid_of(backup)
    ceph.client(service="iam").put_user_policy(UserName=uid, PolicyName="genarc-backup",
                                               PolicyDocument=json.dumps(policy))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", backup.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", backup.secret_access_key)

    small_tree(ws.src)
    assert ws.genarc("init").code == EXIT_OK
    repo_config = json.loads(owner_client.get_object(Bucket=bucket, Key="backups/genarc-repository.json")["Body"].read())
    # Measured: Ceph 16 accepts If-None-Match on a versioned bucket and overwrites anyway; init learns it.
    assert repo_config["conditional_put"] is False

    states = run_every_day(ws)

    restore_every_day(ws, states, "before")
    cfg = config_mod.load(ws.config)
    versions = owner_client.list_object_versions(Bucket=bucket, Prefix="backups/data/")["Versions"]
    for version in versions:
        head = owner_client.head_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
        planned = lock_until(volume_generation_start(version["Key"][len("backups/"):]), cfg.retention)
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockRetainUntilDate"] == planned

    volume = next(v for v in versions if "/volumes/" in v["Key"])
    manifest = next(v for v in versions if "/manifests/" in v["Key"])

    def refused(call, **kwargs) -> str:
        with pytest.raises(Exception) as info:
            call(Bucket=bucket, **kwargs)
        assert "AccessDenied" in str(info.value), str(info.value)
        return str(info.value)

    refused(owner_client.delete_object, Key=volume["Key"], VersionId=volume["VersionId"])
    refused(owner_client.delete_object, Key=volume["Key"])  # no delete marker either: the policy denies it
    refused(owner_client.put_object_retention, Key=volume["Key"], VersionId=volume["VersionId"],
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": dt.datetime(2027, 2, 2, tzinfo=dt.timezone.utc)})
    refused(owner_client.put_bucket_lifecycle_configuration, LifecycleConfiguration={"Rules": [
        {"ID": "wipe", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 1}}]})
    refused(owner_client.put_bucket_versioning, VersioningConfiguration={"Status": "Suspended"})
    junk = b"ransom note"
    owner_client.put_object(Bucket=bucket, Key=manifest["Key"], Body=junk, ChecksumAlgorithm="SHA256",
                            ChecksumSHA256=sha_b64(junk))  # a new version; genarc reads the one it wrote
    still = owner_client.head_object(Bucket=bucket, Key=volume["Key"], VersionId=volume["VersionId"])
    assert still["ObjectLockRetainUntilDate"] == lock_until(volume_generation_start(volume["Key"][len("backups/"):]),
                                                             cfg.retention)
    restore_every_day(ws, states, "after")
    verified = ws.genarc("verify", "--json")
    assert verified.code == EXIT_INTEGRITY and verified.json["report"]["tampered"]

    doctor = ws.genarc("doctor", "--json")
    checks = {c["name"]: c["status"] for c in doctor.json["checks"]}
    assert checks["versioning"] == "ok" and checks["object lock"] == "ok" and checks["delete probe"] == "ok"


def test_a_key_that_may_not_read_the_lock_settings_is_told_which_right_it_lacks(workspace, ceph, monkeypatch):
    """A refused read of the bucket's Object Lock configuration is not "the bucket has no Object Lock": the key
    lacks a right, the user is told which, and nothing is written."""
    ws = workspace
    backup = ceph.make_user("backup")
    owner_client = ceph.client(backup)
    bucket = f"genarc-ceph-{secrets.token_hex(4)}"
    owner_client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    ws.write_config(url=f"s3://{bucket}/backups", endpoint_url=ceph.url)
    policy = ws.genarc("policy", "--json").json
    policy["Statement"].append({"Sid": "NoLockSettings", "Effect": "Deny",
                                "Action": "s3:GetBucketObjectLockConfiguration", "Resource": f"arn:aws:s3:::{bucket}"})
    ceph.client(service="iam").put_user_policy(UserName=ceph.uid_of(backup), PolicyName="genarc-backup",
                                               PolicyDocument=json.dumps(policy))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", backup.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", backup.secret_access_key)
    small_tree(ws.src)
    refused = ws.genarc("init")
    assert refused.code == EXIT_PERMISSION, refused.err
    assert "s3:GetBucketObjectLockConfiguration was refused" in refused.err and "no Object Lock" not in refused.err
    assert "Traceback" not in refused.err
    assert "Contents" not in owner_client.list_objects_v2(Bucket=bucket)
