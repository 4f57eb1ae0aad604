"""Injected time. Nothing in genarc reads the wall clock except through a Clock.

``GENARC_NOW`` (ISO-8601) pins "now" for simulations and tests. ``GENARC_DAY_SECONDS``
shortens a retention "day" for real-time lifecycle tests against servers with an
accelerated lifecycle; it scales F, R and m and so the lock dates genarc writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Mapping, Protocol

from .errors import ConfigError


class Clock(Protocol):
    injected: bool  # a simulated "now" (tests, GENARC_NOW): its times are not on the server's timeline

    def now(self) -> datetime: ...


class SystemClock:
    injected = False

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


@dataclass
class FixedClock:
    """A clock that returns a set time; tests move it by assigning ``at``."""

    at: datetime
    injected = True

    def now(self) -> datetime:
        return self.at


def parse_time(text: str, what: str = "time") -> datetime:
    """Parse an ISO-8601 time; a naive time is taken as UTC."""
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{what} {text!r} is not an ISO-8601 time such as 2027-01-04T02:00:00Z.") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def clock_from_env(env: Mapping[str, str] | None = None) -> Clock:
    env = os.environ if env is None else env
    pinned = env.get("GENARC_NOW")
    if pinned:
        return FixedClock(parse_time(pinned, "GENARC_NOW"))
    return SystemClock()


def day_seconds_from_env(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    raw = env.get("GENARC_DAY_SECONDS")
    if not raw:
        return 86400
    try:
        seconds = int(raw)
    except ValueError:
        raise ConfigError(f"GENARC_DAY_SECONDS={raw!r} is not a whole number of seconds.") from None
    if not 0 < seconds <= 86400:
        raise ConfigError("GENARC_DAY_SECONDS must be a number of seconds from 1 to 86400 (it shortens days for tests).")
    return seconds


def format_time(when: datetime) -> str:
    """The canonical text form: UTC, second precision, trailing Z."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def compact_time(when: datetime) -> str:
    """The key form used in object names: 20270104T020000Z."""
    return when.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
