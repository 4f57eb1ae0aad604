"""genarc run: back up every job (or the named ones). The cron entry point."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

from ..backup import RunReport, run_job
from ..errors import EXIT_OK, EXIT_PARTIAL, GenarcError, Interrupted
from ..longterm import promote
from ..monitoring import run_hook, write_metrics
from ..runlock import RunLock
from ..timetable import due
from . import output
from .output import ProgressLine, log
from .common import add_json, context, emit_json, human_bytes, say, shown

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
        f"  locked until {report.lock_until} (mode {report.lock_mode}); lifecycle may expire it from {report.expires_from}",
    ]
    if report.synthetic:
        syn = report.synthetic
        lines.append(f"  synthetic: {syn['copied_volumes']} volume(s) copied server-side "
                     f"({human_bytes(syn['copied_bytes'])}), {syn['repacked_volumes']} repacked "
                     f"({human_bytes(syn['repacked_bytes'])} of live files re-read)")
    for note in report.notes:
        lines.append(f"  note: {note}")
    for promotion in report.longterm:
        lines.append(f"  kept as the {promotion['tier']} long-term point: {promotion['objects']} volume(s) copied "
                     f"server-side ({human_bytes(promotion['copied_bytes'])}), locked until {promotion['locked_until']}")
    if report.warnings:
        lines.append(f"  {len(report.warnings)} warning(s): the run is partial")
    return "\n".join(lines)


def last_point(repo, job: str):
    names = repo.manifest_names(job)
    return names[-1].point_time if names else None


def run(args: argparse.Namespace) -> int:
    ctx = context(args)
    named = [ctx.config.job(n) for n in args.jobs]
    with RunLock(ctx.state_dir, ctx.config.repository_url):
        repo = ctx.open_repository()
        if named:
            jobs, skipped = named, []
        else:  # from cron: only the jobs whose schedule says they are due
            everything = [ctx.config.jobs[n] for n in sorted(ctx.config.jobs)]
            jobs = [j for j in everything if due(j.schedule, last_point(repo, j.name), ctx.clock.now())]
            skipped = [j.name for j in everything if j not in jobs]
        worst, results = run_jobs(ctx, repo, jobs, args)
    if args.json:
        emit_json({"exit_code": worst, "jobs": results, "not_due": skipped})
    elif skipped and not args.quiet:
        say(f"not due by their schedule: {', '.join(skipped)}")
    return worst


def run_jobs(ctx, repo, jobs: list, args: argparse.Namespace) -> tuple[int, list[dict]]:
    """Run jobs one after the other; a failing job is reported and the next one still runs."""
    results: list[dict] = []
    worst = EXIT_OK
    for job in jobs:
        report = None
        try:
            report = run_job(repo, ctx.config, job, clock=ctx.clock, state_dir=ctx.state_dir,
                             force_full=args.full is not None, full_mode=args.full or "auto",
                             progress=_progress(args, job.name))
            if ctx.config.longterm:
                point = next(n for n in repo.manifest_names(job.name) if n.key == report.manifest_key)
                report.longterm = [asdict(p) for p in promote(repo, ctx.config, job.name, point, ctx.clock.now())]
        except Interrupted:
            raise
        except GenarcError as exc:
            log("error", exc.message, job=job.name, exit_code=exc.exit_code)
            results.append({"job": job.name, "error": exc.message, "exit_code": exc.exit_code})
            worst = max(worst, exc.exit_code)
            _after(args, ctx, job, exc.exit_code, None, exc.message)
            continue
        code = EXIT_PARTIAL if report.partial else EXIT_OK
        worst = max(worst, code)
        results.append({"job": job.name, "exit_code": code, "report": report})
        if not args.json and not args.quiet:
            say(summary(report))
        _after(args, ctx, job, code, report, "; ".join(report.warnings[:3]))
    return worst, results


def _after(args: argparse.Namespace, ctx, job, code: int, report: RunReport | None, message: str) -> None:
    """Metrics and hooks: they report on the run and can never change its outcome."""
    def warn(text: str) -> None:
        log("warning", text, job=job.name)

    if args.metrics_file:
        try:
            write_metrics(Path(args.metrics_file), job.name, code, ctx.clock.now(), report)
        except OSError as exc:
            warn(f"cannot write the metrics file {args.metrics_file}: {exc.strerror}")
    env = {"GENARC_JOB": job.name, "GENARC_EXIT_CODE": str(code), "GENARC_MESSAGE": message,
           "GENARC_REPOSITORY": ctx.config.repository_url}
    if report is not None:
        env.update(GENARC_GENERATION=str(report.generation), GENARC_POINT=str(report.point),
                   GENARC_MANIFEST=report.manifest_key, GENARC_LOCK_UNTIL=report.lock_until,
                   GENARC_KIND=report.kind_detail or report.kind)
    run_hook(job.on_success if code in (EXIT_OK, EXIT_PARTIAL) else job.on_failure, env, warn)


def _progress(args: argparse.Namespace, job_name: str = ""):
    """Warnings go to the log; on a terminal (and without --quiet or --json) a progress line updates in place."""
    line = ProgressLine(sys.stderr, job_name) if sys.stderr.isatty() and not args.quiet and not args.json else None
    output.LOG.progress = line

    def progress(event: str, data: dict) -> None:
        if event == "warning":
            log("warning", shown(data["message"]), job=job_name)
        elif line is not None:
            line.event(event, data)
            if event == "done":
                output.LOG.progress = None
    return progress
