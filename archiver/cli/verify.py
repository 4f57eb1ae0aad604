"""genarc verify: check chains, HMACs and every object; --deep decrypts every entry."""

from __future__ import annotations

import argparse

from ..errors import EXIT_INTEGRITY, EXIT_OK
from ..verify import verify
from .common import (jobs_of, add_json, add_trusted_before, context, emit_json, escape, human_bytes, parse_time_option, say,
                     workdir)

HELP = "check manifests, chains and objects (--deep: decrypt and hash every file too)"
EXAMPLE = "genarc verify home --deep"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("verify", help=HELP, description=f"{HELP}.\n\nexample:\n  {EXAMPLE}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("job", nargs="?", metavar="JOB", help="one job (default: every job in the repository)")
    p.add_argument("--deep", action="store_true", help="also decrypt every volume and check every file's xxh3")
    add_trusted_before(p)
    add_json(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ctx = context(args)
    repo = ctx.open_repository()
    jobs = jobs_of(ctx, repo, args.job)
    with workdir("genarc-verify-") as tmp:
        report = verify(repo, jobs, deep=args.deep, workdir=tmp, clock=ctx.clock,
                        trusted_before=parse_time_option(args.trusted_before, "--trusted-before"))
    code = EXIT_OK if report.ok else EXIT_INTEGRITY
    if args.json:
        emit_json({"exit_code": code, "report": report})
        return code
    say(f"checked {len(report.jobs)} job(s): {report.generations} generation(s), {report.points} point(s), "
        f"{report.objects} object(s) ({human_bytes(report.bytes)})" + (f", {report.entries_checked} entries decrypted" if args.deep else ""))
    for orphan in report.orphans:
        say(f"  orphan (no manifest refers to it; the lifecycle rule removes it): {escape(orphan)}")
    for item in report.tampered:
        say(f"  TAMPERED: {escape(item)}")
    for problem in report.problems:
        say(f"  PROBLEM: {escape(problem)}")
    say("ok" if report.ok else f"{len(report.problems)} problem(s) found")
    return code
