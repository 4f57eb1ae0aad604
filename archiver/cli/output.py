"""What a person or a log shipper sees: log lines (human or JSON, to stderr and an optional file)
and a progress line that updates in place on a terminal.

Logs never go to stdout, which carries results (`--json` documents, listings, summaries).
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from datetime import datetime, timezone
from typing import Any, TextIO

from ..names import escape, valid_text
from ..units import human_bytes


class Log:
    def __init__(self, fmt: str = "human", path: str | None = None, stream: TextIO | None = None) -> None:
        self.fmt = fmt
        self.stream = stream or sys.stderr or io.StringIO()
        self.file = open(path, "a", encoding="utf-8") if path else None
        self.progress: "ProgressLine | None" = None

    def __call__(self, level: str, message: str, **fields: Any) -> None:
        if self.progress is not None:
            self.progress.clear()
        if self.fmt == "json":
            line = json.dumps(valid_text({"time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                          "level": level, "message": message, **fields}), ensure_ascii=True)
        else:  # one line per message, whatever names it holds
            job = f"job {escape(fields['job'])}: " if fields.get("job") else ""
            line = f"genarc: {level}: {job}{escape(message)}"
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, AttributeError, ValueError):  # stderr full, closed or gone: the file below may still take it
            _to_devnull(self.stream)
        if self.file is not None:
            self.file.write(line + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


class ProgressLine:
    """One status line on a terminal: files, bytes, volumes, rate and ETA, redrawn at most 5 times a second."""

    def __init__(self, stream: TextIO, label: str) -> None:
        self.stream, self.label = stream, label
        self.total_bytes = self.total_files = 0
        self.done_bytes = self.done_files = self.volumes = 0
        self.started = time.monotonic()
        self.last_draw = 0.0
        self.width = 0
        self.phase = "scanning"

    def event(self, name: str, data: dict[str, Any]) -> None:
        if name == "start":
            self.label = f"{data.get('job', self.label)} g{data.get('generation', '?')}.{data.get('point', '?')}"
        elif name == "planned":
            self.total_bytes, self.total_files = data.get("bytes", 0), data.get("files", 0)
            self.phase = "packing" if self.total_bytes else "committing"
            self.started = time.monotonic()
        elif name == "volume":
            self.volumes += 1
            self.done_bytes = data.get("packed", data.get("bytes", self.done_bytes))
            self.done_files = data.get("files_done", self.done_files + data.get("files", 0))
        elif name == "done":
            self.clear()
            return
        self.draw(force=name in ("planned", "start"))

    def draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_draw < 0.2:
            return
        self.last_draw = now
        elapsed = max(now - self.started, 1e-6)
        rate = self.done_bytes / elapsed
        parts = [f"{self.label}: {self.phase}"]
        if self.total_bytes:
            share = min(1.0, self.done_bytes / self.total_bytes)
            parts.append(f"{human_bytes(self.done_bytes)}/{human_bytes(self.total_bytes)} ({share:.0%})")
            parts.append(f"{self.done_files}/{self.total_files} files, {self.volumes} volumes, {human_bytes(rate)}/s")
            if rate > 0 and share < 1:
                eta = int((self.total_bytes - self.done_bytes) / rate)
                parts.append(f"ETA {eta // 60}:{eta % 60:02d}")
        text = "  ".join(parts)
        self.stream.write("\r" + text + " " * max(0, self.width - len(text)))
        self.stream.flush()
        self.width = len(text)

    def clear(self) -> None:
        if self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
            self.width = 0


class GuardedStdout(io.TextIOBase):
    """Standard output that cannot stop a command: a reader that went away (`genarc ls | head`) or a full disk
    is remembered, what follows is dropped, and the command finishes its work. ``verdict`` then says how the
    output went: a closed pipe keeps the command's exit code (the reader chose to stop); any other write
    error is exit 9, named."""

    def __init__(self, inner: TextIO | None) -> None:
        self.inner = inner  # None: standard output was closed before genarc started (`>&-`); all is dropped
        self.error: OSError | None = None

    @classmethod
    def install(cls) -> "GuardedStdout":
        guard = cls(sys.stdout)
        sys.stdout = guard
        return guard

    def uninstall(self) -> None:
        self.flush()
        if sys.stdout is self:
            sys.stdout = self.inner

    def write(self, text: str) -> int:
        if self.error is None and self.inner is not None:
            try:
                self.inner.write(text)
            except OSError as exc:
                self._failed(exc)
        return len(text)

    def flush(self) -> None:
        if self.error is None and self.inner is not None:
            try:
                self.inner.flush()
            except OSError as exc:
                self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        self.error = exc
        _to_devnull(self.inner)

    def isatty(self) -> bool:
        return self.error is None and self.inner is not None and self.inner.isatty()

    def fileno(self) -> int:
        if self.inner is None:
            raise io.UnsupportedOperation("standard output is closed")
        return self.inner.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.inner, "encoding", "utf-8")

    def verdict(self, code: int, log: Log) -> int:
        self.flush()
        if self.error is None or isinstance(self.error, BrokenPipeError):
            return code
        log("error", f"cannot write to standard output: {self.error.strerror or self.error}; the command's own "
                     "work finished, but its output is incomplete", exit_code=9)
        return code or 9


def _to_devnull(stream: TextIO | None) -> None:
    """Point a stream that failed at /dev/null: what is still buffered goes nowhere, so the interpreter's last
    flush at exit cannot fail again (and turn the exit code into 120)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())  # type: ignore[union-attr]
        finally:
            os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
