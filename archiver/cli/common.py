"""What every command shares: loading the job file, opening the repository, printing."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from .. import config as config_mod
from .. import processes
from ..backup import Progress
from ..catalog import state_dir
from ..clock import Clock, clock_from_env, parse_time
from ..config import Config, valid_job_name
from ..engine import Engine
from ..errors import ConfigError, LocalIOError, UsageError
from ..history import History, Point
from ..layout import manifests_prefix
from ..repository import Repository
from ..store import RequestCounts
from ..names import escape, valid_text
from ..units import human_bytes
from .output import Log

__all__ = ["escape", "human_bytes"]  # re-exported for the commands


@dataclass
class Context:
    config: Config
    clock: Clock
    state_dir: Path
    counts: RequestCounts
    log: Log
    debug: bool = False

    def open_repository(self) -> Repository:
        return Repository.open(self.config, counts=self.counts)

    def engine(self, progress: Callable[[str], Progress | None] | None = None) -> Engine:
        return Engine(self.config, clock=self.clock, state_dir=self.state_dir, counts=self.counts, log=self.log,
                      progress=progress, debug=self.debug)


READ_COMMANDS = ("list", "ls", "restore", "verify", "watch", "audit", "hold")  # a repository alone serves them


def context(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Context:
    """The job file (or the repository named by --repository), the clock, the state directory and the log.

    The read commands work from a repository URL and a password alone; the others need jobs."""
    env = os.environ if env is None else env
    log = getattr(args, "log", None) or Log()
    command = getattr(args, "command", None) or ""
    config = load_config(args, env)
    for warning in config.warnings:
        log("warning", warning)
    if command not in READ_COMMANDS:
        config.require_jobs(command)
    return Context(config, clock_from_env(), state_dir(), RequestCounts(), log, bool(getattr(args, "debug", False)))


def load_config(args: argparse.Namespace, env: Mapping[str, str]) -> Config:
    explicit = getattr(args, "config", None)
    url = getattr(args, "repository", None)
    flags = {name: getattr(args, name, None) for name in ("password_file", "password_command", "endpoint_url")}
    if url is None and not explicit and env.get("GENARC_REPOSITORY") and getattr(args, "command", "") in READ_COMMANDS:
        try:  # a job file that is found wins: a variable left set after a recovery never redirects a reader
            config_mod.discover(None, env)
        except ConfigError:  # none found: the variable names the repository
            url = env["GENARC_REPOSITORY"]
    if url is not None:
        if not url.strip():
            raise UsageError("--repository needs a URL: a path, s3://BUCKET/PREFIX or b2://BUCKET/PREFIX.")
        if explicit:
            raise UsageError("Give --config or --repository, not both: --repository reads a repository without a job "
                             "file.")
        if not flags["password_file"] and not flags["password_command"]:
            flags["password_file"] = env.get("GENARC_PASSWORD_FILE") or None
        return config_mod.from_repository(url, env=env, **flags)
    given = [f"--{name.replace('_', '-')}" for name, value in flags.items() if value]
    if given:
        raise UsageError(f"{given[0]} goes with --repository URL; with a job file, set it there.")
    return config_mod.load(config_mod.discover(explicit, env), env)


def add_point_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--generation", type=int, metavar="G", help="generation number (default: the newest)")
    point = p.add_mutually_exclusive_group()
    point.add_argument("--point", type=int, metavar="P", help="point number within the generation")
    point.add_argument("--at", metavar="TIME", help="the newest point the server stored at or before this ISO-8601 time")
    add_trusted_before(p)


def add_trusted_before(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trusted-before", metavar="TIME",
                   help="ignore every point the server stored after this ISO-8601 time (before an attack)")


def log_history(ctx: Context, found: History) -> None:
    """Say what reading a job's history ignored or chose with doubts."""
    for warning in found.warnings:
        ctx.log("warning", warning)
    found.warnings.clear()


def chosen_point(ctx: Context, args: argparse.Namespace, tmp: Path) -> tuple[Repository, History, Point]:
    """The repository, the job's history, and the point --generation/--point/--at/--trusted-before choose
    (the newest trusted one by default)."""
    repo = ctx.open_repository()
    found = history_of(ctx, repo, args.job)
    try:
        point = found.choose(repo, tmp, generation=args.generation, point=args.point,
                             at=parse_time_option(args.at, "--at"),
                             trusted_before=parse_time_option(args.trusted_before, "--trusted-before"))
    finally:
        log_history(ctx, found)
    return repo, found, point


def history_of(ctx: Context, repo: Repository, job: str) -> History:
    """The history of a job named on the command line: its name is checked before any key is built from it,
    and a job with nothing stored that the job file does not name either is a usage error."""
    if not valid_job_name(job):
        jobs_of(ctx, repo, job)
    found = History.read(repo, job, ctx.clock)
    if not found.versions:
        jobs_of(ctx, repo, job, found)
    return found


def jobs_of(ctx: Context, repo: Repository, job: str | None, history: History | None = None) -> list[str]:
    """The job asked for, or every job in the repository; a job neither the repository nor the job file knows
    is a usage error that names the real ones. ``history``: the job's history, already read."""
    if job is None:
        return repo.jobs()
    if valid_job_name(job):
        stored = history.versions if history is not None else next(
            iter(repo.store.list_versions(manifests_prefix(job))), None)  # known without listing everything
        if job in ctx.config.jobs or stored:
            return [job]
    known = ", ".join(repo.jobs()) or "none yet"  # the log escapes the whole message once
    raise UsageError(f"No job '{job}' in the repository at {ctx.config.repository_url} (jobs there: {known}).")


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")


def emit_json(value: Any) -> None:
    def default(obj: Any) -> Any:
        if is_dataclass(obj):
            return asdict(obj)
        if isinstance(obj, Path):
            return str(obj)
        return str(obj)

    json.dump(valid_text(value), sys.stdout, indent=2, sort_keys=True, default=default, ensure_ascii=True)
    sys.stdout.write("\n")


def say(message: str = "") -> None:
    print(message)




@contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    try:
        processes.sweep_temp()  # what killed genarc commands left (decrypted manifests among it)
        path = processes.make_temp(prefix.removeprefix("genarc-").rstrip("-"))
    except OSError as exc:
        raise LocalIOError(f"Cannot create a temporary directory: {exc.strerror}; set TMPDIR to a writable disk.") from exc
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def parse_time_option(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_time(text, option)
    except Exception as exc:
        raise UsageError(str(exc)) from None
