"""Job schedules: `schedule = "daily at 02:30"` and friends, parsed once, used by cron runs and the daemon.

Accepted forms (times are the machine's local time, as cron's are):
    hourly | daily | daily at HH:MM | every N minutes | every N hours | every N days [at HH:MM]
    weekly on <weekday> [at HH:MM]

``next_after`` is pure and decides whether a cron-started `genarc run` has work to do;
``to_job`` turns a schedule into a `schedule` library job for `genarc daemon`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_AT = r"(?:\s+at\s+(?P<at>\d{1,2}:\d{2}))?"
_FORMS = [
    (re.compile(r"hourly"), lambda m: Schedule("hours", 1)),
    (re.compile(r"daily" + _AT), lambda m: Schedule("days", 1, m["at"])),
    (re.compile(r"every\s+(?P<n>\d+)\s+(?P<unit>minutes?|hours?|days?)" + _AT),
     lambda m: Schedule(m["unit"].rstrip("s") + "s", int(m["n"]), m["at"])),
    (re.compile(r"weekly\s+on\s+(?P<day>[a-z]+)" + _AT), lambda m: Schedule("weeks", 1, m["at"], m["day"])),
]


@dataclass(frozen=True)
class Schedule:
    unit: str  # "minutes" | "hours" | "days" | "weeks"
    interval: int
    at: str | None = None  # "HH:MM", for days and weeks
    weekday: str | None = None

    @property
    def period(self) -> timedelta:
        return timedelta(**{self.unit: self.interval})


def parse(text: str) -> Schedule:
    """Parse a schedule; raise ValueError with a sentence saying what is accepted."""
    value = " ".join(text.strip().lower().split())
    for pattern, build in _FORMS:
        match = pattern.fullmatch(value)
        if match:
            spec = build(match)
            if spec.interval < 1:
                break
            if spec.at is not None:
                hour, minute = (int(x) for x in spec.at.split(":"))
                if spec.unit in ("minutes", "hours") or hour > 23 or minute > 59:
                    break
                spec = Schedule(spec.unit, spec.interval, f"{hour:02d}:{minute:02d}", spec.weekday)
            if spec.weekday is not None and spec.weekday not in WEEKDAYS:
                break
            return spec
    raise ValueError(f"{text!r} is not a schedule; use e.g. \"daily at 02:30\", \"every 6 hours\", \"hourly\" "
                     "or \"weekly on sunday at 03:00\"")


def next_after(spec: Schedule, last: datetime) -> datetime:
    """The first moment after ``last`` at which the job is due again (local wall time)."""
    if spec.unit in ("minutes", "hours") or spec.at is None and spec.weekday is None:
        return last + spec.period
    hour, minute = (int(x) for x in (spec.at or "00:00").split(":"))
    candidate = last.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if spec.unit == "weeks":
        target = WEEKDAYS.index(spec.weekday or "monday")
        candidate += timedelta(days=(target - candidate.weekday()) % 7)
        while candidate <= last:
            candidate += timedelta(weeks=1)
        return candidate
    while candidate <= last:
        candidate += timedelta(days=1)
    return candidate + timedelta(days=spec.interval - 1)


def is_due(spec: Schedule | None, last: datetime | None, now: datetime) -> bool:
    """A job with no schedule is always due; one never run is due; else when its next time has come."""
    return spec is None or last is None or next_after(spec, last) <= now


def to_job(scheduler: Any, spec: Schedule) -> Any:
    """The same schedule as a `schedule` library job (``scheduler`` is a schedule.Scheduler)."""
    job = scheduler.every(spec.interval)
    if spec.unit == "weeks":
        job = getattr(job, spec.weekday or "monday") if spec.interval == 1 else job.weeks
    else:
        job = getattr(job, spec.unit)
    if spec.at is not None:
        job = job.at(spec.at)
    return job


def local_wall_time(when: datetime) -> datetime:
    """Schedules speak the machine's local wall time; genarc's clock speaks aware UTC."""
    return when.astimezone().replace(tzinfo=None) if when.tzinfo else when


def due(spec: Schedule | None, last: datetime | None, now: datetime) -> bool:
    return is_due(spec, local_wall_time(last) if last else None, local_wall_time(now))


def next_due(spec: Schedule, last: datetime) -> datetime:
    """When a job last run at ``last`` (aware) is due again, as an aware time."""
    wall = next_after(spec, local_wall_time(last))
    return wall.astimezone(timezone.utc) if last.tzinfo else wall
