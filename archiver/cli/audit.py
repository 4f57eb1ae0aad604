"""genarc audit: overwritten, hidden, lost, forged-looking and unknown objects, from the version listings."""

from __future__ import annotations

import argparse

from ..audit import audit
from ..errors import EXIT_OK, EXIT_UNSAFE
from ..longterm import lock_cap_days
from .common import jobs_of, add_json, add_trusted_before, context, emit_json, escape, parse_time_option, say, workdir

HELP = "name everything in the repository genarc did not write the way it writes (exit 10 on any finding)"
EXAMPLE = "genarc audit home --json"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("audit", help=HELP, description=f"{HELP}.\n\nexample:\n  {EXAMPLE}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("job", nargs="?", metavar="JOB",
                   help="one job (default: every job, and every other object in the repository)")
    add_trusted_before(p)
    add_json(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ctx = context(args)
    repo = ctx.open_repository()
    jobs = jobs_of(ctx, repo, args.job)
    with workdir("genarc-audit-") as tmp:
        report = audit(repo, jobs, clock=ctx.clock, workdir=tmp, state_dir=ctx.state_dir,
                       trusted_before=parse_time_option(args.trusted_before, "--trusted-before"), whole=not args.job,
                       cap_days=lambda job: lock_cap_days(ctx.config, job))
    code = EXIT_OK if report.ok else EXIT_UNSAFE
    if args.json:
        emit_json({"exit_code": code, "report": report})
        return code
    say(f"audited {len(report.jobs)} job(s): {report.points} point(s), {report.objects} key(s)")
    for finding in report.findings:
        say(f"  [{finding.kind}] {escape(finding.message)}")
    for orphan in report.orphans:
        say(f"  orphan of run {orphan['run']} (no manifest refers to it; the lifecycle rule removes it): "
            f"{escape(orphan['key'])}")
    if report.held:
        say(f"  held: {len(report.held)} object(s) under a legal hold, kept past their lock and the lifecycle "
            "until released")
    for note in report.notes:
        say(f"  note: {escape(note)}")
    say("nothing found" if report.ok else f"{len(report.findings)} finding(s)")
    return code
