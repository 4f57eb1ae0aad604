"""genarc catalog rebuild: rebuild the local cache from the repository's manifests."""

from __future__ import annotations

import argparse

from ..backup import rebuild_catalog
from ..catalog import Catalog
from ..errors import IntegrityError
from ..history import History
from .common import context, log_history, say, workdir

HELP = "rebuild the local catalog (a cache) from the repository's manifests"
EXAMPLE = "genarc catalog rebuild home"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("catalog", help="manage the local catalog cache",
                              description=f"manage the local catalog cache.\n\nexample:\n  {EXAMPLE}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="catalog_command", required=True, metavar="COMMAND")
    r = sub.add_parser("rebuild", help=HELP, description=f"{HELP}.\n\nexample:\n  {EXAMPLE}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("jobs", nargs="*", metavar="JOB", help="jobs to rebuild (default: all in the job file)")
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ctx = context(args)
    repo = ctx.open_repository()
    for name in args.jobs or sorted(ctx.config.jobs):
        catalog = Catalog(Catalog.location(ctx.state_dir, repo.id, name))
        try:
            with workdir("genarc-catalog-") as tmp:
                history = History.read(repo, name, ctx.clock)
                newest = history.newest(repo, tmp)
                log_history(ctx, history)
                if newest is None:
                    catalog.tree.clear()
                    catalog.set_meta({"tip_key": None})
                    say(f"{name}: no trusted restore points; catalog emptied")
                    continue
                if not rebuild_catalog(repo, catalog, history, newest, tmp):
                    raise IntegrityError(f"The newest chain of job {name} is broken; run `genarc verify {name}` for details.")
            say(f"{name}: catalog rebuilt from {newest.key} ({catalog.tree.count()} entries)")
        finally:
            catalog.close()
    return 0
