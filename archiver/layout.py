"""Object key layout (pure). See docs/design.md, "Key layout".

    genarc-repository.json                                         repository config, written once by init
    <job>/manifests/g000001-20270104T020000Z/p000001-20270104T020000Z-<runid>.m7z
    <job>/volumes/g000001-20270104T020000Z/p000001-<runid>/v000001.7z

The generation comes first below the job, so sorting keys shows the history,
and every key holds the random run id, so a retry after a crash never collides.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .clock import compact_time

REPOSITORY_CONFIG_KEY = "genarc-repository.json"
PROBE_PREFIX = "genarc-probes/"  # what genarc init and doctor write to learn what a server enforces: a few bytes
_MANIFEST = re.compile(
    r"^(?P<job>[^/]+)/manifests/g(?P<gseq>\d{6})-(?P<gstart>\d{8}T\d{6}Z)/"
    r"p(?P<pseq>\d{6})-(?P<ptime>\d{8}T\d{6}Z)-(?P<run>[0-9a-f]{16})\.m7z$"
)


_VOLUME = re.compile(r"^p\d{6}-[0-9a-f]{16}/v\d{6}\.7z$")


def is_volume_of(key: str, name: "ManifestName") -> bool:
    """Whether ``key`` is a volume key of ``name``'s own generation (invariant 3), in genarc's layout."""
    return is_generation_volume(key, name.job, name.gseq, name.gstart)


def is_generation_volume(key: str, job: str, gseq: int, gstart: datetime) -> bool:
    """Whether ``key`` is a volume key of generation ``gseq`` (started at ``gstart``) of ``job``."""
    prefix = volume_generation_prefix(job, gseq, gstart)
    return key.startswith(prefix) and _VOLUME.match(key[len(prefix):]) is not None


def new_run_id() -> str:
    return secrets.token_hex(8)


def _parse_compact(text: str) -> datetime:
    return datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


def generation_dir(seq: int, start: datetime) -> str:
    return f"g{seq:06d}-{compact_time(start)}"


def manifests_prefix(job: str) -> str:
    return f"{job}/manifests/"


def volumes_prefix(job: str) -> str:
    return f"{job}/volumes/"


def manifest_key(job: str, gseq: int, gstart: datetime, pseq: int, ptime: datetime, run_id: str) -> str:
    return f"{manifests_prefix(job)}{generation_dir(gseq, gstart)}/p{pseq:06d}-{compact_time(ptime)}-{run_id}.m7z"


def volume_key(job: str, gseq: int, gstart: datetime, pseq: int, run_id: str, index: int) -> str:
    return f"{volumes_prefix(job)}{generation_dir(gseq, gstart)}/p{pseq:06d}-{run_id}/v{index:06d}.7z"


def volume_generation_prefix(job: str, gseq: int, gstart: datetime) -> str:
    return f"{volumes_prefix(job)}{generation_dir(gseq, gstart)}/"


@dataclass(frozen=True, order=True)
class ManifestName:
    """What a manifest key says by itself, before the manifest is read."""

    gseq: int
    pseq: int
    point_time: datetime
    gstart: datetime
    run_id: str
    job: str
    key: str
    version_id: str | None = field(default=None, compare=False)  # the version genarc wrote (the oldest)


def parse_manifest_key(key: str) -> ManifestName | None:
    match = _MANIFEST.match(key)
    if not match:
        return None
    return ManifestName(
        gseq=int(match["gseq"]), pseq=int(match["pseq"]), point_time=_parse_compact(match["ptime"]),
        gstart=_parse_compact(match["gstart"]), run_id=match["run"], job=match["job"], key=key,
    )
