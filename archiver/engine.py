"""Running jobs the whole way: backup, long-term promotion, metrics and hooks.

This is the library entry point behind ``genarc run`` and ``genarc daemon``; a Python
caller gets exactly what they get::

    engine = Engine(config, clock=SystemClock(), state_dir=state_dir())
    summary = engine.run()            # every job that is due, under the run lock
    summary = engine.run(["home"])    # one job now, due or not

One failing job never stops the next. Metrics and hooks report on a run and can never
change its exit code.
"""

from __future__ import annotations

import traceback
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from .backup import Progress, RunReport, run_job
from .clock import Clock, format_time
from .config import Config, JobConfig
from .errors import EXIT_INTERNAL, EXIT_OK, EXIT_PARTIAL, EXIT_SUSPICIOUS, GenarcError, IntegrityError, Interrupted
from .history import History
from .longterm import promote
from .monitoring import run_hook, write_metrics
from .repository import Repository
from .runlock import RunLock
from .store import RequestCounts
from .timetable import due, next_due

Log = Callable[..., None]
"""log(level, message, **fields): where the engine reports errors and warnings about a job."""


@dataclass
class JobOutcome:
    job: str
    exit_code: int
    report: RunReport | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.report is None:
            return {"job": self.job, "error": self.error, "exit_code": self.exit_code}
        return {"job": self.job, "exit_code": self.exit_code, "report": self.report}


@dataclass
class RunSummary:
    outcomes: list[JobOutcome] = field(default_factory=list)
    not_due: list[str] = field(default_factory=list)
    next_due: dict[str, str] = field(default_factory=dict)  # a job not due -> when its schedule makes it due
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return max([EXIT_OK, *(o.exit_code for o in self.outcomes)])


@dataclass
class RunOptions:
    force_full: bool = False
    full_mode: str = "auto"  # "auto": synthetic where possible; "active": read and upload everything again
    metrics_file: Path | None = None


def _no_log(level: str, message: str, **fields: Any) -> None:
    pass


class Engine:
    def __init__(self, config: Config, *, clock: Clock, state_dir: Path, counts: RequestCounts | None = None,
                 log: Log = _no_log, progress: Callable[[str], Progress | None] | None = None,
                 debug: bool = False) -> None:
        self.config, self.clock, self.state_dir, self.debug = config, clock, state_dir, debug
        self.counts = counts or RequestCounts()
        self.log = log
        self.progress = progress or (lambda job: None)

    def open_repository(self) -> Repository:
        return Repository.open(self.config, counts=self.counts)

    def last_point(self, repo: Repository, job: str) -> datetime | None:
        """When the newest trusted point was stored (a forged future date cannot make a job look done)."""
        history = History.read(repo, job, self.clock)
        newest = history.newest()
        return history.time_of(newest) if newest is not None else None

    def run(self, names: list[str] | None = None, options: RunOptions | None = None,
            on_outcome: Callable[[JobOutcome], None] | None = None) -> RunSummary:
        """Run the named jobs now, or (none named) every job due by its schedule, under the run lock."""
        options = options or RunOptions()
        named = [self.config.job(n) for n in names or []]
        summary = RunSummary()
        with RunLock(self.state_dir, self.config.repository_url) as lock:
            for note in lock.notes:
                self.log("note", note)
            summary.notes.extend(lock.notes)
            repo = self.open_repository()
            jobs = named or [self.config.jobs[n] for n in sorted(self.config.jobs)]
            if not named:  # from cron: only the jobs whose schedule says they are due
                now = self.clock.now()
                for job in jobs:
                    last = self.last_point(repo, job.name)
                    if not due(job.schedule, last, now):
                        summary.not_due.append(job.name)
                        summary.next_due[job.name] = format_time(next_due(job.schedule, last))
                jobs = [j for j in jobs if j.name not in summary.not_due]
            for job in jobs:
                summary.outcomes.append(self.run_one(repo, job, options, on_outcome))
        return summary

    def run_one(self, repo: Repository, job: JobConfig, options: RunOptions,
                on_outcome: Callable[[JobOutcome], None] | None = None) -> JobOutcome:
        """Back up one job and keep it long-term when due; then ``on_outcome``, the metrics and the hooks."""
        outcome, message = self._backup(repo, job, options)
        if on_outcome is not None:
            on_outcome(outcome)
        self._report(job, outcome, options, message)
        return outcome

    def _backup(self, repo: Repository, job: JobConfig, options: RunOptions) -> tuple[JobOutcome, str]:
        try:
            report = run_job(repo, self.config, job, clock=self.clock, state_dir=self.state_dir,
                             force_full=options.force_full, full_mode=options.full_mode,
                             progress=self.progress(job.name))
            if self.config.longterm and report.suspicious:
                report.notes.append("not kept long-term while the tripwire is open: a later clean point of this "
                                    "period takes its place")
            elif self.config.longterm:
                history = History.read(repo, job.name, self.clock)
                point = history.by_key(report.manifest_key)
                if point is None:
                    raise IntegrityError(f"The point just committed, {report.manifest_key}, is not in the repository listing; "
                                         "check the bucket with `genarc audit`.")
                report.longterm = [asdict(p) for p in promote(repo, self.config, job.name, history, point, self.clock)]
        except Interrupted:
            raise
        except GenarcError as exc:
            self.log("error", exc.message, job=job.name, exit_code=exc.exit_code)
            return JobOutcome(job.name, exc.exit_code, error=exc.message), exc.message
        except Exception as exc:  # a bug: this job fails, its hooks and metrics still report it, the next job runs
            if self.debug:
                traceback.print_exc()
            message = f"internal error: {type(exc).__name__}: {exc}. Rerun with --debug and report it."
            self.log("error", message, job=job.name, exit_code=EXIT_INTERNAL)
            return JobOutcome(job.name, EXIT_INTERNAL, error=message), message
        if report.suspicious:
            reasons = "; ".join(report.suspicion.get("reasons", [])[:3])
            self.log("warning", f"suspicious changes (tripwire score {report.suspicion['score']}): {reasons}",
                     job=job.name)
            return JobOutcome(job.name, EXIT_SUSPICIOUS, report), f"suspicious changes: {reasons}"
        outcome = JobOutcome(job.name, EXIT_PARTIAL if report.partial else EXIT_OK, report)
        return outcome, "; ".join(report.warnings[:3])

    def _report(self, job: JobConfig, outcome: JobOutcome, options: RunOptions, message: str) -> None:
        """Metrics and hooks: they report on the run and can never change its outcome."""
        def warn(text: str) -> None:
            self.log("warning", text, job=job.name)

        report = outcome.report
        if options.metrics_file:
            try:
                write_metrics(options.metrics_file, job.name, outcome.exit_code, self.clock.now(), report)
            except OSError as exc:
                warn(f"cannot write the metrics file {options.metrics_file}: {exc.strerror}")
        env = {"GENARC_JOB": job.name, "GENARC_EXIT_CODE": str(outcome.exit_code), "GENARC_MESSAGE": message,
               "GENARC_REPOSITORY": self.config.repository_url}
        env["GENARC_SUSPICIOUS"] = "0"
        if report is not None:
            env.update(GENARC_GENERATION=str(report.generation), GENARC_POINT=str(report.point),
                       GENARC_MANIFEST=report.manifest_key, GENARC_LOCK_UNTIL=report.lock_until,
                       GENARC_KIND=report.kind_detail or report.kind,
                       GENARC_SUSPICION_SCORE=str(report.suspicion.get("score", 0.0)))
            if report.suspicious:
                protected = report.suspicion.get("protected") or {}
                env.update(GENARC_SUSPICIOUS="1", GENARC_PROTECTED_POINT=protected.get("point") or "",
                           GENARC_PROTECTED_UNTIL=protected.get("until") or "")
        if outcome.exit_code == EXIT_SUSPICIOUS:
            run_hook(job.on_suspicion or job.on_failure, env, warn)
            return
        run_hook(job.on_success if outcome.exit_code in (EXIT_OK, EXIT_PARTIAL) else job.on_failure, env, warn)
