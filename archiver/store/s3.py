"""S3 and S3-compatible stores (``s3://bucket/prefix``), with Object Lock.

Every put carries the generation's lock (mode and retain-until) and a SHA-256
checksum, and uses ``If-None-Match: *`` so that an existing key is never
replaced. The version id each write returns is recorded and reads are pinned to
it. Some servers silently drop lock headers (on copies and multipart uploads in
particular), so genarc checks the lock with a HEAD where that can happen and sets
a missing one with PutObjectRetention; a lock it cannot set is an error, never a
shrug. This module never deletes, hides or shortens anything: there is no code
path here that could.
"""

from __future__ import annotations

import base64
import concurrent.futures
import dataclasses
import hashlib
import io
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import (GenarcError, IntegrityError, LocalIOError, ObjectExists, ObjectNotFound, PermissionDenied, RepositoryNotFound,
                      StoreError, TransientStoreError)
from ..layout import PROBE_PREFIX
from .base import MAX_SINGLE_PUT, Capabilities, ObjectInfo, PutSource, Retention, size_of

MULTIPART_THRESHOLD = 256 * 1024**2
PART_SIZE = 64 * 1024**2
PARTS_IN_FLIGHT = 4  # parts of one multipart upload sent at once (each streams from the file: no part in memory)
MAX_COPY_OBJECT = 5 * 1024**3
_TRANSIENT_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
                    "InternalError", "ServiceUnavailable", "OperationAborted", "503", "500", "502", "504"}
_DENIED_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled",
                 "AccountProblem", "ExpiredToken", "InvalidToken", "403"}
_MISSING_CODES = {"NoSuchKey", "NoSuchVersion", "404", "NotFound"}


def b64_of_hex(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def hex_of_b64(value: str | None) -> str | None:
    if not value or "-" in value:  # a multipart "checksum of checksums" is not the object's SHA-256
        return None
    try:
        return base64.b64decode(value).hex()
    except ValueError:
        return None


def translate(exc: Exception, what: str) -> GenarcError:
    """Map a botocore exception onto genarc's error tree. Only the retry layer decides to retry."""
    from botocore.exceptions import (ClientError, ConnectionClosedError, EndpointConnectionError, NoCredentialsError,
                                     ReadTimeoutError, ConnectTimeoutError)

    if isinstance(exc, NoCredentialsError):
        return PermissionDenied(f"No S3 credentials found for {what}; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile.")
    if isinstance(exc, (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError, ConnectTimeoutError)):
        return TransientStoreError(f"{what}: the S3 endpoint did not answer ({type(exc).__name__})")
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        message = error.get("Message") or code
        if code == "PreconditionFailed" or status == "412":
            return ObjectExists(f"{what}: the key already exists; genarc never overwrites a key.")
        if code in _DENIED_CODES or status == "403":
            return PermissionDenied(f"{what}: the S3 server refused it ({code}: {message}); check the key's policy.")
        if code == "NoSuchBucket":
            return RepositoryNotFound(f"{what}: the bucket does not exist; create it with Object Lock enabled.")
        if code in _MISSING_CODES or status == "404":
            return ObjectNotFound(f"{what}: the object is missing from the bucket.")
        if code in _TRANSIENT_CODES or status.startswith("5"):
            return TransientStoreError(f"{what}: the S3 server is struggling ({code or status})")
        return StoreError(f"{what}: the S3 server refused it ({code}: {message}).")
    if isinstance(exc, OSError):
        return TransientStoreError(f"{what}: network error ({exc})")
    return StoreError(f"{what}: unexpected S3 error ({type(exc).__name__}: {exc}).")


def _range_sha256(source: PutSource, start: int, length: int) -> bytes:
    if isinstance(source, bytes):
        return hashlib.sha256(memoryview(source)[start:start + length]).digest()
    digest = hashlib.sha256()
    with open(source, "rb") as stream:
        stream.seek(start)
        while length > 0:
            chunk = stream.read(min(length, 1024**2))
            if not chunk:
                raise LocalIOError(f"{source} became shorter while it was uploaded; rerun.")
            digest.update(chunk)
            length -= len(chunk)
    return digest.digest()


def _range_body(source: PutSource, start: int, length: int) -> Any:
    """A part's body: its byte range, read from the file as it is sent."""
    if isinstance(source, bytes):
        return io.BytesIO(source[start:start + length])
    from s3transfer.utils import ReadFileChunk

    return ReadFileChunk.from_filename(str(source), start, length, enable_callbacks=False)


def make_client(endpoint_url: str | None, region: str | None, profile: str | None) -> Any:
    import boto3
    from botocore.config import Config as BotoConfig

    session = boto3.session.Session(profile_name=profile, region_name=region or None)
    config = BotoConfig(
        retries={"max_attempts": 1, "mode": "standard"},  # genarc's retry layer decides what is transient
        request_checksum_calculation="when_required",   # genarc sends its own SHA-256 where it matters
        response_checksum_validation="when_required",
        s3={"addressing_style": "path"} if endpoint_url else None,
        connect_timeout=20, read_timeout=120,
        max_pool_connections=32)  # upload threads, each with its parts in flight, share one client
    return session.client("s3", endpoint_url=endpoint_url or None, config=config)


class S3Store:
    def __init__(self, client_factory: Callable[[], Any], bucket: str, prefix: str = "", *,
                 multipart_threshold: int = MULTIPART_THRESHOLD, part_size: int = PART_SIZE,
                 conditional: bool = True, counts: Any = None, retention_updates: bool = True) -> None:
        # A factory, not a client: a process forked for parallel restore must not share the
        # parent's pooled connections, so each process makes its own client on first use.
        self._client_factory, self.bucket = client_factory, bucket
        self._client: Any = None
        self._client_pid = 0
        self._client_lock = threading.Lock()
        self._counts = counts  # a RequestCounts: every HTTP request this store sends, HEADs included
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.multipart_threshold, self.part_size = multipart_threshold, part_size
        # Without retention updates, a lock a server drops cannot be set afterwards: every object goes up in one
        # PUT (servers that drop lock headers do so on multipart uploads), and a missing lock is an error.
        self.retention_updates = retention_updates
        if not retention_updates:
            self.multipart_threshold = MAX_SINGLE_PUT
        self._caps: Capabilities | None = None
        # If-None-Match: * on every create, unless this server is known to ignore it (probed at init):
        # then each create checks with a HEAD first.
        self._conditional = conditional
        self._simple_put_lock_checked = False
        self._missing_is_denied = False  # a HEAD of a missing key answers 403 (ListBucket limited to the prefix)
        self._simple_put_drops_lock = False
        self._simple_put_lock_lock = threading.Lock()
        self._existence_learned, self._existence_lock = False, threading.Lock()

    # -- helpers ---------------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        with self._client_lock:  # upload threads share one client (boto3's are thread-safe); make it once
            if self._client is None or self._client_pid != os.getpid():
                client = self._client_factory()
                if self._counts is not None:
                    client.meta.events.register("before-send.s3", self._count_request)
                self._client, self._client_pid = client, os.getpid()
            return self._client

    def _count_request(self, **kwargs: Any) -> None:
        self._counts.add("http_requests")

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _call(self, what: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except Exception as exc:  # translated at the boundary
            raise translate(exc, what) from exc

    def _read_call(self, what: str, key: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        """A HEAD or GET of one object. Where ListBucket is limited to a prefix (AWS and Ceph alike), the server
        answers 403, not 404, for a key or version that is gone (a lifecycle rule may remove one between a
        listing and a read); a listing of that very key's versions tells missing from refused."""
        try:
            return fn(**kwargs)
        except Exception as exc:
            err = translate(exc, what)
            if isinstance(err, PermissionDenied) and self._gone(kwargs["Key"], kwargs.get("VersionId")):
                raise ObjectNotFound(f"{what}: the object is missing from the bucket.") from exc
            raise err from exc

    def _gone(self, full: str, version_id: str | None) -> bool:
        """Whether a listing of ``full``'s versions shows it (or that version) absent; False when it cannot tell."""
        try:
            page = self.client.list_object_versions(Bucket=self.bucket, Prefix=full, MaxKeys=1000)
        except Exception:
            return False
        if page.get("IsTruncated"):
            return False
        versions = [v for v in page.get("Versions", []) if v["Key"] == full]
        if version_id:
            return not any(v.get("VersionId") == version_id for v in versions)
        return not any(v.get("IsLatest") for v in versions)

    @property
    def capabilities(self) -> Capabilities:
        if self._caps is None:
            self._caps = self._probe()
        return self._caps

    def _probe(self) -> Capabilities:
        versioning, lock, unreadable = False, False, ""
        try:
            versioning = self.client.get_bucket_versioning(Bucket=self.bucket).get("Status") == "Enabled"
        except Exception as exc:
            err = translate(exc, f"Reading the versioning of bucket {self.bucket}")
            if not isinstance(err, PermissionDenied):
                raise err from exc
        try:
            conf = self.client.get_object_lock_configuration(Bucket=self.bucket)["ObjectLockConfiguration"]
            lock = conf.get("ObjectLockEnabled") == "Enabled"
        except Exception as exc:
            err = translate(exc, f"Reading the Object Lock configuration of bucket {self.bucket}")
            if not isinstance(err, (PermissionDenied, ObjectNotFound, StoreError)) or isinstance(err, TransientStoreError):
                raise err from exc
            unreadable = "s3:GetBucketObjectLockConfiguration" if isinstance(err, PermissionDenied) else ""
        return Capabilities(object_lock=lock, versioning=versioning, server_side_copy=True, lock_unreadable=unreadable,
                            conditional_put=self._conditional, lockable=True,
                            ransomware_safe=lock and versioning,
                            description=f"s3://{self.bucket}/{self.prefix} (versioning {'on' if versioning else 'off'}, "
                                        f"Object Lock {'on' if lock else 'unknown' if unreadable else 'off'})")

    def inspector(self) -> Any:
        from .s3_inspect import S3Inspector

        return S3Inspector(self)

    def use_conditional(self, honoured: bool) -> None:
        self._conditional = honoured
        if self._caps is not None:  # the bucket's answers stand; only what they say of conditional writes changes
            self._caps = dataclasses.replace(self._caps, conditional_put=honoured)

    def probe_conditional_put(self) -> bool:
        """Does this server honour If-None-Match: * ? Some accept the header and overwrite anyway.

        Writes one tiny probe object twice under ``genarc-probes/``; called once, by ``genarc init``.
        """
        import secrets as _secrets

        key = f"{PROBE_PREFIX}conditional-{_secrets.token_hex(8)}"
        body = b"genarc conditional-create probe\n"
        digest = hashlib.sha256(body).hexdigest()
        args = {"Bucket": self.bucket, "Key": self._key(key), "ChecksumAlgorithm": "SHA256",
                "ChecksumSHA256": b64_of_hex(digest), "IfNoneMatch": "*"}
        try:
            self.client.put_object(Body=body, **args)
        except Exception as exc:
            if self._is_unsupported_conditional(exc):
                return False
            raise translate(exc, "Probing conditional creates") from exc
        try:
            self.client.put_object(Body=body, **args)
        except Exception as exc:
            if isinstance(translate(exc, "probe"), ObjectExists):
                return True
            if self._is_unsupported_conditional(exc):
                return False
            raise translate(exc, "Probing conditional creates") from exc
        return False

    @staticmethod
    def _lock_args(retention: Retention | None) -> dict[str, Any]:
        if retention is None:
            return {}
        return {"ObjectLockMode": retention.mode.upper(), "ObjectLockRetainUntilDate": retention.until}

    # -- writes: new keys only ---------------------------------------------------------------------
    def put(self, key: str, source: PutSource, *, sha256: str, retention: Retention | None = None) -> ObjectInfo:
        full, size = self._key(key), size_of(source)
        if size > self.multipart_threshold:
            version_id = self._multipart(full, key, source, sha256, retention)
            if retention is not None:
                self._ensure_retention(full, key, version_id, retention)
        else:
            version_id = self._simple_put(full, key, source, sha256, retention)
            if retention is not None:
                self._check_simple_put_lock(full, key, version_id, retention)
        return ObjectInfo(key=key, size=size, sha256=sha256, version_id=version_id, retention=retention)

    def _check_simple_put_lock(self, full: str, key: str, version_id: str | None, retention: Retention) -> None:
        """The first single PUT's lock is checked; later ones only on a server that dropped it. Upload threads
        wait for that first verdict rather than each checking (one request each, and a request budget to keep)."""
        if not self._simple_put_lock_checked:
            with self._simple_put_lock_lock:
                if not self._simple_put_lock_checked:
                    self._simple_put_drops_lock = self._ensure_retention(full, key, version_id, retention)
                    self._simple_put_lock_checked = True
                    return
        if self._simple_put_drops_lock:
            self._ensure_retention(full, key, version_id, retention)

    def _simple_put(self, full: str, key: str, source: PutSource, sha256: str, retention: Retention | None) -> str | None:
        args = {"Bucket": self.bucket, "Key": full, "ChecksumAlgorithm": "SHA256", "ChecksumSHA256": b64_of_hex(sha256),
                "ContentLength": size_of(source), **self._lock_args(retention)}
        if self._conditional:
            args["IfNoneMatch"] = "*"
        elif not self.capabilities.versioning:
            self._refuse_existing(full, key)
        # else: a server that ignores If-None-Match on a versioned bucket. Keys carry a random
        # 64-bit run id, and even a colliding PUT would only add a version: the one a manifest
        # recorded stays, and reads are pinned to it. A HEAD per object would buy nothing.
        body: Any = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
        try:
            args["Body"] = body
            try:
                response = self.client.put_object(**args)
            except Exception as exc:
                if self._conditional and self._is_unsupported_conditional(exc):
                    # The server does not know If-None-Match: check existence first, from now on.
                    self.use_conditional(False)
                    body.seek(0)
                    self._refuse_existing(full, key)
                    args.pop("IfNoneMatch")
                    response = self._call(f"Uploading {key}", self.client.put_object, **args)
                else:
                    raise translate(exc, f"Uploading {key}") from exc
        finally:
            body.close()
        returned = hex_of_b64(response.get("ChecksumSHA256"))
        if returned and returned != sha256:
            raise IntegrityError(f"Uploading {key}: the server stored a different SHA-256 than genarc sent.")
        return response.get("VersionId")

    @staticmethod
    def _is_unsupported_conditional(exc: Exception) -> bool:
        from botocore.exceptions import ClientError

        if not isinstance(exc, ClientError):
            return False
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return code == "NotImplemented" or status == 501

    def _refuse_existing(self, full: str, key: str) -> None:
        if not self._existence_learned:  # the first check learns how this key hears of a missing object; threads wait
            with self._existence_lock:
                if not self._existence_learned:
                    try:
                        return self._check_absent(full, key)
                    finally:
                        self._existence_learned = True
        self._check_absent(full, key)

    def _check_absent(self, full: str, key: str) -> None:
        if self._missing_is_denied:  # learned below: one listing answers where a HEAD would only hear 403
            if self._listed(full, key):
                raise ObjectExists(f"Uploading {key}: the key already exists; genarc never overwrites a key.")
            return
        try:
            self.client.head_object(Bucket=self.bucket, Key=full)
        except Exception as exc:
            err = translate(exc, f"Checking {key}")
            if isinstance(err, ObjectNotFound):
                return
            # A key whose ListBucket is limited to its prefix hears 403, not 404, for a missing key (AWS and
            # Ceph alike); a listing of the key itself, inside the prefix, says whether it exists.
            exists = self._listed(full, key) if isinstance(err, PermissionDenied) else None
            if exists is None:
                raise err from exc
            if not exists:
                self._missing_is_denied = True
                return
        raise ObjectExists(f"Uploading {key}: the key already exists; genarc never overwrites a key.")

    def _listed(self, full: str, key: str) -> bool | None:
        """Whether ``full`` exists, from a listing of that very name; None when listing is refused too."""
        try:
            page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=full, MaxKeys=1)
        except Exception as exc:
            err = translate(exc, f"Listing {key}")
            if isinstance(err, PermissionDenied):
                return None
            raise err from exc
        return any(item["Key"] == full for item in page.get("Contents", []))

    def _multipart(self, full: str, key: str, source: PutSource, sha256: str, retention: Retention | None) -> str | None:
        # Not boto3's transfer manager (upload_file): it cannot send If-None-Match with the completion and
        # returns no version id. Its way is kept: up to PARTS_IN_FLIGHT parts at once, in threads, each
        # read from the file by its byte range (s3transfer's ReadFileChunk), so memory stays a read buffer
        # per part whatever the part size.
        self._refuse_existing(full, key)
        created = self._call(f"Starting the upload of {key}", self.client.create_multipart_upload, Bucket=self.bucket,
                             Key=full, ChecksumAlgorithm="SHA256", **self._lock_args(retention))
        upload_id, size = created["UploadId"], size_of(source)
        # An abandoned multipart upload is not deleted by genarc: the lifecycle rule aborts it after a day.

        def send(number: int) -> dict[str, Any]:
            start = (number - 1) * self.part_size
            length = min(self.part_size, size - start)
            digest = base64.b64encode(_range_sha256(source, start, length)).decode()
            body = _range_body(source, start, length)
            try:
                part = self._call(f"Uploading part {number} of {key}", self.client.upload_part, Bucket=self.bucket,
                                  Key=full, UploadId=upload_id, PartNumber=number, Body=body, ContentLength=length,
                                  ChecksumAlgorithm="SHA256", ChecksumSHA256=digest)
            finally:
                body.close()
            return {"PartNumber": number, "ETag": part["ETag"], "ChecksumSHA256": digest}

        count = max(1, -(-size // self.part_size))
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(PARTS_IN_FLIGHT, count),
                                                   thread_name_prefix="genarc-part") as pool:
            futures = [pool.submit(send, number) for number in range(1, count + 1)]
            concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
            for future in futures:
                future.cancel()  # after a failed part, the parts not yet started are not sent
            parts = [future.result() for future in futures]  # raises the first part's error
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": full, "UploadId": upload_id,
                                "MultipartUpload": {"Parts": parts}}
        if self._conditional:
            args["IfNoneMatch"] = "*"
        done = self._call(f"Completing the upload of {key}", self.client.complete_multipart_upload, **args)
        return done.get("VersionId")

    def _ensure_retention(self, full: str, key: str, version_id: str | None, retention: Retention,
                          head: dict | None = None) -> bool:
        """Make sure the version carries at least ``retention``. Returns True when the server had dropped it."""
        if head is None:
            version = {"VersionId": version_id} if version_id else {}
            head = self._call(f"Checking the lock of {key}", self.client.head_object, Bucket=self.bucket, Key=full,
                              **version)
        if _covers(head, retention):
            return False
        self._raise_retention(full, key, version_id, retention, head)
        return True

    def _raise_retention(self, full: str, key: str, version_id: str | None, retention: Retention, head: dict) -> dict:
        """Set the lock a version was stored without (``head`` shows what it has); returns its HEAD, which must
        show the lock now."""
        if not self.retention_updates:
            raise IntegrityError(f"{key} was stored without its lock, and retention_updates = false forbids setting "
                                 "it afterwards; this server drops lock headers on this kind of upload.")
        request = retention.raised_to(_lock_of(head))  # a retention request never lowers a date or a mode
        self._call(f"Setting the lock of {key}", self.client.put_object_retention, Bucket=self.bucket, Key=full,
                   Retention={"Mode": request.mode.upper(), "RetainUntilDate": request.until},
                   ChecksumAlgorithm="SHA256", **({"VersionId": version_id} if version_id else {}))
        head = self._head(full, key, version_id)
        if not _covers(head, retention):
            raise IntegrityError(f"{key} is not locked until {retention.until:%Y-%m-%dT%H:%M:%SZ} even after setting its "
                                 "retention; the bucket does not enforce Object Lock.")
        return head

    def copy(self, src_key: str, dst_key: str, *, src_version_id: str | None = None, sha256: str,
             retention: Retention | None = None, size: int | None = None) -> ObjectInfo:
        full = self._key(dst_key)
        self._refuse_existing(full, dst_key)  # copies are rare (a rollover's live volumes): a HEAD keeps them write-once
        source = {"Bucket": self.bucket, "Key": self._key(src_key), **({"VersionId": src_version_id} if src_version_id else {})}
        # A recorded size within the limit spares a HEAD: CopyObject copies it all and the copy's size is checked after.
        size = size if size is not None and size <= MAX_COPY_OBJECT else self.stat(src_key, version_id=src_version_id).size
        if size > MAX_COPY_OBJECT:
            version_id = self._multipart_copy(source, full, dst_key, size, retention)
        else:
            done = self._call(f"Copying {src_key} to {dst_key}", self.client.copy_object, Bucket=self.bucket, Key=full,
                              CopySource=source, ChecksumAlgorithm="SHA256", MetadataDirective="COPY",
                              **self._lock_args(retention))
            version_id = done.get("VersionId")
        # One HEAD answers three questions: which version was made, does it carry the lock, and its SHA-256.
        head = self._head(full, dst_key, version_id)
        if retention is not None and not _covers(head, retention):  # a server that drops lock headers on a copy
            head = self._raise_retention(full, dst_key, head.get("VersionId"), retention, head)
        info = self._info(dst_key, head)
        if info.sha256 and info.sha256 != sha256:
            raise IntegrityError(f"The copy {dst_key} does not have the SHA-256 recorded for {src_key}.")
        return info

    def ensure_lock(self, key: str, *, version_id: str | None, retention: Retention) -> ObjectInfo:
        full = self._key(key)
        head = self._head(full, key, version_id)
        if not _covers(head, retention):
            head = self._raise_retention(full, key, head.get("VersionId"), retention, head)
        return self._info(key, head)

    def _multipart_copy(self, source: dict, full: str, key: str, size: int, retention: Retention | None) -> str | None:
        created = self._call(f"Starting the copy to {key}", self.client.create_multipart_upload, Bucket=self.bucket,
                             Key=full, ChecksumAlgorithm="SHA256", **self._lock_args(retention))
        upload_id, parts, offset, number, part_size = created["UploadId"], [], 0, 1, max(self.part_size, -(-size // 9000))
        while offset < size:
            end = min(size, offset + part_size) - 1
            part = self._call(f"Copying part {number} to {key}", self.client.upload_part_copy, Bucket=self.bucket,
                              Key=full, UploadId=upload_id, PartNumber=number, CopySource=source,
                              CopySourceRange=f"bytes={offset}-{end}")
            result = part["CopyPartResult"]
            parts.append({"PartNumber": number, "ETag": result["ETag"],
                          **({"ChecksumSHA256": result["ChecksumSHA256"]} if result.get("ChecksumSHA256") else {})})
            offset, number = end + 1, number + 1
        done = self._call(f"Completing the copy to {key}", self.client.complete_multipart_upload, Bucket=self.bucket,
                          Key=full, UploadId=upload_id, MultipartUpload={"Parts": parts})
        return done.get("VersionId")

    # -- reads -------------------------------------------------------------------------------------
    def get(self, key: str, *, version_id: str | None = None, byte_range: tuple[int, int] | None = None) -> bytes:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if version_id:
            args["VersionId"] = version_id
        if byte_range is not None:
            if byte_range[1] <= byte_range[0]:
                return b""
            args["Range"] = f"bytes={byte_range[0]}-{byte_range[1] - 1}"
        response = self._read_call(f"Reading {key}", key, self.client.get_object, **args)
        try:
            return response["Body"].read()
        except Exception as exc:
            raise translate(exc, f"Reading {key}") from exc

    def download(self, key: str, dest: Path, *, version_id: str | None = None) -> None:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if version_id:
            args["VersionId"] = version_id
        response = self._read_call(f"Reading {key}", key, self.client.get_object, **args)
        expected = response.get("ContentLength")
        written = 0
        try:
            out = open(dest, "wb")
        except OSError as exc:
            raise LocalIOError(f"Cannot write {dest}: {exc.strerror}; free space or set TMPDIR elsewhere.") from exc
        with out:
            while True:
                try:
                    chunk = response["Body"].read(1 << 20)
                except Exception as exc:
                    raise translate(exc, f"Reading {key}") from exc
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise LocalIOError(f"Cannot write {dest}: {exc.strerror}; free space or set TMPDIR elsewhere.") from exc
                written += len(chunk)
        if expected is not None and written != expected:
            raise TransientStoreError(f"Reading {key}: the download stopped after {written} of {expected} bytes")

    def _head(self, full: str, key: str, version_id: str | None) -> dict:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": full, "ChecksumMode": "ENABLED"}
        if version_id:
            args["VersionId"] = version_id
        return self._read_call(f"Checking {key}", key, self.client.head_object, **args)

    @staticmethod
    def _info(key: str, head: dict) -> ObjectInfo:
        retention = _lock_of(head)
        # A multipart object's checksum is a checksum of part checksums, not the object's SHA-256.
        composite = head.get("ChecksumType") == "COMPOSITE" or "-" in str(head.get("ETag", ""))
        sha256 = None if composite else hex_of_b64(head.get("ChecksumSHA256"))
        return ObjectInfo(key=key, size=int(head["ContentLength"]), sha256=sha256,
                          version_id=head.get("VersionId"), retention=retention,
                          legal_hold=head.get("ObjectLockLegalHoldStatus") == "ON",
                          modified=_utc(head["LastModified"]) if head.get("LastModified") else None)

    def stat(self, key: str, *, version_id: str | None = None) -> ObjectInfo:
        return self._info(key, self._head(self._key(key), key, version_id))

    def _pages(self, operation: str, what: str, prefix: str, **extra: Any) -> Iterator[dict]:
        try:
            yield from self.client.get_paginator(operation).paginate(Bucket=self.bucket, Prefix=self._key(prefix), **extra)
        except GenarcError:
            raise
        except Exception as exc:
            raise translate(exc, f"{what} {prefix or 'the repository'}") from exc

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        for page in self._pages("list_objects_v2", "Listing", prefix):
            for item in page.get("Contents", []):
                yield ObjectInfo(key=item["Key"][len(self.prefix):], size=int(item["Size"]),
                                 modified=_utc(item["LastModified"]))

    def list_versions(self, prefix: str) -> Iterator[ObjectInfo]:
        for page in self._pages("list_object_versions", "Listing versions of", prefix):
            for item in page.get("Versions", []):
                yield ObjectInfo(key=item["Key"][len(self.prefix):], size=int(item["Size"]),
                                 version_id=item.get("VersionId"), is_latest=bool(item.get("IsLatest")),
                                 modified=_utc(item["LastModified"]))
            for item in page.get("DeleteMarkers", []):
                yield ObjectInfo(key=item["Key"][len(self.prefix):], size=0, version_id=item.get("VersionId"),
                                 is_latest=bool(item.get("IsLatest")), is_delete_marker=True,
                                 modified=_utc(item["LastModified"]))

    def folders(self, prefix: str) -> Iterator[str]:
        skip = len(self._key(prefix))  # S3 orders "a-b/" before "a/": sorted here by the name alone
        return iter(sorted(item["Prefix"][skip:-1] for page in self._pages("list_objects_v2", "Listing", prefix,
                           Delimiter="/") for item in page.get("CommonPrefixes", [])))


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _lock_of(head: dict) -> Retention | None:
    if head.get("ObjectLockMode") and head.get("ObjectLockRetainUntilDate"):
        return Retention(head["ObjectLockMode"].lower(), _utc(head["ObjectLockRetainUntilDate"]))
    return None


def _covers(head: dict, retention: Retention) -> bool:
    lock = _lock_of(head)
    return lock is not None and lock.covers(retention)
