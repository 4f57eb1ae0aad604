"""genarc doctor: say plainly what protects the repository and what does not."""

from __future__ import annotations

import argparse

from ..doctor import as_dict, diagnose
from ..errors import EXIT_OK, EXIT_UNSAFE
from ..store import open_store
from .common import add_json, context, emit_json, say

HELP = "check what protects the repository (lock, versioning, lifecycle, key rights); non-zero when not ransomware-safe"
EXAMPLE = "genarc doctor --json"
MARK = {"ok": "ok  ", "warn": "warn", "fail": "FAIL", "unknown": "??  "}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("doctor", help=HELP, description=f"{HELP}.\n\nexample:\n  {EXAMPLE}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--no-delete-probe", action="store_true",
                   help="S3: skip the probe that deletes a random never-written key to learn whether this key can delete")
    add_json(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ctx = context(args)
    store = open_store(ctx.config.repository_url, options=ctx.config.store_options, counts=ctx.counts)
    report = diagnose(ctx.config, store, ctx.clock.now(), probe_delete=not args.no_delete_probe)
    code = EXIT_OK if report.safe else EXIT_UNSAFE
    if args.json:
        emit_json({"exit_code": code, **as_dict(report)})
        return code
    say(f"repository {report.repository} ({report.store})")
    for check in report.checks:
        say(f"  [{MARK[check.status]}] {check.name}: {check.detail}")
    say("ransomware-safe: yes" if report.safe else f"ransomware-safe: NO ({_why_not(report)})")
    return code


def _why_not(report) -> str:
    """Point at the lines that made the verdict, and only at lines that are there."""
    fails = sum(c.status == "fail" for c in report.checks)
    unknown = sum(c.status == "unknown" for c in report.checks)
    parts = [f"{fails} FAIL line{'s' * (fails != 1)}"] if fails else []
    if unknown:
        parts.append(f"{unknown} check{'s' * (unknown != 1)} that could not be made (??)")
    return "see the " + " and ".join(parts) + " above" if parts else "nothing could be checked"
