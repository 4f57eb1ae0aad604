"""genarc hold: a legal hold on every object of a job, a generation or a point, with admin credentials."""

from __future__ import annotations

import argparse
import os

from ..errors import UsageError
from .common import history_of, add_json, context, emit_json, log_history, say, workdir

HELP = "keep a job, generation or point past its lock and lifecycle with a legal hold (admin credentials)"
EXAMPLE = ("genarc hold home --generation 12 --admin-profile admin   # after an attack: keep the clean generation\n"
           "  genarc hold home --generation 12 --release --admin-profile admin")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("hold", help=HELP, description=f"{HELP}.\n\nexample:\n  {EXAMPLE}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("job", metavar="JOB")
    p.add_argument("--generation", type=int, metavar="G", help="only this generation (default: every one)")
    p.add_argument("--point", type=int, metavar="P", help="only what this point of --generation needs")
    p.add_argument("--release", action="store_true", help="release the holds instead")
    p.add_argument("--admin-profile", metavar="NAME",
                   help="AWS profile with admin rights (else GENARC_ADMIN_AWS_ACCESS_KEY_ID/_SECRET_ACCESS_KEY; "
                        "B2: GENARC_ADMIN_B2_APPLICATION_KEY_ID/_KEY); never the backup key")
    add_json(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..admin.hold import set_holds  # admin rights only: the backup path never imports it

    if args.point is not None and args.generation is None:
        raise UsageError("--point needs --generation.")
    ctx = context(args)
    repo = ctx.open_repository()
    with workdir("genarc-hold-") as tmp:
        history = history_of(ctx, repo, args.job)  # an unknown or impossible job names the real ones
        scope = [p for p in history.points if args.generation in (None, p.name.gseq)
                 and args.point in (None, p.name.pseq) and history.readable(repo, p, tmp)]
        log_history(ctx, history)
        if not scope:
            raise UsageError(f"Job {args.job!r} has no such restore point; `genarc list {args.job}` shows them.")
        keys = {p.key for p in scope}
        continued = {p.parent[0] for p in scope if p.parent}
        tips = [p for p in scope if p.key not in continued or args.point is not None]
        versions = history.needed(repo, tips, tmp)
    count = set_holds(ctx.config.repository_url, ctx.config.store_options, args.admin_profile, os.environ, versions,
                      on=not args.release)
    what = "released the legal hold of" if args.release else "set a legal hold on"
    if args.json:
        emit_json({"job": args.job, "generation": args.generation, "point": args.point, "held": not args.release,
                   "objects": count, "points": sorted(keys)})
    else:
        say(f"{what} {count} object(s) of {len(keys)} point(s) of {args.job}")
    return 0
