"""What every command shares: loading the job file, opening the repository, printing."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

from .. import config as config_mod
from .. import processes
from ..backup import Progress
from ..catalog import state_dir
from ..clock import Clock, clock_from_env, parse_time
from ..config import Config
from ..engine import Engine
from ..errors import LocalIOError, UsageError
from ..history import History, Point
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


def context(args: argparse.Namespace) -> Context:
    path = config_mod.discover(getattr(args, "config", None))
    log = getattr(args, "log", None) or Log()
    config = config_mod.load(path)
    for warning in config.warnings:
        log("warning", warning)
    return Context(config, clock_from_env(), state_dir(), RequestCounts(), log, bool(getattr(args, "debug", False)))


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
    found = History.read(repo, args.job, ctx.clock)
    try:
        point = found.choose(repo, tmp, generation=args.generation, point=args.point,
                             at=parse_time_option(args.at, "--at"),
                             trusted_before=parse_time_option(args.trusted_before, "--trusted-before"))
    finally:
        log_history(ctx, found)
    return repo, found, point


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
