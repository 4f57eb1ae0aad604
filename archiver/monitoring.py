"""What a run tells the outside world: a Prometheus textfile and the on_success / on_failure hooks.

Neither can fail a backup: a metrics file that cannot be written and a hook that fails are
logged as warnings, and the run's exit code stays what the backup itself earned.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from .clock import parse_time

METRICS = {
    "genarc_last_success_timestamp_seconds": "When the job last committed a restore point (Unix time).",
    "genarc_last_run_timestamp_seconds": "When the job last ran, whatever its outcome (Unix time).",
    "genarc_last_run_exit_code": "Exit code of the job's last run (0 ok, 1 partial, see docs).",
    "genarc_last_run_duration_seconds": "Wall time of the job's last run.",
    "genarc_last_run_uploaded_bytes": "Bytes uploaded by the last run.",
    "genarc_last_run_packed_bytes": "Source bytes packed into volumes by the last run.",
    "genarc_last_run_files_scanned": "Entries scanned by the last run.",
    "genarc_last_run_volumes": "Volumes uploaded by the last run.",
    "genarc_last_run_deletes": "Delete requests the backup client sent (always 0).",
    "genarc_generation_age_seconds": "Age of the newest generation at the last run.",
    "genarc_lock_until_timestamp_seconds": "Retain-until date of the newest restore point's objects (Unix time; absent where nothing is locked).",
    "genarc_suspicion_score": "The tripwire's score of the last run (1 or more trips it).",
    "genarc_suspicious": "1 while a tripwire trip is unacknowledged (the run exits 11), else 0.",
    "genarc_protected_until_timestamp_seconds": "Until when the tripwire keeps the last clean point locked (Unix time).",
}
_LINE = re.compile(r'^(genarc_[a-z_]+)\{job="((?:[^"\\]|\\.)*)"\} (\S+)$')


def _read(path: Path) -> dict[tuple[str, str], float]:
    values: dict[tuple[str, str], float] = {}
    try:
        text = path.read_text()
    except OSError:
        return values
    for line in text.splitlines():
        match = _LINE.match(line)
        if match:
            values[(match[1], match[2])] = float(match[3])
    return values


def _ts(text: str | None) -> float | None:
    return parse_time(text).timestamp() if text else None


def write_metrics(path: Path, job: str, exit_code: int, now: datetime, report: Any | None) -> None:
    """Merge this run's values for ``job`` into the textfile, atomically (temp file, then rename)."""
    values = _read(path)
    values[("genarc_last_run_timestamp_seconds", job)] = now.timestamp()
    values[("genarc_last_run_exit_code", job)] = float(exit_code)
    if report is not None:
        if exit_code in (0, 1, 11):  # 11 (suspicious) committed its point too
            values[("genarc_last_success_timestamp_seconds", job)] = now.timestamp()
        values[("genarc_last_run_duration_seconds", job)] = report.duration_s
        values[("genarc_last_run_uploaded_bytes", job)] = float(report.bytes_uploaded)
        values[("genarc_last_run_packed_bytes", job)] = float(report.bytes_packed)
        values[("genarc_last_run_files_scanned", job)] = float(report.files_scanned)
        values[("genarc_last_run_volumes", job)] = float(report.volumes)
        values[("genarc_last_run_deletes", job)] = float(report.requests.get("deletes", 0))
        start = _ts(report.generation_start)
        if start is not None:
            values[("genarc_generation_age_seconds", job)] = now.timestamp() - start
        until = _ts(report.lock_until)
        if until is not None:
            values[("genarc_lock_until_timestamp_seconds", job)] = until
        suspicion = report.suspicion or {}
        values[("genarc_suspicion_score", job)] = float(suspicion.get("score") or 0.0)
        values[("genarc_suspicious", job)] = 1.0 if suspicion.get("suspicious") else 0.0
        protected = _ts((suspicion.get("protected") or {}).get("until"))
        if protected is not None:
            values[("genarc_protected_until_timestamp_seconds", job)] = protected
    lines = []
    for name, help_text in METRICS.items():
        series = sorted((j, v) for (n, j), v in values.items() if n == name)
        if not series:
            continue
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        lines += [f'{name}{{job="{j}"}} {v:.17g}' for j, v in series]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)  # atomic: a collector never reads half a file


def run_hook(command: str | None, env: dict[str, str], warn: Callable[[str], None], timeout: int = 300) -> None:
    """Run an on_success / on_failure command with GENARC_* variables. Its failure is a warning, never fatal."""
    if not command:
        return
    try:
        done = subprocess.run(command, shell=True, env={**os.environ, **env}, timeout=timeout,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        warn(f"hook {command!r} did not finish within {timeout} s; it was stopped")
        return
    except OSError as exc:
        warn(f"hook {command!r} could not be started: {exc}")
        return
    if done.returncode != 0:
        warn(f"hook {command!r} exited with {done.returncode}: {(done.stderr or done.stdout).strip()[:200]}")
