"""genarc list: generations and restore points, with their lock and expiry dates."""

from __future__ import annotations

import argparse

from ..clock import format_time
from ..errors import ObjectNotFound
from ..generation import expires_from, lock_until
from ..longterm import policy_of
from ..history import History
from .common import (add_json, add_trusted_before, context, emit_json, escape, log_history, parse_time_option, say,
                     workdir)

HELP = "list generations and restore points, with lock and expiry dates"
EXAMPLE = "genarc list home --json"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("list", help=HELP, description=f"{HELP}.\n\nexample:\n  {EXAMPLE}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("job", nargs="?", metavar="JOB", help="one job (default: every job in the repository)")
    add_trusted_before(p)
    add_json(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ctx = context(args)
    repo = ctx.open_repository()
    jobs = [args.job] if args.job else repo.jobs()
    before = parse_time_option(args.trusted_before, "--trusted-before")
    out = []
    with workdir("genarc-list-") as tmp:
        for job in jobs:
            out.append(_job(ctx, repo, job, before, tmp))
    if args.json:
        emit_json(out)
        return 0
    for item in out:
        say(f"job {escape(item['job'])}" + ("  (long-term points: one self-contained generation each)" if item["longterm"] else ""))
        for g in item["generations"]:
            say(f"  generation {g['generation']}  started {g['start']}  locked until {g['locked_until']}  "
                + ("HELD until released" if g["held"] else f"expires from {g['expires_from']}"))
            for p in g["points"]:
                stored = f"  stored {p['stored']}" if p["stored"] and p["stored"] != p["time"] else ""
                say(f"    point {p['point']:<4} {p['time']}  {p['kind']}{stored}"
                    + (f"  SUSPECT: {escape('; '.join(p['suspect'].values()))}" if p["suspect"] else ""))
    if not out:
        say("no restore points yet")
    return 0


def _job(ctx, repo, job: str, before, tmp) -> dict:
    """One job's generations and points, in the order the server stored them, suspect points flagged."""
    policy = policy_of(ctx.config, job)
    history = History.read(repo, job, ctx.clock)
    history.check(repo, tmp)
    log_history(ctx, history)
    gens: dict[tuple, dict] = {}
    lockable = repo.store.capabilities.object_lock  # a legal hold (`genarc hold`) shows on each point's manifest
    for point in history.stored_before(before):
        name = point.name
        gen = gens.setdefault((name.gseq, name.gstart), {
            "generation": name.gseq, "start": format_time(name.gstart),
            "locked_until": format_time(lock_until(name.gstart, policy)),
            "expires_from": format_time(expires_from(name.gstart, policy)), "points": []})
        held = lockable and "unreadable" not in point.flags and _held(repo, point)
        gen["held"] = gen.get("held", False) or held
        gen["points"].append({
            "point": name.pseq, "time": format_time(name.point_time),
            "stored": format_time(point.stored) if point.stored else None, "held": held,
            "kind": "full" if name.pseq == 1 else "incremental", "manifest": name.key, "suspect": dict(point.flags)})
    history.drop(tmp)
    return {"job": job, "longterm": "~" in job, "generations": [gens[k] for k in sorted(gens)]}


def _held(repo, point) -> bool:
    try:
        return repo.store.stat(point.name.key, version_id=point.name.version_id).legal_hold
    except ObjectNotFound as exc:  # removed by the lifecycle since the listing: named, and the rest is listed
        point.flags["unreadable"] = exc.message
        return False
