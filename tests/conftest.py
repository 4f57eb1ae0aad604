"""Shared fixtures: a workspace with a source tree, a job file, and genarc driven through main(argv)."""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import stat
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from archiver.cli import main

@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self):
        return json.loads(self.out)


@dataclass
class Workspace:
    root: Path
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture
    extra: dict = field(default_factory=dict)

    @property
    def src(self) -> Path:
        return self.root / "src"

    @property
    def repo(self) -> Path:
        return self.root / "repo"

    @property
    def config(self) -> Path:
        return self.root / "genarc.toml"

    def write_config(self, *, password: str | None = "correct horse battery staple", compression: str = "zstd",
                     volume_size: str = "4MiB", workers: int = 2, exclude: list[str] | None = None,
                     keep_days: int = 30, generation_days: int = 7, margin_days: int = 1,
                     sources: list[str] | None = None, max_files: int = 10000, level: int | None = None,
                     url: str | None = None, endpoint_url: str | None = None, lock_mode: str | None = None,
                     repository_extra: tuple[str, ...] = ()) -> Path:
        pw = self.root / "password"
        if password is not None:
            pw.write_text(password + "\n")
            pw.chmod(0o600)  # as the example job file asks; a file others can read is warned about
        repo_lines = [f'url = "{url or self.repo}"']
        if endpoint_url:
            repo_lines += [f'endpoint_url = "{endpoint_url}"', 'region = "us-east-1"']
        if lock_mode:
            repo_lines.append(f'lock_mode = "{lock_mode}"')
        repo_lines += repository_extra
        repo_lines.append(f'password_file = "{pw}"' if password is not None else 'encryption = "none"')
        srcs = sources or [str(self.src)]
        level_line = f"level = {level}\n" if level is not None else ""
        self.config.write_text(
            "[repository]\n" + "\n".join(repo_lines) + "\n\n"
            f"[retention]\nkeep_days = {keep_days}\ngeneration_days = {generation_days}\nmargin_days = {margin_days}\n\n"
            f'[volumes]\nsize = "{volume_size}"\ncompression = "{compression}"\n{level_line}workers = {workers}\nmax_files = {max_files}\n\n'
            f"[jobs.data]\nsources = {json.dumps(srcs)}\nexclude = {json.dumps(exclude or [])}\n"
        )
        return self.config

    def genarc(self, *argv: str, now: str | None = None, job_file: bool = True) -> Result:
        """genarc with this workspace's job file (``job_file=False``: the command line as given, nothing added)."""
        self.capsys.readouterr()
        if now is not None:
            self.monkeypatch.setenv("GENARC_NOW", now)
        code = main(["--config", str(self.config), *argv] if job_file else list(argv))
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> Workspace:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("GENARC_NOW", raising=False)
    monkeypatch.delenv("GENARC_CONFIG", raising=False)
    monkeypatch.delenv("GENARC_DAY_SECONDS", raising=False)
    ws = Workspace(tmp_path, monkeypatch, capsys)
    ws.src.mkdir()
    return ws


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_DAC_BITS = (1 << 1) | (1 << 2)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH


def _set_dac(enabled: bool, bits: int = _DAC_BITS) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    header, data = _CapHeader(0x20080522, 0), (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    data[0].effective = (data[0].effective | bits) if enabled else (data[0].effective & ~bits)
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


@contextmanager
def without_sys_admin() -> Iterator[None]:
    """Root without CAP_SYS_ADMIN: it can no longer set trusted.* extended attributes, as an ordinary user cannot."""
    if os.geteuid() != 0:
        yield
        return
    _set_dac(False, 1 << 21)
    try:
        yield
    finally:
        _set_dac(True, 1 << 21)


@contextmanager
def unprivileged() -> Iterator[None]:
    """Make file permissions bind even when the tests run as root.

    Root reads any file through CAP_DAC_OVERRIDE; dropping it (and CAP_DAC_READ_SEARCH) from
    this thread's effective set, which forked workers inherit, makes a mode-000 file really
    unreadable, as it is for any ordinary user.
    """
    if os.geteuid() != 0:
        yield
        return
    _set_dac(False)
    try:
        yield
    finally:
        _set_dac(True)


def readable(path: Path) -> bool:
    try:
        with open(path, "rb"):
            return True
    except OSError:
        return False


def history_of(repo, job: str = "data", now: str = "2099-01-01T00:00:00Z"):
    """A job's history as a simulation reads it: an injected clock, so times are the claimed ones."""
    from archiver.clock import FixedClock, parse_time
    from archiver.history import History

    return History.read(repo, job, FixedClock(parse_time(now)))


def snapshot(root: Path, skip_unreadable: bool = True) -> dict[str, tuple]:
    """Everything a restore must reproduce: type, mode, mtime and content (or link target)."""
    result: dict[str, tuple] = {}

    def record(path: Path, rel: str) -> None:
        st = path.lstat()
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            result[rel] = ("symlink", os.readlink(path), st.st_mtime_ns)
        elif stat.S_ISDIR(st.st_mode):
            result[rel] = ("dir", mode, st.st_mtime_ns)
        elif stat.S_ISREG(st.st_mode):
            if skip_unreadable and not readable(path):
                return
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            result[rel] = ("file", mode, st.st_mtime_ns, st.st_size, digest)

    record(root, ".")
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            record(full, str(full.relative_to(root)))
    return result


def restored_root(target: Path, source: Path) -> Path:
    return target / str(source).lstrip("/")


@pytest.fixture(scope="session")
def ceph():
    """Ceph RADOS Gateway, started by scripts/ceph-rgw.sh. Skipped when its packages are not installed."""
    from tests.ceph import CephGateway

    gateway = CephGateway.start_or_skip()
    yield gateway
    gateway.stop()
