"""Long-term restore points (GFS): the first point of each month, or year, kept longer.

A long-term point is made self-contained in its own prefix, ``<job>~monthly/`` or
``<job>~yearly/``: every volume the point needs is copied server-side (or, on a store
without copy, downloaded and uploaded again) under a new write-once key with the
tier's lock, and a full manifest listing the whole tree points at those copies only.
Each long-term point is generation N of that pseudo-job, with one point, so list, ls,
restore and verify treat it like any other point (``genarc restore home~monthly --at ...``),
and the prefix gets its own lock length and lifecycle rule.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from . import chain as chain_mod
from .catalog import TreeTable, connect, path_name
from .clock import format_time
from .config import Config
from .errors import IntegrityError
from .generation import RetentionPolicy, lock_until
from .layout import ManifestName, manifest_key, new_run_id, volume_key
from .manifest import ManifestWriter, build_header, entry_of
from .repository import Repository, effective_lock_mode
from .store import Retention, sha256_of

TIERS = {"monthly": 31, "yearly": 366}  # days per kept unit, rounded up


def tier_job(job: str, tier: str) -> str:
    return f"{job}~{tier}"


def tier_policy(base: RetentionPolicy, tier: str, count: int) -> RetentionPolicy:
    """A long-term point is its own one-point generation: F = 0, R = count units, the same margin."""
    return RetentionPolicy(keep_days=count * TIERS[tier], generation_days=0, margin_days=base.margin_days,
                           day_seconds=base.day_seconds)


def period(when: datetime, tier: str) -> str:
    return when.strftime("%Y-%m" if tier == "monthly" else "%Y")


def due_tiers(config: Config, repo: Repository, job: str, point: ManifestName) -> list[str]:
    """Tiers for which ``point`` is the first restore point of its month (or year)."""
    due = []
    for tier in config.longterm:
        existing = {period(n.point_time, tier) for n in repo.manifest_names(tier_job(job, tier))}
        if period(point.point_time, tier) not in existing:
            due.append(tier)
    return due


@dataclass
class Promotion:
    tier: str
    manifest_key: str
    objects: int
    copied_bytes: int
    uploaded_bytes: int
    locked_until: str


def promote(repo: Repository, config: Config, job: str, point: ManifestName, now: datetime,
            tiers: list[str] | None = None) -> list[Promotion]:
    """Make ``point`` a long-term point in every due tier (or the given ones)."""
    tiers = due_tiers(config, repo, job, point) if tiers is None else tiers
    if not tiers:
        return []
    done = []
    with tempfile.TemporaryDirectory(prefix="genarc-longterm-") as tmp:
        workdir = Path(tmp)
        conn = connect(workdir / "tree.sqlite")
        tree = TreeTable(conn, "tree")
        conn.execute("BEGIN")
        tip = chain_mod.replay(repo, repo.manifest_names(job), point, tree, workdir)
        conn.execute("COMMIT")
        for tier in tiers:
            done.append(_materialize(repo, config, job, tier, point, tip.header, tree, now, workdir))
        conn.close()
    return done


def _materialize(repo: Repository, config: Config, job: str, tier: str, point: ManifestName, source_header: dict,
                 tree: TreeTable, now: datetime, workdir: Path) -> Promotion:
    target = tier_job(job, tier)
    policy = tier_policy(config.retention, tier, config.longterm[tier])
    names = repo.manifest_names(target)
    gseq = (max(n.gseq for n in names) + 1) if names else 1
    start = point.point_time  # the long-term generation starts at the point it keeps
    lock_date = lock_until(start, policy)
    lock_mode = effective_lock_mode(config.lock_mode, repo.store.capabilities, config.repository_url)
    retention = Retention(lock_mode, lock_date) if lock_mode != "none" else None
    run_id = new_run_id()
    objects: list[dict] = []
    key_map: dict[str, str] = {}
    copied = uploaded = 0
    volumes = tree.conn.execute(
        "SELECT DISTINCT obj_key, obj_version, obj_sha256 FROM tree WHERE obj_key IS NOT NULL ORDER BY obj_key").fetchall()
    for index, volume in enumerate(volumes, start=1):
        new_key = volume_key(target, gseq, start, 1, run_id, index)
        if repo.store.capabilities.server_side_copy:
            info = repo.store.copy(volume["obj_key"], new_key, src_version_id=volume["obj_version"],
                                   sha256=volume["obj_sha256"], retention=retention)
            copied += info.size
        else:  # no server-side copy: fetch it and upload it again, checked against the recorded hash
            local = workdir / "volume.7z"
            repo.store.download(volume["obj_key"], local, version_id=volume["obj_version"])
            if sha256_of(local) != volume["obj_sha256"]:
                raise IntegrityError(f"Volume {volume['obj_key']} does not match its recorded SHA-256; "
                                     "the long-term point was not made.")
            info = repo.store.put(new_key, local, sha256=volume["obj_sha256"], retention=retention)
            uploaded += info.size
            local.unlink()
        key_map[volume["obj_key"]] = new_key
        objects.append({"key": new_key, "size": info.size, "sha256": volume["obj_sha256"],
                        "version_id": info.version_id, "method": "copy", "copied_from": volume["obj_key"]})
    obj_index = {old: i for i, old in enumerate(key_map)}
    writer = ManifestWriter(workdir)
    for row in tree.rows():
        writer.add(entry_of(row, path_name(row["path"]), "add", obj_index))
    header = build_header(
        job=target, repository=repo.id, kind="full", reason=f"{tier} long-term copy of {point.key}",
        generation_seq=gseq, generation_start=format_time(start), point_seq=1, point_time=format_time(point.point_time),
        run_id=run_id, parent=None, previous_generation_tip=None, lock_mode=lock_mode, lock_until=format_time(lock_date),
        policy=policy, job_config=source_header.get("config", {}), objects=objects,
        tree={"digest": tree.digest(), "entries": tree.count(), "bytes": source_header.get("tree", {}).get("bytes", 0)},
        warnings=0, source={"key": point.key, "tier": tier, "period": period(point.point_time, tier)})
    packed = writer.finish(header, repo.keys)
    key = manifest_key(target, gseq, start, 1, point.point_time, run_id)
    info = repo.store.put(key, packed, sha256=sha256_of(packed), retention=retention)
    (workdir / "manifest.m7z").unlink(missing_ok=True)
    return Promotion(tier, key, len(objects), copied, uploaded + info.size, format_time(lock_date))
