"""genarc list: generations and restore points, with their lock and expiry dates."""

from __future__ import annotations

import argparse

from ..clock import format_time
from ..generation import expires_from, lock_until
from ..longterm import TIERS, tier_policy
from .common import add_json, context, emit_json, escape, say

HELP = "list generations and restore points, with lock and expiry dates"
EXAMPLE = "genarc list home --json"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("list", help=HELP, description=f"{HELP}.\n\nexample:\n  {EXAMPLE}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("job", nargs="?", metavar="JOB", help="one job (default: every job in the repository)")
    add_json(p)
    p.set_defaults(func=run)


def _policy_of(config, job: str):
    """A long-term pseudo-job (``home~monthly``) has its tier's lock and lifecycle; a job, the configured ones."""
    if "~" in job:
        tier = job.rsplit("~", 1)[1]
        if tier in TIERS:
            return tier_policy(config.retention, tier, config.longterm.get(tier, 1))
    return config.retention


def run(args: argparse.Namespace) -> int:
    ctx = context(args)
    repo = ctx.open_repository()
    jobs = [args.job] if args.job else repo.jobs()
    out = []
    for job in jobs:
        policy = _policy_of(ctx.config, job)
        gens = []
        for gseq, names in repo.iter_generations(job):
            start = names[0].gstart
            gens.append({
                "generation": gseq, "start": format_time(start),
                "locked_until": format_time(lock_until(start, policy)),
                "expires_from": format_time(expires_from(start, policy)),
                "points": [{"point": n.pseq, "time": format_time(n.point_time), "kind": "full" if n.pseq == 1 else "incremental",
                            "manifest": n.key} for n in names],
            })
        out.append({"job": job, "longterm": "~" in job, "generations": gens})
    if args.json:
        emit_json(out)
        return 0
    for item in out:
        say(f"job {escape(item['job'])}" + ("  (long-term points: one self-contained generation each)" if item["longterm"] else ""))
        for g in item["generations"]:
            say(f"  generation {g['generation']}  started {g['start']}  locked until {g['locked_until']}  "
                f"expires from {g['expires_from']}")
            for p in g["points"]:
                say(f"    point {p['point']:<4} {p['time']}  {p['kind']}")
    if not out:
        say("no restore points yet")
    return 0
