"""genarc daemon: run each job when its schedule says, with the `schedule` library, one job at a time.

- A job that fails is logged and the daemon goes on.
- SIGTERM or SIGINT stop it cleanly: a run in progress stops at its next safe point
  and commits nothing (only orphans remain); the daemon exits with 130.
- A run missed while the machine slept is caught up once (the schedule library runs
  an overdue job once and reschedules from now); a run missed while the daemon was
  down is caught up once at start, from the repository's own record of the last point.

Time is injected: the `schedule` library reads ``datetime.datetime.now()``, so while the
daemon runs that name is bound to the daemon's Clock (the real one, or a test's).
"""

from __future__ import annotations

import datetime as _dt
import types
from contextlib import contextmanager
from typing import Callable, Iterator

import schedule

from . import interrupt
from .clock import Clock
from .config import Config
from .timetable import due, local_wall_time, to_job


@contextmanager
def schedule_clock(clock: Clock) -> Iterator[None]:
    class ClockDatetime(_dt.datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[override]
            current = clock.now()
            value = current.astimezone(tz) if tz is not None else local_wall_time(current)
            return cls(value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond,
                       value.tzinfo)

    shim = types.ModuleType("datetime")
    shim.__dict__.update({k: getattr(_dt, k) for k in dir(_dt) if not k.startswith("__")})
    shim.datetime = ClockDatetime
    original = schedule.datetime
    schedule.datetime = shim
    try:
        yield
    finally:
        schedule.datetime = original


class Daemon:
    def __init__(self, config: Config, clock: Clock, sleep: Callable[[float], None],
                 run_job: Callable[[str], int], last_point: Callable[[str], _dt.datetime | None],
                 log: Callable[[str], None]) -> None:
        self.config, self.clock, self.sleep = config, clock, sleep
        self.run_job, self.last_point, self.log = run_job, last_point, log
        self.runs: list[tuple[str, _dt.datetime, int]] = []

    def _run_one(self, name: str) -> None:
        started = self.clock.now()
        try:
            code = self.run_job(name)
        except interrupt.Interrupted:
            raise
        except Exception as exc:  # a failing run must not stop the daemon
            self.log(f"job {name}: run failed: {exc}")
            code = -1
        self.runs.append((name, started, code))
        self.log(f"job {name}: finished with exit code {code}")

    def serve(self, stop: Callable[[], bool]) -> None:
        scheduled = [job for job in self.config.jobs.values() if job.schedule is not None]
        with schedule_clock(self.clock):
            scheduler = schedule.Scheduler()
            for job in scheduled:
                to_job(scheduler, job.schedule).do(self._run_one, job.name)
            for job in scheduled:  # catch up, once, what was missed while the daemon was down
                if due(job.schedule, self.last_point(job.name), self.clock.now()):
                    self.log(f"job {job.name}: due since before the daemon started; running it now")
                    self._run_one(job.name)
            while not stop():
                interrupt.check()
                scheduler.run_pending()
                idle = scheduler.idle_seconds
                self.sleep(max(1.0, min(idle if idle is not None else 60.0, 60.0)))
