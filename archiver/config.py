"""Job files: TOML, read with tomllib, validated into frozen values.

Errors name the file, the key and what is wrong. Relative paths in a job file
are taken relative to the file's own directory.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .clock import day_seconds_from_env
from .errors import ConfigError, UsageError
from .generation import RetentionPolicy
from .store import MAX_SINGLE_PUT, StoreOptions
from .tripwire import MEASURES, TripwireSettings

COMPRESSIONS = ("zstd", "deflate", "lzma2", "copy")
LOCK_MODES = ("compliance", "governance", "none")
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
               "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3}
MAX_LOCK_DAYS = 36500  # a lock date a century out is what dates, servers and the planner can all hold
FLAGS_PATH = Path("--repository")  # the Config.path of a repository named on the command line, without a job file
MAX_PASSWORD_FILE = 64 * 1024
JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def valid_job_name(job: str) -> bool:
    """A name a job file can define, or such a name with a long-term tier (``home~monthly``); anything else
    (``..``, a path, a control character, 300 letters) is never used to build a key."""
    base, _, tier = job.partition("~")
    return bool(JOB_NAME.fullmatch(base)) and (not tier or tier.isalpha() and tier.islower() and len(tier) <= 16)


@dataclass(frozen=True)
class PasswordSource:
    """Where the repository password comes from: a file, an environment variable or a command."""

    kind: str  # "file" | "env" | "command" | "none"
    value: str = ""
    origin: str = ""

    def read(self) -> str | None:
        if self.kind == "none":
            return None
        if self.kind == "env":
            secret = os.environ.get(self.value)
            if not secret:
                raise ConfigError(f"{self.origin}: environment variable {self.value} (password_env) is not set or empty.")
            return secret
        if self.kind == "file":
            try:
                with open(self.value, "rb") as fh:
                    raw = fh.read(MAX_PASSWORD_FILE + 1)
            except OSError as exc:
                raise ConfigError(f"{self.origin}: cannot read password_file {self.value}: {exc.strerror}.") from None
            if len(raw) > MAX_PASSWORD_FILE:
                raise ConfigError(f"{self.origin}: password_file {self.value} holds more than 64 KiB; it is not a "
                                  "password file.")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ConfigError(f"{self.origin}: password_file {self.value} is not UTF-8 text.") from None
            secret = text.rstrip("\r\n")
        else:
            try:
                done = subprocess.run(self.value, shell=True, capture_output=True, text=True, timeout=120)
            except subprocess.TimeoutExpired:
                raise ConfigError(f"{self.origin}: password_command did not finish within 120 s.") from None
            if done.returncode != 0:
                raise ConfigError(f"{self.origin}: password_command exited with {done.returncode}; check it by hand.")
            secret = done.stdout.rstrip("\r\n")
        if not secret.strip():
            raise ConfigError(f"{self.origin}: the password from {self.kind} {self.value} is empty or only white space; "
                              "give the repository a real password.")
        return secret


@dataclass(frozen=True)
class VolumeSettings:
    size: int = 64 * 1024**2
    compression: str = "zstd"
    level: int = 3
    max_files: int = 10000
    workers: int = 0  # 0: one per core

    @property
    def effective_workers(self) -> int:
        return self.workers or max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class FullsSettings:
    """How a new generation opens: synthetic (copy what is still live, repack the rest) unless active is due."""

    synthetic: bool = True
    copy_threshold: float = 0.5  # a volume is copied when at least this share of its bytes is still live
    active_every: int = 0  # every Nth generation opens with an active full (0: only when needed)


@dataclass(frozen=True)
class JobConfig:
    name: str
    sources: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    one_file_system: bool = False
    on_success: str | None = None  # shell commands run after the job (docs: "Hooks")
    on_failure: str | None = None
    on_suspicion: str | None = None  # run when the tripwire trips (default: on_failure, with GENARC_SUSPICIOUS=1)
    schedule: Any = None  # a timetable.Schedule, or None: due whenever `genarc run` is called


@dataclass(frozen=True)
class Config:
    path: Path
    repository_url: str
    password: PasswordSource
    encryption: str
    lock_mode: str
    retention: RetentionPolicy
    volumes: VolumeSettings
    jobs: Mapping[str, JobConfig] = field(default_factory=dict)
    store_options: StoreOptions = field(default_factory=StoreOptions)
    longterm: Mapping[str, int] = field(default_factory=dict)  # tier ("monthly" | "yearly") -> how many to keep
    fulls: "FullsSettings" = field(default_factory=lambda: FullsSettings())
    tripwire: TripwireSettings = field(default_factory=TripwireSettings)
    warnings: tuple[str, ...] = ()  # settings that work but are probably not what was meant

    def job(self, name: str) -> JobConfig:
        self.require_jobs()
        try:
            return self.jobs[name]
        except KeyError:
            known = ", ".join(sorted(self.jobs)) or "none"
            raise UsageError(f"No job named {name!r} in {self.path} (jobs: {known}).") from None

    def require_jobs(self, command: str = "") -> None:
        """Commands that back up, plan or check what the jobs ask for need jobs; reading a repository does not."""
        if self.jobs:
            return
        what = f"`genarc {command}`" if command else "this command"
        if self.from_flags:
                raise UsageError(f"{what} needs a job file with jobs; --repository alone serves list, ls, restore, "
                             "verify, watch, audit and hold.")
        raise ConfigError(f"{self.path}: {what} needs at least one job, e.g. [jobs.home] with sources = [\"/home\"]; "
                          "a job file without jobs serves only list, ls, restore, verify, watch, audit and hold.")

    @property
    def from_flags(self) -> bool:
        return self.path == FLAGS_PATH


def parse_size(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", value)
        if not match or match.group(2).lower() not in _SIZE_UNITS:
            raise ConfigError(f"{where}: {value!r} is not a size such as \"64MiB\".")
        number = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
    else:
        raise ConfigError(f"{where}: expected a size such as \"64MiB\", got {value!r}.")
    if number <= 0:
        raise ConfigError(f"{where}: the size must be positive.")
    return number


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "genarc" / "genarc.toml"


def discover(explicit: str | None, env: Mapping[str, str] | None = None) -> Path:
    """--config, then GENARC_CONFIG, then ./genarc.toml, then the XDG config dir."""
    env = os.environ if env is None else env
    if explicit:
        return Path(explicit)
    if env.get("GENARC_CONFIG"):
        return Path(env["GENARC_CONFIG"])
    local = Path("genarc.toml")
    if local.exists():
        return local
    xdg = default_config_path(env)
    if xdg.exists():
        return xdg
    raise ConfigError(
        f"No job file found: pass --config FILE, set GENARC_CONFIG, or create ./genarc.toml or {xdg}; to read a "
        "repository without one, pass --repository URL --password-file FILE."
    )


class _Reader:
    """Checks one TOML table and remembers which keys were read, to reject unknown ones."""

    def __init__(self, path: Path, table: Mapping[str, Any], prefix: str) -> None:
        self.path, self.table, self.prefix, self.seen = path, table, prefix, set()

    def where(self, key: str) -> str:
        return f"{self.path}: {self.prefix}{key}"

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        self.seen.add(key)
        if key not in self.table:
            if required:
                near = difflib.get_close_matches(key, [str(k) for k in self.table], n=1, cutoff=0.6)
                hint = f" ({self.prefix}{near[0]} is there: a misspelling?)" if near else ""
                raise ConfigError(f"{self.where(key)} is required{hint}.")
            return default
        value = self.table[key]
        if isinstance(value, bool) and kind is int:
            raise ConfigError(f"{self.where(key)}: expected a number, got {value!r}.")
        if not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise ConfigError(f"{self.where(key)}: expected {names}, got {value!r}.")
        return value

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.seen)
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(self.seen), n=1, cutoff=0.6)
            value = self.table[unknown[0]]
            if isinstance(value, dict):
                child = next(iter(value), "") if value and all(isinstance(v, dict) for v in value.values()) else ""
                hint = f"; did you mean [{self.prefix}{close[0]}{'.' + child if child else ''}]?" if close else ""
                raise ConfigError(f"{self.path}: [{self.prefix}{unknown[0]}]: unknown table{hint}")
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(f"{self.where(unknown[0])}: unknown key{hint}")


def _resolve(base: Path, value: str) -> str:
    expanded = os.path.expanduser(value)
    return expanded if os.path.isabs(expanded) else str((base / expanded).resolve())


def _schedule(reader: _Reader) -> Any:
    from . import timetable

    text = reader.get("schedule", str)
    if text is None:
        return None
    try:
        return timetable.parse(text)
    except ValueError as exc:
        raise ConfigError(f"{reader.where('schedule')}: {exc}.") from None


def _str_list(reader: _Reader, key: str, required: bool = False) -> tuple[str, ...]:
    values = reader.get(key, list, [], required=required)
    if not all(isinstance(v, str) and v for v in values):
        raise ConfigError(f"{reader.where(key)}: expected a list of non-empty strings.")
    return tuple(values)


def load(path: Path, env: Mapping[str, str] | None = None) -> Config:
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"Job file {path} does not exist.") from None
    except OSError as exc:
        raise ConfigError(f"Cannot read job file {path}: {exc.strerror}.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}.") from None
    return parse(raw, path, env)


def parse(raw: Mapping[str, Any], path: Path, env: Mapping[str, str] | None = None) -> Config:
    base = path.resolve().parent
    top = _Reader(path, raw, "")
    repo = _Reader(path, top.get("repository", dict, required=True), "repository.")
    url, password, encryption, lock_mode, options = _repository(repo, base, path)
    retention, longterm = _retention(_Reader(path, top.get("retention", dict, {}), "retention."), env)
    fulls = _fulls(_Reader(path, top.get("fulls", dict, {}), "fulls."))
    volumes = _volumes(_Reader(path, top.get("volumes", dict, {}), "volumes."))
    tripwire = _tripwire(_Reader(path, top.get("tripwire", dict, {}), "tripwire."))
    jobs = _jobs(top, path, base)
    top.finish()
    if not options.retention_updates and volumes.size > MAX_SINGLE_PUT:
        raise ConfigError(f"{path}: volumes.size above 5GiB needs a multipart upload, which retention_updates = false "
                          "cannot lock on servers that drop lock headers; choose 5GiB or less.")
    warnings = password_warnings(password, f"{path}: repository.password_file")
    if retention.generation_days > retention.keep_days:
        warnings.append(f"{path}: retention.generation_days ({retention.generation_days}) is longer than keep_days "
                        f"({retention.keep_days}): every point is kept far longer than asked, and storage grows with it; "
                        "`genarc plan` suggests a span")
    return Config(path, url, password, encryption, lock_mode, retention, volumes, jobs, options, longterm, fulls,
                  tripwire, tuple(warnings))


def password_warnings(password: PasswordSource, where: str) -> list[str]:
    """A password file others can read is the repository's key in their hands: say so (it still works)."""
    if password.kind != "file":
        return []
    try:
        mode = os.stat(password.value).st_mode
    except OSError:
        return []  # reading it says what is wrong, when it is needed
    if stat.S_ISREG(mode) and mode & 0o077:  # a pipe or /dev/stdin has no say in it
        return [f"{where} {password.value} is open to users other than its owner (mode {mode & 0o777:o}); "
                f"run `chmod 600 {password.value}`"]
    return []


def from_repository(url: str, *, password_file: str | None = None, password_command: str | None = None,
                    endpoint_url: str | None = None, region: str | None = None, profile: str | None = None,
                    env: Mapping[str, str] | None = None) -> Config:
    """A Config for the read commands from a repository URL and a password alone: no job file, no jobs.

    Without a password the repository must have been created with encryption = "none"."""
    if "://" not in url:
        url = os.path.abspath(os.path.expanduser(url))
    given = [(k, v) for k, v in (("file", password_file), ("command", password_command)) if v]
    if len(given) > 1:
        raise UsageError("Give one of --password-file and --password-command, not both.")
    origin = "--repository"
    if given:
        kind, value = given[0]
        password = PasswordSource(kind, os.path.abspath(os.path.expanduser(value)) if kind == "file" else value,
                                  f"--password-{kind}")
    else:
        password = PasswordSource("none", origin=origin)
    options = StoreOptions(endpoint_url, region, profile)
    retention = RetentionPolicy(keep_days=30, generation_days=7, margin_days=1, day_seconds=day_seconds_from_env(env))
    return Config(FLAGS_PATH, url, password, "aes256" if given else "none", "compliance", retention, VolumeSettings(),
                  {}, options, warnings=tuple(password_warnings(password, "--password-file")))


def _repository(repo: _Reader, base: Path, path: Path) -> tuple[str, PasswordSource, str, str, StoreOptions]:
    url = repo.get("url", str, required=True)
    if "://" not in url:
        url = _resolve(base, url)
    elif url.startswith("file://"):
        url = "file://" + _resolve(base, url[len("file://"):])
    encryption = repo.get("encryption", str, "aes256")
    if encryption not in ("aes256", "none"):
        raise ConfigError(f"{repo.where('encryption')}: must be \"aes256\" or \"none\", got {encryption!r}.")
    sources = [(k, repo.get(k, str)) for k in ("password_file", "password_env", "password_command")]
    given = [(k, v) for k, v in sources if v]
    origin = f"{path}: repository"
    if encryption == "none":
        if given:
            raise ConfigError(f"{repo.where(given[0][0])}: encryption = \"none\" takes no password.")
        password = PasswordSource("none", origin=origin)
    else:
        if len(given) != 1:
            raise ConfigError(
                f"{repo.where('password_file')}: give exactly one of password_file, password_env or "
                "password_command (or set encryption = \"none\" explicitly)."
            )
        key, value = given[0]
        kind = key.removeprefix("password_")
        password = PasswordSource(kind, _resolve(base, value) if kind == "file" else value, origin)
    options = StoreOptions(repo.get("endpoint_url", str), repo.get("region", str), repo.get("profile", str),
                           repo.get("retention_updates", bool, True))
    lock_mode = repo.get("lock_mode", str, "compliance")
    if lock_mode not in LOCK_MODES:
        raise ConfigError(f"{repo.where('lock_mode')}: must be one of {', '.join(LOCK_MODES)}, got {lock_mode!r}.")
    repo.finish()
    return url, password, encryption, lock_mode, options


def _retention(ret: _Reader, env: Mapping[str, str] | None) -> tuple[RetentionPolicy, dict[str, int]]:
    numbers = {}
    for key, default in (("keep_days", 30), ("generation_days", 7), ("margin_days", 1)):
        value = ret.get(key, int, default)
        low = 0 if key == "margin_days" else 1
        if not low <= value <= MAX_LOCK_DAYS:
            raise ConfigError(f"{ret.where(key)}: must be between {low} and {MAX_LOCK_DAYS} days, got {value}.")
        numbers[key] = value
    if sum(numbers.values()) > MAX_LOCK_DAYS:
        raise ConfigError(f"{ret.where('keep_days')}: keep_days + generation_days + margin_days is how long every "
                          f"object is locked, and must stay within {MAX_LOCK_DAYS} days (100 years); got "
                          f"{sum(numbers.values())}.")
    longterm = {}
    for tier, unit in (("monthly", 31), ("yearly", 366)):
        count = ret.get(f"keep_{tier}", int, 0)
        if not 0 <= count <= MAX_LOCK_DAYS // unit:
            raise ConfigError(f"{ret.where(f'keep_{tier}')}: must be 0 (off) up to {MAX_LOCK_DAYS // unit}, got {count}.")
        if count:
            longterm[tier] = count
    ret.finish()
    return RetentionPolicy(day_seconds=day_seconds_from_env(env), **numbers), longterm


def _fulls(fl: _Reader) -> FullsSettings:
    fulls = FullsSettings(synthetic=fl.get("synthetic", bool, True),
                          copy_threshold=float(fl.get("copy_threshold", (int, float), 0.5)),
                          active_every=fl.get("active_every", int, 0))
    if not 0.0 <= fulls.copy_threshold <= 1.0:
        raise ConfigError(f"{fl.where('copy_threshold')}: a share between 0 and 1, got {fulls.copy_threshold}.")
    if fulls.active_every < 0:
        raise ConfigError(f"{fl.where('active_every')}: 0 (never) or a number of generations.")
    fl.finish()
    return fulls


def _tripwire(tw: _Reader) -> TripwireSettings:
    defaults = TripwireSettings()
    values: dict[str, Any] = {"enabled": tw.get("enabled", bool, True),
                              "protect_days": tw.get("protect_days", int, defaults.protect_days),
                              "min_files": tw.get("min_files", int, defaults.min_files)}
    if not 1 <= values["protect_days"] <= MAX_LOCK_DAYS:
        raise ConfigError(f"{tw.where('protect_days')}: must be between 1 and {MAX_LOCK_DAYS} days, "
                          f"got {values['protect_days']}.")
    if not 1 <= values["min_files"] <= 1_000_000_000:
        raise ConfigError(f"{tw.where('min_files')}: must be at least 1, got {values['min_files']}.")
    for measure in MEASURES:
        share = float(tw.get(measure, (int, float), getattr(defaults, measure)))
        if not 0.0 < share <= 1.0:
            raise ConfigError(f"{tw.where(measure)}: a share of the files above 0 and at most 1, got {share}.")
        values[measure] = share
    tw.finish()
    return TripwireSettings(**values)


def _volumes(vol: _Reader) -> VolumeSettings:
    compression = vol.get("compression", str, "zstd")
    if compression not in COMPRESSIONS:
        raise ConfigError(f"{vol.where('compression')}: must be one of {', '.join(COMPRESSIONS)}, got {compression!r}.")
    level_default = {"zstd": 3, "lzma2": 1}.get(compression, 0)
    level = vol.get("level", int, level_default)
    limits = {"zstd": (1, 22), "lzma2": (0, 9)}
    if compression in limits and not limits[compression][0] <= level <= limits[compression][1]:
        low, high = limits[compression]
        raise ConfigError(f"{vol.where('level')}: {compression} takes a level from {low} to {high}, got {level}.")
    volumes = VolumeSettings(
        size=parse_size(vol.get("size", (str, int), "64MiB"), vol.where("size")),
        compression=compression,
        level=level,
        max_files=vol.get("max_files", int, 10000),
        workers=vol.get("workers", int, 0),
    )
    if not 1 <= volumes.max_files <= 1_000_000 or not 0 <= volumes.workers <= 256:
        raise ConfigError(f"{vol.where('max_files')}: max_files must be 1 to 1000000 and workers 0 (one per core) "
                          "to 256.")
    if not 1024 <= volumes.size <= 1024**4:
        raise ConfigError(f"{vol.where('size')}: a volume size from 1KiB to 1TiB, got {volumes.size} bytes.")
    vol.finish()
    return volumes


def _jobs(top: _Reader, path: Path, base: Path) -> dict[str, JobConfig]:
    jobs_table = top.get("jobs", dict, {})  # none: a job file for the read commands (disaster recovery)
    jobs = {}
    for name, table in jobs_table.items():
        if not JOB_NAME.fullmatch(name):
            raise ConfigError(f"{path}: jobs.{name}: a job name uses letters, digits, '.', '_' or '-'.")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: jobs.{name}: expected a table.")
        job = _Reader(path, table, f"jobs.{name}.")
        srcs = tuple(_resolve(base, s) for s in _str_list(job, "sources", required=True))
        if not srcs:
            raise ConfigError(f"{job.where('sources')}: list at least one source directory.")
        jobs[name] = JobConfig(
            name=name,
            sources=srcs,
            exclude=_str_list(job, "exclude"),
            one_file_system=job.get("one_file_system", bool, False),
            on_success=job.get("on_success", str),
            on_failure=job.get("on_failure", str),
            on_suspicion=job.get("on_suspicion", str),
            schedule=_schedule(job),
        )
        job.finish()
    return jobs
