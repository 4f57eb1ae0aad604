"""What a killed genarc left is removed only when its owner is surely gone, and nothing else is touched."""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
import os
import subprocess
import sys
import time

import pytest

from archiver import processes
from archiver.errors import ConfigError, LocalIOError
from archiver.processes import Identity, alive, me, sweep_temp


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _folder(root, name: str, size: int = 1000):
    folder = root / name
    folder.mkdir()
    (folder / "v000001.7z").write_bytes(b"x" * size)
    return folder


def test_only_folders_of_dead_genarc_processes_of_this_host_and_boot_are_swept(tmp_path):
    mine = me()
    dead = dataclasses.replace(mine, pid=_dead_pid(), start=1)
    other_host = dataclasses.replace(dead, space="0" * 8 if mine.space != "0" * 8 else "1" * 8)
    earlier_boot = dataclasses.replace(dead, boot="0" * 8 if mine.boot != "0" * 8 else "1" * 8, pid=mine.pid,
                                       start=mine.start)
    gone = _folder(tmp_path, f"genarc-run-{dead.tag()}-abc123", 5000)
    rebooted = _folder(tmp_path, f"genarc-list-{earlier_boot.tag()}-def456")
    kept = {
        "live": _folder(tmp_path, f"genarc-run-{mine.tag()}-x1"),
        "another host or container": _folder(tmp_path, f"genarc-run-{other_host.tag()}-x2"),
        "a user's folder": _folder(tmp_path, "genarc-restore-2024-06-01"),
        "a user's notes": _folder(tmp_path, "genarc-notes-2025-01-mine"),
    }
    if os.geteuid() == 0:  # root's genarc leaves other users' folders alone, whatever their names say
        kept["another user's"] = _folder(tmp_path, f"genarc-run-{dataclasses.replace(dead, start=3).tag()}-x3")
        os.chown(kept["another user's"], 12345, 12345)
    link = tmp_path / f"genarc-run-{dataclasses.replace(dead, start=2).tag()}-link"
    link.symlink_to(kept["a user's folder"], target_is_directory=True)

    swept = sweep_temp(tmp_path)
    assert not gone.exists() and not rebooted.exists()
    assert swept.directories == 2 and swept.bytes >= 5000 and dead.pid in swept.owners
    for why, folder in kept.items():
        assert (folder / "v000001.7z").exists(), why
    assert link.is_symlink()  # a link is never followed, nor removed


def test_a_process_is_judged_by_host_boot_pid_start_and_state():
    mine = me()
    assert alive(mine)
    assert not alive(dataclasses.replace(mine, start=mine.start + 1))  # the pid now belongs to another program
    assert not alive(dataclasses.replace(mine, pid=_dead_pid()))
    assert alive(dataclasses.replace(mine, space="f" * 8 if mine.space != "f" * 8 else "e" * 8, pid=_dead_pid()))
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    while processes._stat_fields(zombie.pid)[0] != b"Z":  # exited, not yet reaped: it holds nothing
        os.sched_yield()
    assert not processes.running(zombie.pid, None)
    zombie.wait()
    assert Identity.from_match(processes._TEMP_NAME.match(f"genarc-run-{mine.tag()}-x")) == mine


def test_a_held_lock_of_another_boot_is_another_machine_s_and_is_never_taken_over():
    """A lock still held cannot belong to an earlier boot of this machine: a holder whose boot id differs is
    another host sharing the file (a home on NFS, a clone with the same host name), so it holds it."""
    from archiver.processes import holds

    mine = me()
    other_boot = dataclasses.replace(mine, boot="0" * 8 if mine.boot != "0" * 8 else "1" * 8, pid=_dead_pid())
    assert holds(other_boot) and not alive(other_boot)  # a folder of an earlier boot is swept; its lock is not
    assert not holds(dataclasses.replace(mine, pid=_dead_pid()))


def test_without_its_own_proc_a_process_judges_no_one(monkeypatch):
    """In a pid namespace that sees the host's /proc, pids cannot be looked up: everyone counts as running."""
    monkeypatch.setattr(processes, "_OURS", {os.getpid(): False})
    assert processes.running(_dead_pid(), None)


# -- work on another core -----------------------------------------------------------------------------------------
def test_what_another_process_produces_comes_back_whole_and_in_order():
    assert list(processes.generate_in_child(lambda: range(2500), batch=1000)) == list(range(2500))
    assert list(processes.generate_in_child(lambda: iter(()))) == []


def test_an_error_in_the_other_process_is_raised_in_this_one():
    def fails():
        yield 1
        raise ConfigError("exclude '[' is not a valid pattern; fix it in the job file.")

    got = processes.generate_in_child(fails, batch=1)
    assert next(got) == 1
    with pytest.raises(ConfigError, match="not a valid pattern"):
        next(got)

    class Unpicklable(Exception):  # a local class: it cannot be pickled, its text still comes back
        pass

    def odd():
        raise Unpicklable("odd failure")
        yield  # pragma: no cover

    with pytest.raises(RuntimeError, match="Unpicklable: odd failure"):
        list(processes.generate_in_child(odd))


def test_another_process_that_dies_mid_way_is_named_and_nothing_is_made_up():
    def dies():
        yield 1
        os._exit(3)

    seen = []
    with pytest.raises(LocalIOError, match="exit status 3"):
        for item in processes.generate_in_child(dies, batch=1):
            seen.append(item)
    assert seen in ([], [1])  # what it sent before it died may or may not have left it


def test_a_consumer_that_stops_early_stops_the_other_process():
    before = {p.pid for p in multiprocessing.active_children()}
    got = processes.generate_in_child(itertools.count, batch=10)
    assert next(got) == 0
    children = [p for p in multiprocessing.active_children() if p.pid not in before]
    assert len(children) == 1 and children[0].is_alive()
    got.close()
    assert not children[0].is_alive()


def test_a_sink_in_another_process_answers_for_everything_sent_and_raises_what_went_wrong():
    with processes.ChildSink(lambda items: [x * 2 for x in items]) as sink:
        for x in range(5000):
            sink.send(x)
        assert sink.answer() == [x * 2 for x in range(5000)]

    def refuses(items):
        for x in items:
            if x == 300:
                raise ConfigError("item 300 is refused")
        return "never"

    with pytest.raises(ConfigError, match="item 300 is refused"):
        with processes.ChildSink(refuses) as sink:
            for x in range(200_000):  # the pipe fills: a send sees the child gone, and raises its error
                sink.send(x)
            sink.answer()

    for count in (3, 200_000):  # a consumer that returns early: found at a send, or at the answer
        with pytest.raises(RuntimeError, match="answered before the items sent to it ended"):
            with processes.ChildSink(lambda items: next(items)) as sink:
                for x in range(count):
                    sink.send(x)
                sink.answer()


def test_a_sink_whose_process_dies_is_named():
    with pytest.raises(LocalIOError, match="exit status 4"):
        with processes.ChildSink(lambda items: os._exit(4)) as sink:
            for x in range(200_000):
                sink.send(x)
            sink.answer()


def test_a_producer_goes_on_while_its_consumer_pauses():
    """The consumer may pause (a table dropped meanwhile); the walk goes on, many batches ahead, not one
    pipe's buffer: here 50 batches of 100 KB each while the consumer holds its first item."""
    made = multiprocessing.Value("i", 0)  # shared with the forked producer

    def produce():
        for i in range(20_000):
            made.value = i
            yield "x" * 1000, i

    got = processes.generate_in_child(produce, batch=100)
    assert next(got)[1] == 0
    deadline = time.monotonic() + 60
    while made.value < 50 * 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert made.value >= 50 * 100
    assert [i for _, i in got] == list(range(1, 20_000))
