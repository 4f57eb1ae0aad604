"""The command line: a thin shell over the archiver library. ``main(argv)`` returns the exit code."""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import Sequence

from .. import __version__, interrupt
from . import output
from ..errors import EXIT_CODES, EXIT_INTERNAL, EXIT_USAGE, GenarcError, Interrupted
from .common import READ_COMMANDS
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
    parser.add_argument("--version", action="version", version=f"genarc {__version__}")
    add_global_options(parser, None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    for name, child in sub.choices.items():  # the same options after the command name: `genarc list --repository U`
        add_global_options(child, argparse.SUPPRESS, shown=name in READ_COMMANDS)
    return parser


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def add_global_options(parser: argparse.ArgumentParser, default: object, shown: bool = True) -> None:
    """Options every command takes, before or after its name. On a command's parser they default to SUPPRESS,
    so a value given before the command name is kept; its help shows them only for the read commands, which
    --repository serves."""
    def add(*flags: str, **kwargs: object) -> None:
        if default is argparse.SUPPRESS:
            kwargs["default"] = argparse.SUPPRESS
        if not shown:
            kwargs["help"] = argparse.SUPPRESS
        group.add_argument(*flags, **kwargs)  # type: ignore[arg-type]

    group = parser.add_argument_group("options of every command (also before the command name)")
    add("--config", metavar="FILE", help="job file (default: $GENARC_CONFIG, ./genarc.toml, "
        "then $XDG_CONFIG_HOME/genarc/genarc.toml)")
    add("--repository", metavar="URL", help="read this repository without a job file (default: $GENARC_REPOSITORY); "
        "for list, ls, restore, verify, watch, audit and hold")
    add("--password-file", metavar="FILE", help="with --repository: the repository password, in this file "
        "(default: $GENARC_PASSWORD_FILE)")
    add("--password-command", metavar="CMD", help="with --repository: a command that prints the password")
    add("--endpoint-url", metavar="URL", help="with --repository: the S3 endpoint (any S3-compatible server)")
    add("--debug", action="store_true", help="show tracebacks")
    add("--log-format", choices=["human", "json"], help="how warnings and errors are written to stderr "
        "(json: one object per line; default human)")
    add("--log-file", metavar="PATH", help="also append every log line to this file")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        late = getattr(args, "late_positional", None)  # `genarc ls JOB --point 2 PATH`: a positional after options
        if late and getattr(args, late) is None and (len(extra) == 1 and not extra[0].startswith("-")
                                                     or len(extra) == 2 and extra[0] == "--"):
            setattr(args, late, extra[-1])
            extra = []
        if extra:
            own = _subparsers(parser).choices.get(getattr(args, "command", None) or "", parser)
            own.error(f"unrecognized arguments: {' '.join(extra)}")  # with the command's own usage line
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.command is None:  # bare `genarc`: what it can do, not a usage error
        parser.print_help()
        return EXIT_USAGE
    previous = interrupt.install()
    log = args.log = output.Log(args.log_format or "human", args.log_file)
    stdout = output.GuardedStdout.install()
    try:
        code = int(args.func(args))
        return stdout.verdict(code, log)
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
        stdout.uninstall()
        interrupt.restore(previous)
        log.close()


def entry_point() -> None:
    sys.exit(main())
