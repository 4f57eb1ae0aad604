"""`genarc plan --simulate DAYS`: a year (or any span) of runs and lifecycle, in seconds.

Runs follow the generation rules (``decide_run``); each writes objects of the modelled
size as sparse files in a throw-away local repository, recorded in an upload ledger at
its simulated time; every simulated day the LifecycleExecutor applies the planned S3
rules. Each day the simulation checks that every restore point younger than R still
has every object it needs, and measures what is stored.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .. import processes
from ..generation import GenerationRef, RetentionPolicy, decide_run, restorable_until
from ..plan import Sizing, s3_lifecycle
from .lifecycle import LifecycleExecutor, LocalAdmin, Rule, UploadLedger


@dataclass
class SimulationResult:
    days: list[int] = field(default_factory=list)
    stored_bytes: list[int] = field(default_factory=list)
    points_checked: int = 0
    broken_points: list[str] = field(default_factory=list)
    reclaimed_generations: int = 0
    objects_kept_by_lock: int = 0


def simulate(policy: RetentionPolicy, sizing: Sizing, days: int, start: datetime) -> SimulationResult:
    root = processes.make_temp("simulate")
    try:
        return _simulate(policy, sizing, days, start, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _simulate(policy: RetentionPolicy, sizing: Sizing, days: int, start: datetime, root: Path) -> SimulationResult:
    ledger = UploadLedger()
    admin = LocalAdmin(root)
    executor = LifecycleExecutor(admin, Rule.from_s3(s3_lifecycle(policy, ["sim/"])), day=policy.days(1),
                                 uploaded_at=ledger)
    result = SimulationResult()
    full = int(sizing.source_bytes * sizing.compression)
    change = int(sizing.source_bytes * sizing.daily_change * sizing.compression / max(sizing.runs_per_day, 1e-9))
    step = policy.days(1 / max(sizing.runs_per_day, 1e-9))
    generation: GenerationRef | None = None
    points: list[tuple[datetime, int, list[str]]] = []  # (time, generation, keys it needs)
    needed: list[str] = []
    now, end, counter = start, start + policy.days(days), 0
    next_day = start
    while now < end:
        decision = decide_run(now, generation, policy)
        if decision.kind == "full":
            generation, needed = decision.generation, []
        counter += 1
        key = f"sim/g{generation.seq:06d}/o{counter:08d}"
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            fh.truncate(full if decision.kind == "full" else change)  # sparse: costs no disk
        ledger.record(key, None, now)
        needed = needed + [key]
        points.append((now, generation.seq, needed))
        while next_day <= now:
            _day(executor, admin, policy, next_day, start, points, root, result)
            next_day += policy.days(1)
        now += step
    while next_day < end:
        _day(executor, admin, policy, next_day, start, points, root, result)
        next_day += policy.days(1)
    return result


def _day(executor: LifecycleExecutor, admin: LocalAdmin, policy: RetentionPolicy, now: datetime, start: datetime,
         points: list, root: Path, result: SimulationResult) -> None:
    report = executor.apply(now)
    result.objects_kept_by_lock += report.kept_by_lock
    stored = 0
    present = set()
    for version in admin.versions("sim/"):
        stored += version.size
        present.add(version.key)
    result.days.append(int((now - start) / policy.days(1)))
    result.stored_bytes.append(stored)
    for when, gseq, needs in points:
        if when <= now < restorable_until(when, policy):
            result.points_checked += 1
            missing = [k for k in needs if k not in present]
            if missing:
                result.broken_points.append(f"generation {gseq} point at {when:%Y-%m-%d %H:%M} on day {result.days[-1]}")
    gens_alive = {k.split("/")[1] for k in present}
    gens_ever = {f"g{g:06d}" for _, g, _ in points}
    result.reclaimed_generations = len(gens_ever - gens_alive)
    if os.environ.get("GENARC_SIMULATE_TRACE"):
        print(f"day {result.days[-1]}: stored {stored} in {len(gens_alive)} generations", flush=True)

