"""genarc's error tree and its documented exit codes.

Every error a user can meet is a :class:`GenarcError` subclass. Its message is
one sentence saying what happened and what to do; its ``exit_code`` is stable
because cron jobs and monitoring read it. The table :data:`EXIT_CODES` is the
single source for the README and ``docs/design.md``.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_BUSY = 4
EXIT_WRONG_PASSWORD = 5
EXIT_PERMISSION = 6
EXIT_INTEGRITY = 7
EXIT_STORE_UNAVAILABLE = 8
EXIT_LOCAL_IO = 9
EXIT_UNSAFE = 10
EXIT_SUSPICIOUS = 11
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "ok: everything asked for was done",
    EXIT_PARTIAL: "partial: the run committed, but some entries were unreadable, vanished, kept changing or could not "
                  "be recorded; or a restore refused entries because of what already sat in the target (see warnings)",
    EXIT_USAGE: "usage: bad command line, unknown job, generation or point, or a restore target that would be overwritten",
    EXIT_CONFIG: "config error: the job file is missing or invalid, or a source directory does not exist",
    EXIT_BUSY: "busy: another genarc run holds the repository lock",
    EXIT_WRONG_PASSWORD: "wrong password: the repository password does not match",
    EXIT_PERMISSION: "auth or permission: the store refused the credentials or the operation",
    EXIT_INTEGRITY: "integrity: an object or manifest is missing, corrupt or fails its authentication, or a restore "
                    "point holds entries that are unsafe to restore",
    EXIT_STORE_UNAVAILABLE: "store unavailable: the repository cannot be reached or is not initialised",
    EXIT_LOCAL_IO: "local I/O: the local disk is full or a local file (or standard output) cannot be written",
    EXIT_UNSAFE: "unsafe: `genarc doctor`, `genarc watch` or `genarc audit` found the repository not ransomware-safe, not healthy or written to by someone else",
    EXIT_SUSPICIOUS: "suspicious: the run committed, but its changes look like ransomware (the tripwire); the last "
                     "clean point was protected. Check the source, then `genarc acknowledge JOB`",
    EXIT_INTERNAL: "internal error: a bug in genarc; rerun with --debug and report the traceback",
    EXIT_INTERRUPTED: "interrupted: stopped by SIGINT or SIGTERM; nothing was committed by the interrupted run",
}


class GenarcError(Exception):
    """Root of genarc's errors. The message is shown to the user as is."""

    exit_code: int = EXIT_INTERNAL

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or self.__class__.__name__).strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class UsageError(GenarcError):
    """The command line asks for something that does not exist."""

    exit_code = EXIT_USAGE


class ConfigError(GenarcError):
    """The configuration is invalid."""

    exit_code = EXIT_CONFIG


class RepositoryExists(ConfigError):
    """`genarc init` found a repository at the URL already; nothing was changed."""


class BusyError(GenarcError):
    """Another genarc run holds the repository lock."""

    exit_code = EXIT_BUSY


class WrongPasswordError(GenarcError):
    """The password does not match this repository; check the job's password source."""

    exit_code = EXIT_WRONG_PASSWORD


class PermissionDenied(GenarcError):
    """The store refused the operation with these credentials."""

    exit_code = EXIT_PERMISSION


class IntegrityError(GenarcError):
    """An object or manifest is corrupt, missing or fails its authentication."""

    exit_code = EXIT_INTEGRITY


class StoreError(GenarcError):
    """The store failed; ``transient`` tells the retry layer whether to try again."""

    exit_code = EXIT_STORE_UNAVAILABLE
    transient = False


class TransientStoreError(StoreError):
    """A store request failed in a way that may succeed if retried."""

    transient = True


class ObjectNotFound(IntegrityError):
    """An object the repository needs is missing from the store."""


class ObjectExists(StoreError):
    """A key that genarc writes once already exists; genarc never overwrites."""


class RepositoryNotFound(StoreError):
    """No genarc repository at this location; run `genarc init` first."""


class LocalIOError(GenarcError):
    """A local file could not be read or written."""

    exit_code = EXIT_LOCAL_IO


class Interrupted(GenarcError):
    """The run was interrupted; nothing it wrote was committed."""

    exit_code = EXIT_INTERRUPTED
