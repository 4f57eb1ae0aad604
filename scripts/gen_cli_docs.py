#!/usr/bin/env python3
"""Write docs/cli.md from the argument parser, so the CLI reference cannot drift.

    python scripts/gen_cli_docs.py          # rewrite docs/cli.md
    python scripts/gen_cli_docs.py --check  # exit 1 if docs/cli.md is stale
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def render() -> str:
    os.environ["COLUMNS"] = "100"
    from archiver.cli import build_parser

    parser = build_parser()
    parts = ["# genarc command reference", "", "Generated from the argument parser by `scripts/gen_cli_docs.py`; "
             "do not edit by hand.", "", "```", parser.format_help().rstrip(), "```", ""]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        parts += [f"## genarc {name}", "", "```", command.format_help().rstrip(), "```", ""]
        nested = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
        for action in nested:
            for child_name, child in action.choices.items():
                parts += [f"### genarc {name} {child_name}", "", "```", child.format_help().rstrip(), "```", ""]
    return "\n".join(parts)


def main() -> int:
    target = ROOT / "docs" / "cli.md"
    text = render()
    if "--check" in sys.argv:
        if not target.exists() or target.read_text() != text:
            print("docs/cli.md is stale: run python scripts/gen_cli_docs.py", file=sys.stderr)
            return 1
        return 0
    target.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
