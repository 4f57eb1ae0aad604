"""genarc daemon: run jobs on their schedules, one at a time, until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import time

from ..daemon import Daemon
from ..errors import EXIT_OK, ConfigError, GenarcError
from ..runlock import RunLock
from . import output
from .common import context
from .run import add_run_options, last_point, run_jobs

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
        output.log("info", f"daemon: {message}")

    def run_one(name: str) -> int:
        with RunLock(ctx.state_dir, ctx.config.repository_url):  # one job at a time per repository
            repo = ctx.open_repository()
            code, _ = run_jobs(ctx, repo, [ctx.config.job(name)], args)
            return code

    def last(name: str):
        try:
            return last_point(ctx.open_repository(), name)
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
