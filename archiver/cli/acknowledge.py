"""genarc acknowledge: end a tripwire trip on this machine, once the source has been checked."""

from __future__ import annotations

import argparse

from ..clock import format_time
from ..tripwire import TripState
from .common import add_json, context, emit_json, escape, say

HELP = "end a tripwire trip of a job once its source has been checked (protections already applied stay)"
EXAMPLE = "genarc acknowledge home"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("acknowledge", help=HELP, description=f"{HELP}.\n\nexample:\n  {EXAMPLE}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("job", metavar="JOB")
    add_json(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Changes nothing stored: a lock already extended keeps its date, whoever calls this."""
    ctx = context(args)
    ctx.config.job(args.job)
    repo = ctx.open_repository()
    state = TripState.load(TripState.location(ctx.state_dir, repo.id, args.job),
                           lambda message: ctx.log("warning", message, job=args.job))
    trip = state.trip
    if trip is None:
        if args.json:
            emit_json({"job": args.job, "acknowledged": None})
        else:
            say(f"{args.job}: no unacknowledged tripwire trip")
        return 0
    state.trip = None
    state.save()
    protected = trip.get("protected") or {}
    if args.json:
        emit_json({"job": args.job, "acknowledged": trip, "at": format_time(ctx.clock.now())})
        return 0
    say(f"{args.job}: acknowledged the trip of {trip.get('since')} (first suspicious point {escape(str(trip.get('point')))})")
    if protected.get("until") and not protected.get("error"):
        say(f"  the last clean point {protected.get('label', protected.get('point'))} stays locked until "
            f"{protected['until']}: a lock cannot be shortened")
    say("  later runs learn from their changes again and are no longer flagged for this trip")
    return 0
