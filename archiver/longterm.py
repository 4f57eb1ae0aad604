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

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from . import chain as chain_mod
from . import processes
from .catalog import TreeTable
from .clock import Clock, format_time
from .config import Config
from .generation import GenerationRef, RetentionPolicy
from .history import History, Point
from .layout import ManifestName, new_run_id
from .point import PointWriter, lock_plan
from .repository import Repository

TIERS = {"monthly": 31, "yearly": 366}  # days per kept unit, rounded up


def tier_job(job: str, tier: str) -> str:
    return f"{job}~{tier}"


def job_names(config: Config) -> list[str]:
    """Every job of the config and, for each long-term tier, its pseudo-job (``home~monthly``), sorted."""
    return sorted([*config.jobs, *(tier_job(j, tier) for tier in config.longterm for j in config.jobs)])


def tier_policy(base: RetentionPolicy, tier: str, count: int) -> RetentionPolicy:
    """A long-term point is its own one-point generation: F = 0, R = count units, the same margin."""
    return RetentionPolicy(keep_days=count * TIERS[tier], generation_days=0, margin_days=base.margin_days,
                           day_seconds=base.day_seconds)


def policy_of(config: Config, job: str) -> RetentionPolicy:
    """A long-term pseudo-job (``home~monthly``) has its tier's lock and lifecycle; a job, the configured ones."""
    if "~" in job:
        tier = job.rsplit("~", 1)[1]
        if tier in TIERS:
            return tier_policy(config.retention, tier, config.longterm.get(tier, 1))
    return config.retention


def lock_cap_days(config: Config, job: str | None = None) -> int:
    """The longest lock, in whole days, that a run of ``job`` (None: of any job or tier) asks for: its
    generations' lock, or the tripwire's protection of a clean point when that is longer."""
    from .policy import max_retention_days

    names = [job] if job is not None else job_names(config)
    return max(max(max_retention_days(policy_of(config, name)) for name in names), protect_cap_days(config))


def protect_cap_days(config: Config) -> int:
    """The tripwire's protection in whole days (0 when it is off), with a day of slack like every cap."""
    if not config.tripwire.enabled:
        return 0
    seconds = config.tripwire.protect_days * config.retention.day_seconds
    return -(-seconds // 86400) + 1


def period(when: datetime, tier: str) -> str:
    return when.strftime("%Y-%m" if tier == "monthly" else "%Y")


def due_tiers(config: Config, repo: Repository, job: str, point: Point, clock: Clock) -> list[str]:
    """Tiers for which ``point`` is the first restore point of its month (or year); suspect points do not count."""
    due = []
    for tier in config.longterm:
        existing = {period(p.claimed, tier) for p in History.read(repo, tier_job(job, tier), clock).trusted()}
        if period(point.claimed, tier) not in existing:
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


def promote(repo: Repository, config: Config, job: str, history: History, point: Point, clock: Clock,
            tiers: list[str] | None = None) -> list[Promotion]:
    """Make ``point`` (of ``history``) a long-term point in every due tier (or the given ones)."""
    tiers = due_tiers(config, repo, job, point, clock) if tiers is None else tiers
    if not tiers:
        return []
    with processes.temp_dir("longterm") as tmp:
        workdir = Path(tmp)
        with chain_mod.scratch_tree(workdir) as tree:
            tip = chain_mod.replay(repo, history, point, tree, workdir)
            return [_materialize(repo, config, job, tier, point.name, tip.header, tree, workdir, clock)
                    for tier in tiers]


def _materialize(repo: Repository, config: Config, job: str, tier: str, point: ManifestName, source_header: dict,
                 tree: TreeTable, workdir: Path, clock: Clock) -> Promotion:
    target = tier_job(job, tier)
    policy = tier_policy(config.retention, tier, config.longterm[tier])
    kept = History.read(repo, target, clock).trusted()
    start = point.point_time  # the long-term generation starts at the point it keeps
    generation = GenerationRef((max(p.name.gseq for p in kept) + 1) if kept else 1, start)
    lock = lock_plan(repo, config, start, policy)
    writer = PointWriter(repo, target, generation, 1, new_run_id(), lock, workdir, full=True)
    copy = repo.store.capabilities.server_side_copy
    copied = uploaded = 0
    volumes = tree.conn.execute(
        "SELECT DISTINCT obj_key, obj_version, obj_sha256 FROM tree WHERE obj_key IS NOT NULL ORDER BY obj_key").fetchall()
    for index, volume in enumerate(volumes, start=1):
        source = (volume["obj_key"], volume["obj_version"], volume["obj_sha256"], writer.volume_key(index))
        if copy:
            copied += writer.copy_volume(*source).size
        else:  # no server-side copy: fetch it and upload it again, checked against the recorded hash
            uploaded += writer.reupload_volume(*source, workdir).size
    for row in tree.rows():
        writer.add_row(row, "add")
    committed = writer.commit(
        kind="full", reason=f"{tier} long-term copy of {point.key}", point_time=point.point_time, policy=policy,
        job_config=source_header.get("config", {}),
        tree={"digest": tree.digest(), "entries": tree.count(), "bytes": source_header.get("tree", {}).get("bytes", 0)},
        source={"key": point.key, "tier": tier, "period": period(point.point_time, tier)})
    return Promotion(tier, committed.key, len(writer.objects), copied, uploaded + committed.size,
                     format_time(lock.until))
