"""genarc watch: freshness, chain, lock and config drift, checked from another machine with a read-only key."""

from __future__ import annotations

import argparse
import re
from datetime import timedelta

from ..errors import EXIT_OK, EXIT_UNSAFE, UsageError
from ..watch import watch
from .common import jobs_of, add_json, add_trusted_before, context, emit_json, escape, parse_time_option, say, workdir

HELP = "check every job's freshness, chain, lock and config drift (for a monitoring host with a read-only key)"
EXAMPLE = "genarc watch --max-age 26h      # from cron on a monitoring host; exit 10 on any finding"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("watch", help=HELP, description=f"{HELP}.\n\nexample:\n  {EXAMPLE}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("job", nargs="?", metavar="JOB", help="one job (default: every job in the repository)")
    p.add_argument("--max-age", default="26h", metavar="AGE",
                   help="the newest point must be younger than this (e.g. 26h, 2d, 90m; default 26h)")
    add_trusted_before(p)
    add_json(p)
    p.set_defaults(func=run)


def parse_age(text: str) -> timedelta:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if not match:
        raise UsageError(f"--max-age {text!r} is not a duration such as 26h, 2d or 90m.")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match[2]]
    try:
        return timedelta(**{unit: float(match[1])})
    except OverflowError:
        raise UsageError(f"--max-age {text!r} is longer than any date can reach; give e.g. 26h or 400d.") from None


def run(args: argparse.Namespace) -> int:
    ctx = context(args)
    max_age = parse_age(args.max_age)
    repo = ctx.open_repository()
    jobs = jobs_of(ctx, repo, args.job)
    with workdir("genarc-watch-") as tmp:
        findings = watch(repo, jobs, ctx.clock, max_age, tmp,
                         trusted_before=parse_time_option(args.trusted_before, "--trusted-before"),
                         tripwire=ctx.config.tripwire, max_age_text=args.max_age.strip())
    code = EXIT_UNSAFE if findings else EXIT_OK
    if args.json:
        emit_json({"exit_code": code, "jobs": jobs, "findings": [f.__dict__ for f in findings]})
        return code
    for finding in findings:
        say(f"[{finding.kind}] {escape(finding.message)}")
    say(f"watched {len(jobs)} job(s): " + ("all well" if not findings else f"{len(findings)} finding(s)"))
    return code
