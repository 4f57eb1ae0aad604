"""Ceph RADOS Gateway for the tests: a real S3 implementation, started by scripts/ceph-rgw.sh."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.servers import REGION, Keys

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "ceph-rgw.sh"


class CephGateway:
    def __init__(self, workdir: Path, url: str, admin: Keys) -> None:
        self.workdir, self.url, self.admin = workdir, url, admin
        self._uids: dict[str, str] = {}

    @classmethod
    def start_or_skip(cls) -> "CephGateway":
        if shutil.which("radosgw") is None:
            if os.environ.get("CI"):
                pytest.fail("radosgw is not installed; scripts/setup.sh --test installs it")
            pytest.skip("Ceph's radosgw is not installed (scripts/setup.sh --test installs it)")
        workdir = Path(os.environ.get("GENARC_CEPH_DIR", "/tmp/genarc-ceph"))
        done = subprocess.run(["bash", str(SCRIPT), "start", str(workdir)], capture_output=True, text=True, timeout=240)
        if done.returncode != 0:
            pytest.fail(f"Ceph RGW did not start:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        env = dict(line.split("=", 1) for line in (workdir / "env").read_text().split() if "=" in line)
        return cls(workdir, env["RGW_URL"], Keys(env["RGW_ADMIN_ACCESS_KEY"], env["RGW_ADMIN_SECRET_KEY"]))

    def stop(self) -> None:
        if not os.environ.get("GENARC_CEPH_KEEP"):
            subprocess.run(["bash", str(SCRIPT), "stop", str(self.workdir)], capture_output=True, timeout=120)

    def client(self, keys: Keys | None = None, service: str = "s3") -> Any:
        import boto3
        from botocore.config import Config as BotoConfig

        keys = keys or self.admin
        return boto3.client(service, endpoint_url=self.url, region_name=REGION, aws_access_key_id=keys.access_key_id,
                            aws_secret_access_key=keys.secret_access_key,
                            config=BotoConfig(request_checksum_calculation="when_required",
                                              response_checksum_validation="when_required",
                                              s3={"addressing_style": "path"}, retries={"max_attempts": 2}))

    def make_bucket(self, lock: bool = True) -> str:
        name = f"genarc-{secrets.token_hex(4)}"
        if lock:
            self.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
        else:
            self.client().create_bucket(Bucket=name)
        return name

    def uid_of(self, keys: Keys) -> str:
        return self._uids[keys.access_key_id]

    def make_user(self, name: str, policy: dict | None = None, system: bool = False) -> Keys:
        """A radosgw user; with ``policy``, an IAM user policy that RGW enforces; ``system``: an RGW system user
        (what an operator's admin account is: it may act on every user's objects)."""
        import json

        access, secret = secrets.token_hex(10).upper(), secrets.token_hex(20)
        uid = f"{name}-{secrets.token_hex(3)}"
        admin = ["radosgw-admin", "--conf", str(self.workdir / "ceph.conf")]
        subprocess.run([*admin, "user", "create", f"--uid={uid}", f"--display-name={uid}", f"--access-key={access}",
                        f"--secret-key={secret}", *(["--system"] if system else [])], check=True, capture_output=True)
        keys = Keys(access, secret)
        self._uids[access] = uid
        if policy is not None:
            iam = self.client(service="iam")
            iam.put_user_policy(UserName=uid, PolicyName=f"{uid}-policy", PolicyDocument=json.dumps(policy))
        return keys
