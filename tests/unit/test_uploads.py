"""The upload queue: sends overlap, records happen in the caller's thread, and an error leaves no file behind."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from archiver.uploads import UploadQueue


def _files(tmp_path: Path, n: int) -> list[Path]:
    paths = [tmp_path / f"v{i:03d}" for i in range(n)]
    for p in paths:
        p.write_bytes(b"x")
    return paths


def test_sends_overlap_and_are_recorded_in_the_callers_thread(tmp_path):
    paths, lock = _files(tmp_path, 12), threading.Lock()
    state = {"now": 0, "most": 0}
    recorded: list[tuple[str, str]] = []

    def send(path: Path) -> str:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.02)
        with lock:
            state["now"] -= 1
        path.unlink()
        return path.name

    with UploadQueue(send, lambda path, name: recorded.append((name, threading.current_thread().name)),
                     lambda path: path.unlink(), slots=3) as queue:
        for p in paths:
            queue.add(p)
    assert sorted(name for name, _ in recorded) == [p.name for p in paths]
    assert {thread for _, thread in recorded} == {threading.current_thread().name}
    assert 1 < state["most"] <= 3
    assert not any(p.exists() for p in paths)


def test_a_failed_send_stops_the_queue_and_no_file_is_left(tmp_path):
    paths, started = _files(tmp_path, 10), threading.Event()
    recorded: list[str] = []
    added: list[Path] = []

    def send(path: Path) -> str:
        try:
            if path.name == "v002":
                started.wait(1)
                raise OSError("the bucket went away")
            started.set()
            time.sleep(0.05)
            return path.name
        finally:
            path.unlink()

    with pytest.raises(OSError, match="went away"):
        with UploadQueue(send, lambda path, name: recorded.append(name), lambda path: path.unlink(),
                         slots=2) as queue:
            for p in paths:
                queue.add(p)
                added.append(p)
    assert "v002" not in recorded
    assert len(recorded) < len(paths)
    assert len(added) < len(paths)  # the error stopped the adding
    assert not any(p.exists() for p in added)  # sent, failed or cancelled: no file handed to the queue is left


def test_a_send_that_fails_at_the_end_stops_every_other_before_the_queue_is_left(tmp_path):
    paths = _files(tmp_path, 4)
    sending = threading.Barrier(4)
    running: set[str] = set()
    lock = threading.Lock()

    def send(path: Path) -> str:
        with lock:
            running.add(path.name)
        try:
            sending.wait(2)  # all four in flight at once
            if path.name == "v003":
                raise OSError("the last upload failed")
            time.sleep(0.3)
            return path.name
        finally:
            path.unlink()
            with lock:
                running.discard(path.name)

    with pytest.raises(OSError, match="last upload failed"):
        with UploadQueue(send, lambda path, name: None, lambda path: path.unlink(), slots=4) as queue:
            for p in paths:
                queue.add(p)
    assert not running  # nothing still sending once the error is raised (the run then removes its spool)
    assert not any(t.name.startswith("genarc-upload") and t.is_alive() for t in threading.enumerate())
