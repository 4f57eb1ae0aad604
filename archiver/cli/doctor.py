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
    say("ransomware-safe: yes" if report.safe else "ransomware-safe: NO (see the FAIL and ?? lines)")
    return code
