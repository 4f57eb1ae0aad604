"""genarc daemon: run jobs on their schedules, one at a time, until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import time

from ..daemon import Daemon
from ..engine import JobOutcome
from ..errors import EXIT_OK, ConfigError, GenarcError
from .common import context, say
from .run import add_run_options, options, progress, summary

HELP = "run every job with a schedule when it is due (SIGTERM or SIGINT stop it cleanly)"
EXAMPLE = "genarc daemon --metrics-file /var/lib/node_exporter/genarc.prom"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("daemon", help=HELP, description=f"{HELP}.\n\nexample:\n  {EXAMPLE}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(p)
    p.set_defaults(func=run, full=None, json=False)


def run(args: argparse.Namespace) -> int:
    from .. import interrupt

    ctx = context(args)
    if not any(job.schedule for job in ctx.config.jobs.values()):
        raise ConfigError(f"{ctx.config.path}: no job has a schedule (e.g. schedule = \"daily at 02:30\"); "
                          "the daemon would have nothing to do.")

    def log(message: str) -> None:
        ctx.log("info", f"daemon: {message}")

    def show(outcome: JobOutcome) -> None:
        if outcome.report is not None and not args.quiet:
            say(summary(outcome.report))

    engine = ctx.engine(progress=lambda job: progress(args, ctx, job))

    def run_one(name: str) -> int:  # one job at a time per repository: the engine takes the run lock
        return engine.run([name], options(args), show).exit_code

    def last(name: str):
        try:
            return engine.last_point(engine.open_repository(), name)
        except GenarcError as exc:
            log(f"cannot read the last point of {name}: {exc.message}")
            return None

    def sleep(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and interrupt.requested() is None:
            time.sleep(min(1.0, end - time.monotonic()))

    log(f"serving {', '.join(sorted(n for n, j in ctx.config.jobs.items() if j.schedule))}")
    Daemon(ctx.config, ctx.clock, sleep, run_one, last, log).serve(stop=lambda: interrupt.requested() is not None)
    log("stopped")
    interrupt.check()
    return EXIT_OK
