"""genarc restore: bring back a restore point, or part of it, into a target directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..restore import RestoreFailed, restore
from .output import ProgressLine
from .common import add_json, add_point_arguments, chosen_point, context, emit_json, escape, human_bytes, say, workdir

HELP = "restore a point (the newest unless chosen) into a target directory"
EXAMPLE = "genarc restore home --target /tmp/r --generation 3 --point 2 --include 'home/alice/docs/**'"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("restore", help=HELP, description=f"{HELP}.\n\nexample:\n  {EXAMPLE}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("job", metavar="JOB")
    p.add_argument("--target", required=True, metavar="DIR", help="directory to restore into")
    add_point_arguments(p)
    p.add_argument("--include", action="append", default=[], metavar="GLOB",
                   help="restore only matching paths (stored paths have no leading slash); repeatable")
    p.add_argument("--overwrite", action="store_true", help="replace files that already exist in the target")
    p.add_argument("--quiet", action="store_true", help="no progress line and no summary; errors only")
    add_json(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ctx = context(args)
    with workdir("genarc-restore-") as tmp:
        repo, history, point = chosen_point(ctx, args, tmp)
        try:
            line = ProgressLine(sys.stderr, f"restore {args.job} g{point.label()}") \
                if sys.stderr.isatty() and not args.json and not args.quiet else None
            ctx.log.progress = line
            report = restore(repo, history, point, target=Path(args.target), includes=args.include,
                             overwrite=args.overwrite, workdir=tmp, progress=line.event if line else None,
                             workers=ctx.config.volumes.effective_workers)
        except RestoreFailed as failed:
            for error in failed.report.errors + failed.report.blocked:
                ctx.log("warning", error)
            _named_losses(ctx, failed.report)
            if args.json:
                emit_json({"exit_code": failed.exit_code, "report": failed.report})
            raise
    _named_losses(ctx, report)
    if args.json:
        emit_json({"exit_code": 0, "report": report})
    elif not args.quiet:
        say(f"restored generation {report.generation}, point {report.point} ({report.time}) of {args.job} into {escape(report.target)}: "
            f"{report.files} files ({human_bytes(report.bytes)}), {report.dirs} directories, {report.symlinks} symlinks")
    return 0


def _named_losses(ctx, report) -> None:
    """What the restore could not keep, once per kind; and the files stored as last read."""
    for kind, count in sorted(report.unset.items()):
        ctx.log("warning", f"{count} entr{'y' if count == 1 else 'ies'} lost their {kind} in the target: the file "
                           "system or a restore without root does not take them; everything else was restored")
    for name in report.changed_while_read:
        ctx.log("warning", f"{name} kept changing while it was backed up; it is restored as it was last read, "
                           "which may not be a state it was ever in")
