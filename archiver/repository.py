"""A repository: a store plus the secret that opens it.

``genarc init`` writes one object, ``genarc-repository.json``, once. It holds the
repository id, the KDF salt and a key check, so a wrong password is reported as
such before anything else is read. The password itself is never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

from .clock import format_time
from .config import Config, valid_job_name
from .errors import (ConfigError, IntegrityError, ObjectExists, ObjectNotFound, PermissionDenied, RepositoryExists,
                     RepositoryNotFound, WrongPasswordError)
from .layout import REPOSITORY_CONFIG_KEY, manifests_prefix, parse_manifest_key
from .store import Capabilities, CountingStore, ObjectInfo, RequestCounts, Store, inspector_for, open_store, sha256_of

FORMAT = 1
_KDF = {"name": "scrypt", "n": 2**14, "r": 8, "p": 1}


@dataclass(frozen=True)
class Keys:
    """Keys derived from the repository password and the repository's salt."""

    password: str | None
    manifest_hmac: bytes

    @classmethod
    def derive(cls, password: str | None, salt: bytes, kdf: dict) -> "Keys":
        if kdf.get("name") != "scrypt":
            raise IntegrityError(f"The repository uses an unknown key derivation {kdf.get('name')!r}; upgrade genarc.")
        secret = (password or "").encode("utf-8")
        master = hashlib.scrypt(secret, salt=salt, n=kdf["n"], r=kdf["r"], p=kdf["p"], dklen=32,
                                maxmem=64 * 1024 * 1024)
        return cls(password, hmac.new(master, b"genarc manifest hmac v1", hashlib.sha256).digest())

    @property
    def content_seed(self) -> int:
        """The seed of the keyed content hash (archiver.pack.keyed_xxh3): 64 bits only the repository's keys give."""
        return int.from_bytes(hmac.new(self.manifest_hmac, b"genarc content seed v1", hashlib.sha256).digest()[:8],
                              "little")

    def key_check(self) -> str:
        return hmac.new(self.manifest_hmac, b"genarc key check", hashlib.sha256).hexdigest()


_EPOCH = datetime.min.replace(tzinfo=timezone.utc)
_MANY_FOLDERS = 100  # jobs and their long-term tiers are a few; more top-level folders than this are junk


def listing(store: Store, prefix: str) -> dict[str, list[ObjectInfo]]:
    """Every version (and marker) under ``prefix`` by key, oldest first; one per key on a store without versions."""
    infos = store.list_versions(prefix) if store.capabilities.versioning else store.list(prefix)
    by_key: dict[str, list[ObjectInfo]] = {}
    for info in infos:
        if info.key.startswith(prefix):
            by_key.setdefault(info.key, []).append(info)
    for versions in by_key.values():
        versions.sort(key=lambda i: (i.modified or _EPOCH, i.version_id or ""))
    return dict(sorted(by_key.items()))


def first_version(infos: list[ObjectInfo]) -> ObjectInfo | None:
    """The version genarc wrote: the oldest real one (later versions and markers came from someone else)."""
    real = [i for i in infos if not i.is_delete_marker and not i.hidden]
    return real[0] if real else None


def original_versions(store: Store, prefix: str) -> dict[str, str | None]:
    """Every key under ``prefix`` with the version genarc wrote (the oldest real version), if versioned."""
    found = {key: first_version(infos) for key, infos in listing(store, prefix).items()}
    return {key: info.version_id for key, info in found.items() if info is not None}


def effective_lock_mode(lock_mode: str, caps: Capabilities, url: str) -> str:
    """The lock mode runs will write. A lock asked of a bucket that cannot hold it is an error, never a shrug."""
    if lock_mode == "none" or not caps.lockable:
        return "none"
    if not caps.object_lock and caps.lock_unreadable:
        raise PermissionDenied(
            f"The key may not read whether {url} has Object Lock ({caps.lock_unreadable} was refused), so "
            f"lock_mode = \"{lock_mode}\" cannot be confirmed; grant it to the key (`genarc policy` prints the rights a "
            "backup key needs) and rerun.")
    if not caps.object_lock:
        raise ConfigError(
            f"{url} has no Object Lock (or File Lock), so lock_mode = \"{lock_mode}\" cannot be honoured; enable it "
            "on the bucket, or set lock_mode = \"none\" and rely on a key without delete rights plus the lifecycle rule."
        )
    return lock_mode


class Repository:
    def __init__(self, store: CountingStore, settings: dict, keys: Keys, url: str, workers: int = 0) -> None:
        self.store, self.settings, self.keys, self.url = store, settings, keys, url
        self.workers = workers or os.cpu_count() or 1  # the job file's processes; a reader takes no more cores

    @property
    def id(self) -> str:
        return str(self.settings["id"])

    @property
    def encrypted(self) -> bool:
        return self.settings.get("encryption") == "aes256"

    @staticmethod
    def init(config: Config, now: datetime, counts: RequestCounts | None = None, store: Store | None = None) -> "Repository":
        store = store or open_store(config.repository_url, options=config.store_options, counts=counts)
        effective_lock_mode(config.lock_mode, store.capabilities, config.repository_url)
        password = config.password.read()
        salt = secrets.token_bytes(16)
        keys = Keys.derive(password, salt, _KDF)
        settings = {
            "format": FORMAT, "id": secrets.token_hex(16), "created": format_time(now),
            "encryption": config.encryption, "kdf": {**_KDF, "salt": salt.hex()}, "key_check": keys.key_check(),
        }
        # Some S3 servers accept If-None-Match and overwrite anyway; learn it once, remember it here.
        honoured = inspector_for(store).probe_conditional_put()
        if honoured is not None:
            settings["conditional_put"] = honoured
        body = (json.dumps(settings, indent=2, sort_keys=True) + "\n").encode()
        try:
            store.put(REPOSITORY_CONFIG_KEY, body, sha256=sha256_of(body))
        except ObjectExists:
            raise RepositoryExists(f"{config.repository_url} is already a genarc repository; nothing was changed.") from None
        return Repository(store, settings, keys, config.repository_url,  # type: ignore[arg-type]
                          config.volumes.effective_workers)

    @staticmethod
    def open(config: Config, counts: RequestCounts | None = None, store: Store | None = None) -> "Repository":
        store = store or open_store(config.repository_url, options=config.store_options, counts=counts)
        try:
            pinned = original_versions(store, REPOSITORY_CONFIG_KEY).get(REPOSITORY_CONFIG_KEY)
            raw = store.get(REPOSITORY_CONFIG_KEY, version_id=pinned)
        except ObjectNotFound:
            raise RepositoryNotFound(
                f"No genarc repository at {config.repository_url}; check the URL (and --endpoint-url), the bucket "
                "and the prefix." if config.from_flags else
                f"No genarc repository at {config.repository_url}; run `genarc init` first."
            ) from None
        try:
            settings = json.loads(raw)
            kdf = dict(settings["kdf"])
            salt = bytes.fromhex(kdf.pop("salt"))
        except (ValueError, KeyError, TypeError):
            raise IntegrityError(f"The repository config {REPOSITORY_CONFIG_KEY} is unreadable; it may be damaged.") from None
        if settings.get("format") != FORMAT:
            raise IntegrityError(f"The repository has format {settings.get('format')}; this genarc reads format {FORMAT}.")
        if settings.get("encryption") != config.encryption and config.from_flags:
            raise ConfigError(
                "The repository is encrypted: give its password with --password-file FILE or --password-command CMD."
                if config.encryption == "none" else
                "The repository is not encrypted (encryption = \"none\"): leave out the password option.")
        if settings.get("encryption") != config.encryption:
            raise ConfigError(
                f"{config.path}: repository.encryption is {config.encryption!r} but the repository was created "
                f"with {settings.get('encryption')!r}."
            )
        if settings.get("conditional_put") is False:
            inspector_for(store).trust_conditional_put(False)
        keys = Keys.derive(config.password.read(), salt, kdf)
        if not hmac.compare_digest(keys.key_check(), str(settings.get("key_check"))):
            raise WrongPasswordError(
                f"The password does not open the repository at {config.repository_url}; check "
                + ("the password file or command given." if config.from_flags else "the job's password source.")
            )
        return Repository(store, settings, keys, config.repository_url,  # type: ignore[arg-type]
                          config.volumes.effective_workers)

    def jobs(self) -> list[str]:
        """Every job with a current manifest, by name. The top-level folders come from one delimiter listing and each
        is confirmed by its manifests, so the volumes (a million objects in a big repository) are never listed. A
        folder whose name no job can have is someone else's (`genarc audit` names what it holds); past
        ``_MANY_FOLDERS`` of them, one listing of every key costs fewer requests than one listing per folder."""
        names = [name for name in self.store.folders("") if valid_job_name(name)]
        if len(names) > _MANY_FOLDERS:
            found = {parsed.job for info in self.store.list("") if (parsed := parse_manifest_key(info.key))}
            return sorted(name for name in found if valid_job_name(name))
        return sorted(name for name in names
                      if any(parse_manifest_key(info.key) for info in self.store.list(manifests_prefix(name))))
