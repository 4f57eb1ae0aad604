"""genarc list: generations and restore points, with their lock and expiry dates."""

from __future__ import annotations

import argparse

from ..clock import format_time
from ..config import LOCK_MODES, MAX_LOCK_DAYS
from ..errors import IntegrityError, ObjectNotFound
from ..generation import RetentionPolicy, expires_from, lock_until
from ..longterm import policy_of
from ..history import History
from .common import (history_of, add_json, add_trusted_before, context, emit_json, escape, log_history, parse_time_option, say,
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
    jobs = [args.job] if args.job else repo.jobs()  # a job named here is checked when its history is read
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
            claimed = " (as recorded)" if g["dates_from"] == "recorded" else ""
            lock = (f"locked until {g['locked_until']}{claimed}" if g["locked_until"] else
                    f"not locked ({g['not_locked']})" if g["lock_mode"] != "unknown" else f"lock {g['not_locked']}")
            ends = ("HELD until released" if g["held"] else f"expires from {g['expires_from']}{claimed}"
                    if g["expires_from"] else "never expires by itself" if g["not_locked"] == "local directory"
                    else "expiry unknown")
            say(f"  generation {g['generation']}  started {g['start']}  {lock}  {ends}")
            for p in g["points"]:
                stored = f"  stored {p['stored']}" if p["stored"] and p["stored"] != p["time"] else ""
                say(f"    point {p['point']:<4} {p['time']}  {p['kind']}{stored}"
                    + (f"  SUSPECT: {escape('; '.join(p['suspect'].values()))}" if p["suspect"] else ""))
    if not any(item["generations"] for item in out):
        say("no restore points yet")
    return 0


def _job(ctx, repo, job: str, before, tmp) -> dict:
    """One job's generations and points, in the order the server stored them, suspect points flagged."""
    history = history_of(ctx, repo, job)
    history.check(repo, tmp)
    log_history(ctx, history)
    gens: dict[tuple, dict] = {}
    members: dict[tuple, list] = {}
    lockable = repo.store.capabilities.object_lock  # a legal hold (`genarc hold`) shows on each point's manifest
    for point in history.stored_before(before):
        name = point.name
        gen = gens.setdefault((name.gseq, name.gstart), {"generation": name.gseq, "start": format_time(name.gstart),
                                                         "points": []})
        members.setdefault((name.gseq, name.gstart), []).append(point)
        held = lockable and "unreadable" not in point.flags and _held(repo, point)
        gen["held"] = gen.get("held", False) or held
        gen["points"].append({
            "point": name.pseq, "time": format_time(name.point_time),
            "stored": format_time(point.stored) if point.stored else None, "held": held,
            "kind": "full" if name.pseq == 1 else "incremental", "manifest": name.key, "suspect": dict(point.flags)})
    for key, gen in gens.items():
        gen.update(_dates(ctx, repo, history, members[key], tmp))
    history.drop(tmp)
    return {"job": job, "longterm": "~" in job, "generations": [gens[k] for k in sorted(gens)]}


def _dates(ctx, repo, history: History, points: list, tmp) -> dict:
    """A generation's lock and expiry. For a job of the job file, from its retention; for a job it does not
    name (a repository read with --repository after a disaster), from what the generation's first readable
    manifest recorded ("recorded": a claim whoever holds the password can write; `genarc audit` checks the
    server's locks). A store that cannot lock, or lock_mode none, locks nothing."""
    unprotected = repo.store.capabilities.unprotected
    start = points[0].name.gstart
    job = history.job
    if job.split("~", 1)[0] in ctx.config.jobs:
        policy, mode, source = policy_of(ctx.config, job), ctx.config.lock_mode, "job file"
    else:
        policy, mode, source = None, "unknown: no manifest of the generation can be read", "recorded"
        for point in points:
            policy, mode = _recorded(repo, history, point, tmp)
            if policy is not None:
                break
    try:
        until = format_time(lock_until(start, policy)) if policy else None
        expires = format_time(expires_from(start, policy)) if policy else None
    except (OverflowError, ValueError):  # a recorded policy whose dates no calendar holds
        policy, mode, until, expires = None, "unknown: the recorded retention gives no date", None, None
    locked = policy is not None and not unprotected and mode in LOCK_MODES and mode != "none"
    why = "local directory" if unprotected else "lock_mode none" if mode == "none" else mode
    return {"lock_mode": "none" if unprotected else mode if mode in LOCK_MODES else "unknown",
            "not_locked": None if locked else why, "locked_until": until if locked else None,
            "expires_from": None if unprotected else expires, "dates_from": source}


def _recorded(repo, history: History, point, tmp) -> tuple[RetentionPolicy | None, str]:
    """The retention and lock mode a manifest recorded, read as plain day counts and a known mode only."""
    try:
        header = history.load(repo, point, tmp).header
        recorded, lock = header.get("policy"), header.get("lock")
        policy = RetentionPolicy(**{k: int(recorded[k]) for k in ("keep_days", "generation_days", "margin_days",
                                                                    "day_seconds")})
        mode = lock.get("mode")
        if not all(0 <= getattr(policy, k) <= MAX_LOCK_DAYS for k in ("keep_days", "generation_days", "margin_days")):
            raise ValueError(policy)
        if not 0 < policy.day_seconds <= 86400 or mode not in LOCK_MODES:
            raise ValueError(policy)
    except (IntegrityError, AttributeError, KeyError, TypeError, ValueError, OverflowError):
        return None, "unknown: its manifest cannot be read or records no plain retention"
    return policy, mode


def _held(repo, point) -> bool:
    try:
        return repo.store.stat(point.name.key, version_id=point.name.version_id).legal_hold
    except ObjectNotFound as exc:  # removed by the lifecycle since the listing: named, and the rest is listed
        point.flags["unreadable"] = exc.message
        return False
