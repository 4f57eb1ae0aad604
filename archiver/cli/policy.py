"""genarc policy: what to give the backup machine, and a read-only watchdog."""

from __future__ import annotations

import argparse

from .. import policy as policy_mod
from ..longterm import job_names, policy_of, protect_cap_days
from ..store import split_bucket_url
from .common import add_json, context, emit_json, say

HELP = "print the IAM policy (S3) or key command (B2) for the backup machine and a read-only watchdog"
EXAMPLE = "genarc policy > backup-policy.json"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("policy", help=HELP, description=f"{HELP}.\n\nexample:\n  {EXAMPLE}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--watchdog", action="store_true", help="print the read-only watchdog policy instead")
    add_json(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ctx = context(args)
    url = ctx.config.repository_url
    scheme = url.split("://", 1)[0] if "://" in url else "file"
    if scheme == "file":
        say("A local repository has no access policy: anyone with this machine's rights can delete it.")
        say("Use an s3:// or b2:// repository for backups an attacker on this machine cannot destroy.")
        return 0
    bucket, prefix = split_bucket_url(url)
    location = policy_mod.Location(bucket, prefix)
    lock = ctx.config.lock_mode != "none"
    if scheme == "s3":
        document = (policy_mod.s3_watchdog_policy(location) if args.watchdog
                    else policy_mod.s3_backup_policy(location, [policy_of(ctx.config, j) for j in job_names(ctx.config)],
                                                     ctx.config.store_options.retention_updates,
                                                     protect_cap_days(ctx.config)))
        if args.json:
            emit_json(document)
        else:
            say(policy_mod.render(document))
        return 0
    caps = (policy_mod.B2_WATCHDOG_CAPABILITIES if args.watchdog else policy_mod.b2_backup_capabilities(lock))
    command = policy_mod.b2_key_command(location, "genarc-watchdog" if args.watchdog else "genarc-backup", caps)
    if args.json:
        emit_json({"command": command, "capabilities": caps, "bucket": bucket, "name_prefix": prefix})
    else:
        say(command)
    return 0
