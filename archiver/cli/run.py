"""genarc run: back up every job (or the named ones). The cron entry point."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..backup import RunReport
from ..engine import JobOutcome, RunOptions
from .common import Context, add_json, context, emit_json, escape, human_bytes, say
from .output import ProgressLine

HELP = "back up the jobs that are due by their schedule (all jobs without one), or the named ones"
EXAMPLE = ("genarc run                    # all jobs\n  genarc run home --full         # one job, opening a new generation"
           "\n  genarc run home --full=active  # ... reading and uploading everything again")


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Options shared by `run` and `daemon`."""
    p.add_argument("--metrics-file", metavar="PATH",
                   help="write a Prometheus textfile-collector file after every job (atomically)")
    p.add_argument("--quiet", action="store_true", help="no summaries; warnings and errors only")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("run", help=HELP, description=f"{HELP}.\n\nexample:\n  {EXAMPLE}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("jobs", nargs="*", metavar="JOB", help="jobs to run now, due or not (default: every job that is due)")
    p.add_argument("--full", nargs="?", const="auto", choices=["auto", "active"], metavar="active",
                   help="open a new generation now, whatever its age; synthetic where possible, or "
                        "--full=active to read and upload everything again")
    add_run_options(p)
    add_json(p)
    p.set_defaults(func=run)


def summary(report: RunReport) -> str:
    lines = [
        f"{report.job}: {report.kind_detail or report.kind} into generation {report.generation}, point {report.point} "
        f"({report.reason})",
        f"  scanned {report.files_scanned} entries, {human_bytes(report.bytes_scanned)}; "
        f"added {report.added}, changed {report.changed}, metadata {report.metadata_changed}, removed {report.removed}",
        f"  packed {human_bytes(report.bytes_packed)} into {report.volumes} volume(s); uploaded {human_bytes(report.bytes_uploaded)} "
        f"in {report.duration_s:.1f} s",
        "  requests: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in report.requests.items()
                                   if not k.startswith("bytes") and (v or k == "deletes")),
        lock_line(report),
    ]
    if report.shared_files:
        lines.insert(3, f"  {report.shared_files} moved, renamed or copied file(s) ({human_bytes(report.shared_bytes)}) "
                        "refer to what this generation already stores: not uploaded again")
    if report.synthetic:
        syn = report.synthetic
        where = "within the repository" if report.unprotected else "server-side"
        lines.append(f"  synthetic: {syn['copied_volumes']} volume(s) copied {where} "
                     f"({human_bytes(syn['copied_bytes'])}), {syn['repacked_volumes']} repacked "
                     f"({human_bytes(syn['repacked_bytes'])} of live files re-read)")
    for note in report.notes:
        lines.append(f"  note: {escape(note)}")
    for promotion in report.longterm:
        lines.append(f"  kept as the {promotion['tier']} long-term point: {promotion['objects']} volume(s) copied "
                     f"server-side ({human_bytes(promotion['copied_bytes'])}), "
                     + ("not locked (local directory)" if report.unprotected else
                        f"locked until {promotion['locked_until']}"))
    lines += suspicion_lines(report)
    if report.warnings:
        lines.append(f"  {len(report.warnings)} warning(s): the run is partial")
    return "\n".join(lines)


def lock_line(report: RunReport) -> str:
    if report.unprotected:
        return f"  not locked: {report.unprotected}"
    if report.lock_mode == "none":
        return f"  not locked (lock_mode = \"none\"); lifecycle may expire it from {report.expires_from}"
    return f"  locked until {report.lock_until} (mode {report.lock_mode}); lifecycle may expire it from {report.expires_from}"


def suspicion_lines(report: RunReport) -> list[str]:
    """What the tripwire says about the run: nothing when all is well."""
    suspicion = report.suspicion
    if not suspicion.get("suspicious"):
        return []
    lines = [f"  SUSPICIOUS (tripwire score {suspicion['score']}): these changes look like ransomware"]
    lines += [f"    {escape(reason)}" for reason in suspicion.get("reasons", [])]
    lines += [f"    e.g. {example}" for example in suspicion.get("profile", {}).get("examples", [])]  # escaped
    protected = suspicion.get("protected") or {}
    if protected.get("until") and not protected.get("error"):
        lines.append(f"  protected: the last clean point {protected.get('label', protected['point'])} "
                     f"({protected['objects']} object(s)) is locked until at least {protected['until']}")
    elif protected.get("error"):
        lines.append(f"  NOT protected: {escape(protected['error'])}")
    lines.append(f"  check the source; restore from the protected point if it was attacked; then "
                 f"`genarc acknowledge {report.job}`")
    return lines


def options(args: argparse.Namespace) -> RunOptions:
    return RunOptions(force_full=args.full is not None, full_mode=args.full or "auto",
                      metrics_file=Path(args.metrics_file) if args.metrics_file else None)


def run(args: argparse.Namespace) -> int:
    ctx = context(args)

    def show(outcome: JobOutcome) -> None:
        if outcome.report is not None and not args.json and not args.quiet:
            say(summary(outcome.report))

    result = ctx.engine(progress=lambda job: progress(args, ctx, job)).run(args.jobs, options(args), show)
    if args.json:
        emit_json({"exit_code": result.exit_code, "jobs": [o.as_dict() for o in result.outcomes],
                   "not_due": result.not_due, "next_due": result.next_due, "notes": result.notes})
    elif result.not_due and not args.quiet:
        for job in result.not_due:
            say(f"{job}: not due until {result.next_due[job]} by its schedule; `genarc run {job}` runs it now")
    return result.exit_code


def progress(args: argparse.Namespace, ctx: Context, job_name: str = ""):
    """Warnings go to the log; on a terminal (and without --quiet or --json) a progress line updates in place."""
    line = ProgressLine(sys.stderr, job_name) if sys.stderr.isatty() and not args.quiet and not args.json else None
    ctx.log.progress = line

    def on_event(event: str, data: dict) -> None:
        if event == "warning":
            ctx.log("warning", data["message"], job=job_name)
        elif line is not None:
            line.event(event, data)
            if event == "done":
                ctx.log.progress = None
    return on_event
