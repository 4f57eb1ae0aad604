"""genarc ls: the files of one restore point."""

from __future__ import annotations

import argparse
import stat as stat_mod
from datetime import datetime, timezone

from .. import chain as chain_mod
from ..catalog import path_name
from ..catalog import link_target
from ..errors import UsageError
from ..names import lossless
from .common import add_json, add_point_arguments, chosen_point, context, emit_json, escape, say, workdir

HELP = "list the files of a restore point (the newest unless chosen)"
EXAMPLE = "genarc ls home --generation 3 --point 2 home/alice/docs"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("ls", help=HELP, description=f"{HELP}.\n\nexample:\n  {EXAMPLE}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("job", metavar="JOB")
    p.add_argument("path", nargs="?", metavar="PATH", help="only this path and what is below it")
    add_point_arguments(p)
    add_json(p)
    p.set_defaults(func=run, late_positional="path")  # PATH may also follow the options


def run(args: argparse.Namespace) -> int:
    ctx = context(args)
    prefix = (args.path or "").strip("/")
    rows, matched = [], 0
    with workdir("genarc-ls-") as tmp, chain_mod.scratch_tree(tmp, "ls.sqlite") as tree:
        repo, history, point = chosen_point(ctx, args, tmp)
        chain_mod.replay(repo, history, point, tree, tmp, scope=chain_mod.Scope.of([prefix]) if prefix else None)
        name = point.name
        for row in tree.rows():
            path = path_name(row["path"])
            if prefix and path != prefix and not path.startswith(prefix + "/"):
                continue
            matched += 1
            target = link_target(row["target"])
            item = {**lossless(path), "type": row["type"], "size": row["size"], "mode": oct(row["mode"]),
                    "mtime": datetime.fromtimestamp(row["mtime_ns"] / 1e9, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
            if target is not None:
                item.update(lossless(target, "target"))
            if row["torn"]:
                item["changed_while_read"] = True
            if row["link"] is not None:
                item.update(lossless(path_name(row["link"]), "hardlink"))  # another name of the same file
            if args.json:
                rows.append(item)
            else:
                kind = {"dir": stat_mod.S_IFDIR, "symlink": stat_mod.S_IFLNK}.get(row["type"], stat_mod.S_IFREG)
                line = f"{stat_mod.filemode(kind | row['mode'])} {row['size']:>12} {item['mtime']} {escape(path)}"
                say(line + (f" -> {escape(target)}" if target is not None else "")
                    + (f" => {escape(path_name(row['link']))}" if row["link"] is not None else "")
                    + ("  (changed while read: stored as last read)" if row["torn"] else ""))
    if prefix and not matched:
        raise UsageError(f"Nothing at {prefix} in point {name.gseq}.{name.pseq} of job '{args.job}'; stored paths are "
                         f"absolute without the leading slash (`genarc ls {args.job}` lists them all).")
    if args.json:
        got = repo.store.counts.snapshot()
        emit_json({"job": args.job, "generation": name.gseq, "point": name.pseq, "entries": rows,
                   "read": {"objects": got["gets"], "bytes": got["bytes_got"]}})
    return 0
