"""Pure generation arithmetic: no I/O, time comes in as an argument.

R = keep_days, F = generation_days, m = margin_days (see docs/design.md):
- a run opens a new generation when ``now >= generation.start + F``;
- every object of a generation is locked until ``start + F + R + m``;
- the bucket lifecycle expires objects ``L = F + R + m + 1`` days after upload.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

RunKind = Literal["full", "incremental"]


@dataclass(frozen=True)
class RetentionPolicy:
    keep_days: int
    generation_days: int
    margin_days: int
    day_seconds: int = 86400

    def days(self, n: float) -> timedelta:
        return timedelta(seconds=n * self.day_seconds)

    @property
    def lock_days(self) -> int:
        return self.generation_days + self.keep_days + self.margin_days

    @property
    def lifecycle_age_days(self) -> int:
        return lifecycle_age_days(self)


@dataclass(frozen=True)
class GenerationRef:
    seq: int
    start: datetime


@dataclass(frozen=True)
class RunDecision:
    kind: RunKind
    generation: GenerationRef
    reason: str


def lifecycle_age_days(policy: RetentionPolicy) -> int:
    """Days after upload at which the bucket lifecycle may expire an object."""
    return policy.generation_days + policy.keep_days + policy.margin_days + 1


def lock_until(generation_start: datetime, policy: RetentionPolicy) -> datetime:
    """The retain-until date of every object in the generation started at ``generation_start``."""
    return generation_start + policy.days(policy.lock_days)


def generation_closes(generation_start: datetime, policy: RetentionPolicy) -> datetime:
    """The first moment at which a run opens the next generation."""
    return generation_start + policy.days(policy.generation_days)


def expires_from(generation_start: datetime, policy: RetentionPolicy) -> datetime:
    """The earliest moment the lifecycle rule can remove any object of the generation."""
    return generation_start + policy.days(lifecycle_age_days(policy))


def restorable_until(point_time: datetime, policy: RetentionPolicy) -> datetime:
    """The end of the promised retention of a restore point."""
    return point_time + policy.days(policy.keep_days)


def decide_run(
    now: datetime,
    latest: GenerationRef | None,
    policy: RetentionPolicy,
    *,
    force_full: bool = False,
    chain_ok: bool = True,
) -> RunDecision:
    """Decide whether this run is a full (opening a generation) or an incremental."""
    if latest is None:
        return RunDecision("full", GenerationRef(1, now), "no generation yet")
    opened = GenerationRef(latest.seq + 1, now)
    if force_full:
        return RunDecision("full", opened, "a full was asked for")
    if not chain_ok:
        return RunDecision("full", opened, "the current generation's chain is broken")
    if now >= generation_closes(latest.start, policy):
        return RunDecision("full", opened, f"generation {latest.seq} is {policy.generation_days} days old")
    return RunDecision("incremental", latest, f"generation {latest.seq} is still open")
