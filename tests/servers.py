"""Real S3 API servers and the B2 simulator, as the tests use them.

- moto's ThreadedMotoServer: an S3 (and IAM) API server on loopback. IAM can be
  enforced: users and policies are created with auth off, then enforcement is
  switched on through moto's ``/moto-api/reset-auth`` endpoint.
- b2sdk's RawSimulator, through ``B2HttpApiConfig(_raw_api_class=...)``.

Known gaps of these servers are fixed or marked here, never worked around in genarc.
"""

from __future__ import annotations

import json
import secrets
import urllib.request
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config as BotoConfig

REGION = "us-east-1"


@dataclass
class Keys:
    access_key_id: str
    secret_access_key: str


def fix_moto_signature_check_of_encoded_queries() -> None:
    """moto bug: with IAM enforced, it rebuilds the request to re-check the signature from a
    query string in which ``%2F`` was already decoded to ``/``, while botocore's canonical form
    re-uses the query as given. Every listing with a prefix containing ``/`` then fails with
    SignatureDoesNotMatch (moto issue 5948 describes the symptom). AWS and Ceph accept these
    requests. The server runs in this process, so the tests re-encode the query canonically
    before moto computes the signature. genarc itself is unchanged.
    """
    from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

    from moto.iam import access_control

    cls = access_control.S3IAMRequest
    if getattr(cls, "_genarc_query_fix", False):
        return
    original = cls._create_aws_request

    def create_aws_request(self):  # type: ignore[no-untyped-def]
        request = original(self)
        parts = urlsplit(request.url)
        if parts.query:
            pairs = parse_qsl(parts.query, keep_blank_values=True)
            request.url = urlunsplit(parts._replace(query=urlencode(pairs, quote_via=quote, safe="-_.~")))
        return request

    cls._create_aws_request = create_aws_request
    cls._genarc_query_fix = True


class MotoServer:
    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        fix_moto_signature_check_of_encoded_queries()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server._server.server_address
        self.url = f"http://{host}:{port}"
        self.admin = Keys("admin-key", "admin-secret")  # any key works while auth is off
        self.enforced = False

    def client(self, keys: Keys | None = None, service: str = "s3", moto_copy_fix: bool = True) -> Any:
        keys = keys or self.admin
        client = boto3.client(
            service, endpoint_url=self.url, region_name=REGION, aws_access_key_id=keys.access_key_id,
            aws_secret_access_key=keys.secret_access_key,
            config=BotoConfig(request_checksum_calculation="when_required", response_checksum_validation="when_required",
                              s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )
        if service == "s3" and moto_copy_fix:
            add_moto_copy_checksum_header(client)
        return client

    def make_bucket(self, name: str | None = None, lock: bool = True) -> str:
        name = name or f"genarc-{secrets.token_hex(4)}"
        s3 = self.client()
        if lock:
            s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
        else:
            s3.create_bucket(Bucket=name)
        return name

    def make_user(self, name: str, policy: dict) -> Keys:
        iam = self.client(service="iam")
        name = f"{name}-{secrets.token_hex(3)}"  # moto's IAM state is shared by every server in the process
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return Keys(key["AccessKeyId"], key["SecretAccessKey"])

    def make_admin(self) -> Keys:
        """An IAM admin, so that admin calls keep working once auth is enforced."""
        admin = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        self.admin = self.make_user("admin", admin)
        return self.admin

    def enforce_iam(self) -> None:
        self._reset_auth(b"0")
        self.enforced = True

    def _reset_auth(self, count: bytes) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset-auth", data=count, method="POST",
                                         headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

    def stop(self) -> None:
        if self.enforced:
            # moto keeps the auth switch process-wide: turn enforcement off again for later servers.
            self._reset_auth(b"1000000000")
        self.server.stop()


def without_retention_cap(policy: dict) -> dict:
    """moto gap: it never supplies s3:object-lock-remaining-retention-days to its condition checks,
    and a Deny conditioned on a key it does not supply then matches every request, so genarc's
    century-lock cap would deny every upload. The cap statement is dropped for moto only; AWS
    evaluates it, and tests/unit/test_policy.py checks it structurally (Ceph 16 ignores the key too).
    """
    statements = [s for s in policy["Statement"]
                  if "s3:object-lock-remaining-retention-days" not in json.dumps(s.get("Condition", {}))
                  or s["Effect"] == "Allow"]
    return {**policy, "Statement": statements}


def add_moto_copy_checksum_header(client: Any) -> None:
    """moto gap: CopyObject into a lock bucket fails unless x-amz-sdk-checksum-algorithm is sent.

    AWS and Ceph accept the copy without it. This hook exists only in the tests, on the
    test's moto client; genarc itself sends what S3 documents.
    """

    def add_header(params: dict, **kwargs: Any) -> None:
        params.setdefault("headers", {})["x-amz-sdk-checksum-algorithm"] = "SHA256"

    client.meta.events.register("before-call.s3.CopyObject", add_header)


def fix_moto_copy_lock_check_in_server() -> None:
    """The same moto gap as above, fixed on the server's side, for a server that other processes (the
    genarc CLI in scripts/demo.py) talk to: a CopyObject that sets a lock is taken without
    x-amz-sdk-checksum-algorithm, as AWS and Ceph take it. A PutObject still needs its checksum."""
    from moto.s3.responses import S3Response
    from werkzeug.datastructures import Headers

    if getattr(S3Response, "_genarc_copy_fix", False):
        return
    original = S3Response._key_response_put

    def key_response_put(self: Any, query: dict, key_name: str) -> Any:
        if "x-amz-copy-source" in self.headers and not self.headers.get("x-amz-sdk-checksum-algorithm"):
            headers = Headers(self.headers)
            headers["x-amz-sdk-checksum-algorithm"] = "SHA256"
            self.headers = headers
        return original(self, query, key_name)

    S3Response._key_response_put = key_response_put
    S3Response._genarc_copy_fix = True


def fixed_b2_simulator_class():
    from b2sdk.v2 import RawSimulator

    class FixedRawSimulator(RawSimulator):
        """b2sdk's RawSimulator with the bug genarc's tests depend on fixed.

        Fix: ``copy_file`` does not register the new file id with its bucket, so the copy
        cannot be looked up by id afterwards (KeyError). The real B2 returns a normal file.
        """

        def copy_file(self, api_url, account_auth_token, source_file_id, new_file_name, *args, **kwargs):
            result = super().copy_file(api_url, account_auth_token, source_file_id, new_file_name, *args, **kwargs)
            destination = kwargs.get("destination_bucket_id") or self.file_id_to_bucket_id[source_file_id]
            self.file_id_to_bucket_id[result["fileId"]] = destination
            return result

    return FixedRawSimulator


class B2Sim:
    """One simulated B2 account; APIs for its keys share the same simulator state."""

    def __init__(self) -> None:
        from b2sdk.v2 import B2Api, B2HttpApiConfig, InMemoryAccountInfo

        self._B2Api, self._InMemoryAccountInfo = B2Api, InMemoryAccountInfo
        self.config = B2HttpApiConfig(_raw_api_class=fixed_b2_simulator_class())
        self.admin_api = B2Api(InMemoryAccountInfo(), api_config=self.config)
        self.raw = self.admin_api.session.raw_api
        self.account_id, self.master_key = self.raw.create_account()
        self.admin_api.authorize_account("production", self.account_id, self.master_key)

    def api_for(self, key_id: str, key: str) -> Any:
        api = self._B2Api(self._InMemoryAccountInfo(), api_config=self.config)
        api.session.raw_api = self.raw
        api.authorize_account("production", key_id, key)
        return api

    def make_bucket(self, lock: bool = True) -> str:
        name = f"genarc-{secrets.token_hex(4)}"
        self.admin_api.create_bucket(name, "allPrivate", is_file_lock_enabled=lock)
        return name

    def make_key(self, capabilities: list[str], name: str = "backup") -> tuple[str, str]:
        # The simulator cannot upload with bucket-restricted keys (a known bug), so keys are
        # account-wide here; the capability list is what the tests exercise.
        key = self.admin_api.create_key(capabilities, f"{name}-{secrets.token_hex(3)}")
        return key.id_, key.application_key


class B2SimAdmin:
    """Admin access to a simulated B2 bucket, for ``archiver.admin.lifecycle.LifecycleExecutor``: it lists
    every file version with its retention and upload time as the simulator holds them (read afresh each time,
    so an extended retention is seen), hides and deletes. The executor itself never removes a version whose
    retention is ahead of its simulated "now"; the simulator would not stop it (a gap the real B2 has not)."""

    def __init__(self, sim: "B2Sim", bucket: str) -> None:
        self.api, self.bucket_name = sim.admin_api, bucket
        self.bucket = sim.admin_api.get_bucket_by_name(bucket)

    def versions(self, prefix: str) -> list:
        from datetime import datetime, timezone

        from archiver.admin.lifecycle import AdminVersion

        found = []
        for version, _ in self.bucket.ls(prefix.rstrip("/"), latest_only=False, recursive=True):
            retention = getattr(version, "file_retention", None)
            until = None
            if retention is not None and getattr(retention, "retain_until", None):
                until = datetime.fromtimestamp(retention.retain_until / 1000, timezone.utc)
            found.append(AdminVersion(version.file_name, version.id_, int(version.size or 0),
                                      version.action == "hide", until,
                                      datetime.fromtimestamp(version.upload_timestamp / 1000, timezone.utc)))
        return found

    def hide(self, key: str) -> str | None:
        return self.bucket.hide_file(key).id_

    def remove_version(self, key: str, version_id: str | None) -> None:
        # The simulator checks retention against the real clock while the test's days are simulated:
        # with governance locks the admin bypasses it, once the executor has checked the simulated lock.
        self.api.delete_file_version(version_id, key, bypass_governance=True)
