"""The command line: a thin shell over the archiver library. ``main(argv)`` returns the exit code."""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import Sequence

from .. import interrupt
from . import output
from ..errors import EXIT_CODES, EXIT_INTERNAL, GenarcError, Interrupted
from . import acknowledge, audit, catalog, daemon, doctor, hold, init, list as list_cmd, ls, plan, policy, restore, run, verify, watch

COMMANDS = (init, run, daemon, list_cmd, ls, restore, verify, audit, hold, acknowledge, catalog, plan, doctor, policy,
            watch)


NAMES_HELP = """names in output:
  A file name may hold any byte but / and NUL, so genarc shows every name, and every message
  holding one, escaped one way; no name can forge a line. In that form \\\\ is a backslash;
  \\n, \\t and \\r are newline, tab and carriage return; \\xNN is a byte that is not UTF-8
  (NN in hex); \\u{N} is any other character that is not printable (ESC is \\u{1b}). Every
  backslash starts one of these forms, so the text is unambiguous. In --json, a path or link
  target is exact text in "path" / "target"; when it is not valid UTF-8, that text has U+FFFD
  for the bad bytes and "path_bytes" / "target_bytes" hold the exact bytes in base64. Other
  JSON text that holds such a name shows it escaped as above.
"""


def build_parser() -> argparse.ArgumentParser:
    codes = "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())
    parser = argparse.ArgumentParser(
        prog="genarc",
        description="Generational full-copy archiver: 7z volumes, generations that expire whole, a client that never deletes.",
        epilog=f"environment:\n  GENARC_CONFIG        job file (after --config)\n"
               f"  GENARC_NOW           pin 'now' (ISO-8601) for simulations and tests\n"
               f"  GENARC_DAY_SECONDS   length of a retention day in seconds (testing only)\n\n{NAMES_HELP}"
               f"\nexit codes:\n{codes}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE", help="job file (default: $GENARC_CONFIG, ./genarc.toml, "
                        "then $XDG_CONFIG_HOME/genarc/genarc.toml)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--log-format", choices=["human", "json"], default="human",
                        help="how warnings and errors are written to stderr (json: one object per line)")
    parser.add_argument("--log-file", metavar="PATH", help="also append every log line to this file")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    previous = interrupt.install()
    log = args.log = output.Log(args.log_format, args.log_file)
    try:
        return int(args.func(args))
    except GenarcError as exc:
        if args.debug:
            traceback.print_exc()
        log("error", exc.message, exit_code=exc.exit_code)
        return exc.exit_code
    except KeyboardInterrupt:
        log("error", "interrupted; nothing from the interrupted run was committed.", exit_code=Interrupted.exit_code)
        return Interrupted.exit_code
    except Exception as exc:  # a bug: one line, unless --debug
        if args.debug:
            traceback.print_exc()
        log("error", f"internal error: {type(exc).__name__}: {exc}. Rerun with --debug and report it.",
            exit_code=EXIT_INTERNAL)
        return EXIT_INTERNAL
    finally:
        interrupt.restore(previous)
        log.close()


def entry_point() -> None:
    sys.exit(main())
