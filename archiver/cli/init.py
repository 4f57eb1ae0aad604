"""genarc init: create the repository named in the job file."""

from __future__ import annotations

import argparse

from ..errors import RepositoryExists
from ..repository import Repository
from .common import context, say

HELP = "create a new repository at the job file's repository URL"
EXAMPLE = "genarc --config configs/local.toml init"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("init", help=HELP, description=f"{HELP}.\n\nexample:\n  {EXAMPLE}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ctx = context(args)
    try:
        repo = Repository.init(ctx.config, ctx.clock.now(), counts=ctx.counts)
    except RepositoryExists:  # a second init (a setup script run twice): fine when this job file opens it
        repo = ctx.open_repository()
        say(f"repository {repo.id} at {ctx.config.repository_url} already exists, and this job file's password "
            "opens it; nothing was changed")
        return 0
    caps = repo.store.capabilities
    say(f"created repository {repo.id} at {ctx.config.repository_url}")
    say(f"encryption: {ctx.config.encryption}; store: {caps.description}")
    if not caps.ransomware_safe:
        ctx.log("warning", "this repository is not ransomware-proof: anyone with this machine's rights can delete it. "
             "Use an S3 bucket with Object Lock or B2 with File Lock for that.")
    if ctx.config.encryption == "none":
        ctx.log("warning", "encryption = \"none\": volumes and manifests are stored in the clear.")
    return 0
