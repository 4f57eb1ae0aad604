"""Kill it anywhere: a run, a rollover or a restore SIGKILLed at a random moment never blocks the next,
leaves no process behind, fills no disk and loses no committed point.

The kill moments are random; the seed is printed (set GENARC_KILL_SEED to replay one).
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from archiver.errors import EXIT_BUSY, EXIT_OK
from archiver.layout import PROBE_PREFIX
from archiver.runlock import RunLock
from tests.conftest import restored_root, snapshot

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2027, 5, 1, 2, 0, tzinfo=timezone.utc)
KILLS = 30


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _spawn(ws, marker: str, *argv: str, now: str) -> subprocess.Popen:
    """genarc in a process of its own, its environment marked so that every process it forks can be found."""
    env = {**os.environ, "GENARC_NOW": now, "GENARC_KILL_MARK": marker}
    return subprocess.Popen([sys.executable, "-m", "archiver", "--config", str(ws.config), *argv], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)


def _marked(marker: str) -> list[int]:
    """Processes whose environment carries ``marker`` (zombies excluded: they hold nothing)."""
    needle = f"GENARC_KILL_MARK={marker}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                environ = fh.read()
            with open(f"/proc/{entry}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in environ.split(b"\0") and state != b"Z":
            found.append(int(entry))
    return found


def _kill_at_random(proc: subprocess.Popen, marker: str, delay: float) -> bool:
    """SIGKILL ``proc`` after ``delay`` seconds; then nothing it started may be left. Whether it was still running."""
    time.sleep(delay)
    running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stderr.close()
    deadline = time.monotonic() + 5
    while _marked(marker) and time.monotonic() < deadline:  # the kernel delivers the workers' signal at once
        time.sleep(0.05)
    left = _marked(marker)
    assert not left, f"processes outlived the killed genarc: {left}"
    return running


def _change(src: Path, rng: random.Random, step: int) -> None:
    files = sorted(src.glob("blob*.bin"))
    for victim in rng.sample(files, 6):
        victim.write_bytes(rng.randbytes(160 * 1024))
    (src / f"note{step:03d}.txt").write_text(f"step {step}\n" * 50)


def _tree(src: Path, rng: random.Random) -> None:
    for i in range(60):
        (src / f"blob{i:02d}.bin").write_bytes(rng.randbytes(160 * 1024))
    (src / "deep" / "er").mkdir(parents=True)
    (src / "deep" / "er" / "text.txt").write_text("compressible\n" * 5000)


def _new_points(ws, known: set[str]) -> list[str]:
    """Manifest keys not in ``known``, from a plain listing of the repository (``ws.manifests``)."""
    return [k for k in ws.extra["manifests"]() if k not in known]


def _kill_runs(ws, tmp: Path, rng: random.Random, seed: int) -> dict[str, dict]:
    """KILLS runs (incremental, synthetic full, active full in turn), each SIGKILLed at a random moment and
    followed by a run that must succeed. Returns every committed point's expected tree."""
    _tree(ws.src, rng)
    clock = START
    assert ws.genarc("run", now=_stamp(clock)).code == EXIT_OK
    states: dict[str, dict] = {}
    for key in _new_points(ws, set()):
        states[key] = snapshot(ws.src)
    # How long an uninterrupted run takes here: the kills land anywhere in such a span.
    _change(ws.src, rng, 0)
    clock += timedelta(hours=12)
    began = time.monotonic()
    done = _spawn(ws, "timing", "run", now=_stamp(clock))
    assert done.wait(timeout=300) == EXIT_OK, done.stderr.read()
    done.stderr.close()
    span = time.monotonic() - began
    for key in _new_points(ws, set(states)):
        states[key] = snapshot(ws.src)

    hits = Counter()
    for step in range(1, KILLS + 1):
        _change(ws.src, rng, step)
        clock += timedelta(hours=12)  # generation_days = 2: every fourth run opens a generation (synthetic)
        argv = ["run", "--full=active"] if step % 5 == 0 else ["run"]
        kind = "active" if step % 5 == 0 else "rollover" if step % 4 == 0 else "incremental"
        marker = f"{seed}-{step}-{secrets.token_hex(3)}"
        proc = _spawn(ws, marker, *argv, now=_stamp(clock))
        hits[kind, _kill_at_random(proc, marker, rng.uniform(0.0, span * 1.1))] += 1
        follow = ws.genarc("run", "--json", now=_stamp(clock + timedelta(minutes=30)))
        assert follow.code == EXIT_OK, (seed, step, follow.err)
        # The killed run's temporary volumes are gone, removed by the follow-up (it says how much).
        assert not list(tmp.glob("genarc-*")), (seed, step, sorted(p.name for p in tmp.iterdir()))
        state = snapshot(ws.src)  # the tree did not change between the kill and the follow-up
        for key in _new_points(ws, set(states)):
            states[key] = state
    with ws.capsys.disabled():
        print(f"\nkill seed {seed} (GENARC_KILL_SEED replays it): {len(states)} points, a run takes {span:.1f} s; "
              f"kills by (kind, still running): {dict(hits)}")
    assert sum(n for (kind, running), n in hits.items() if running) >= KILLS // 2, hits
    return states


def _kill_during_copies(ws, copies_of, states: dict[str, dict], seed: int) -> None:
    """A rollover killed once its first server-side copies have landed: the next run opens the generation."""
    _change(ws.src, random.Random(seed), 99)
    now = START + timedelta(days=30)
    generation = f"g{_last_generation(ws) + 1:06d}-{now:%Y%m%dT%H%M%SZ}/"
    marker = f"{seed}-copies"
    proc = _spawn(ws, marker, "run", now=_stamp(now))
    deadline = time.monotonic() + 120
    while copies_of(generation) < 2 and time.monotonic() < deadline:
        assert proc.poll() is None, "the rollover ended before it could be killed"
        time.sleep(0.02)
    assert _kill_at_random(proc, marker, 0.0)
    assert not _new_points(ws, set(states)), "a killed rollover committed a point"
    follow = ws.genarc("run", "--json", now=_stamp(now + timedelta(minutes=5)))
    assert follow.code == EXIT_OK, follow.err
    report = follow.json["jobs"][0]["report"]
    assert report["kind_detail"] == "synthetic full" and report["synthetic"]["copied_volumes"] > 0, report
    for key in _new_points(ws, set(states)):
        states[key] = snapshot(ws.src)


def _last_generation(ws) -> int:
    return max(g["generation"] for g in ws.genarc("list", "--json").json[0]["generations"])


def _check_points(ws, states: dict[str, dict]) -> None:
    listed = ws.genarc("list", "--json").json[0]["generations"]
    points = {p["manifest"]: (g["generation"], p["point"], p["suspect"]) for g in listed for p in g["points"]}
    assert set(points) == set(states)
    assert not any(suspect for _, _, suspect in points.values())
    for key, (generation, point, _) in points.items():
        target = ws.root / "r"
        result = ws.genarc("restore", "data", "--target", str(target), "--generation", str(generation),
                           "--point", str(point))
        assert result.code == EXIT_OK, (key, result.err)
        assert snapshot(restored_root(target, ws.src)) == states[key], key
        subprocess.run(["rm", "-rf", str(target)], check=True)
    verified = ws.genarc("verify", "--json")
    assert verified.code == EXIT_OK, verified.json["report"]["problems"]


def _killed_restore(ws, rng: random.Random, seed: int) -> None:
    """A restore killed midway leaves no process; rerun with --overwrite, it gives the exact tree."""
    target = ws.root / "killed-restore"
    for attempt in range(3):
        marker = f"{seed}-restore-{attempt}"
        proc = _spawn(ws, marker, "restore", "data", "--target", str(target), now=_stamp(START + timedelta(days=30)))
        _kill_at_random(proc, marker, rng.uniform(0.4, 1.5))
        result = ws.genarc("restore", "data", "--target", str(target), "--overwrite")
        assert result.code == EXIT_OK, (seed, result.err)
        assert snapshot(restored_root(target, ws.src)) == snapshot(ws.src)


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """TMPDIR of its own, for genarc in this process and in the ones it starts."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def _seed() -> int:
    return int(os.environ.get("GENARC_KILL_SEED") or secrets.randbelow(10**6))


@pytest.mark.slow
def test_runs_rollovers_and_restores_killed_anywhere_on_a_local_repository(workspace, private_tmp):
    ws = workspace
    seed = _seed()
    rng = random.Random(seed)
    ws.write_config(volume_size="256KiB", workers=2, generation_days=2, compression="zstd")
    assert ws.genarc("init").code == EXIT_OK
    ws.extra["manifests"] = lambda: [p.relative_to(ws.repo).as_posix() for p in ws.repo.glob("data/manifests/*/*.m7z")]
    states = _kill_runs(ws, private_tmp, rng, seed)
    _check_points(ws, states)
    _killed_restore(ws, rng, seed)


@pytest.mark.slow
def test_runs_and_rollovers_killed_anywhere_on_ceph_keep_one_version_per_key(workspace, private_tmp, request,
                                                                               monkeypatch):
    from tests.scenario.test_forged_history import _server

    ws = workspace
    seed = _seed()
    rng = random.Random(seed)
    server, bucket, backup_s3, _, _ = _server(request, "ceph", ws, monkeypatch)
    ws.write_config(url=f"s3://{bucket}/backups", endpoint_url=server.url, volume_size="256KiB", workers=2,
                    generation_days=2)
    assert ws.genarc("init").code == EXIT_OK
    ws.extra["manifests"] = lambda: [o["Key"][len("backups/"):] for page in backup_s3.get_paginator(
        "list_objects_v2").paginate(Bucket=bucket, Prefix="backups/data/manifests/") for o in page.get("Contents", [])]
    states = _kill_runs(ws, private_tmp, rng, seed)

    def copies_of(generation: str) -> int:
        return backup_s3.list_objects_v2(Bucket=bucket, Prefix=f"backups/data/volumes/{generation}").get("KeyCount", 0)

    _kill_during_copies(ws, copies_of, states, seed)
    _check_points(ws, states)
    versions = Counter(v["Key"] for page in backup_s3.get_paginator("list_object_versions").paginate(
        Bucket=bucket, Prefix="backups/") for v in page.get("Versions", [])
        if not v["Key"].startswith(f"backups/{PROBE_PREFIX}"))  # init's conditional-write probe writes twice
    assert versions and max(versions.values()) == 1, [k for k, n in versions.items() if n > 1]


def _hold(path: Path) -> subprocess.Popen:
    """A process that is not genarc and holds ``path``'s flock (as a leftover of a dead run would)."""
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time\nfd = open(sys.argv[1], 'rb')\n"
                               "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(60)\n",
                               str(path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_lock_left_by_a_dead_run_is_taken_over_and_a_live_one_is_busy(workspace, tmp_path):
    from archiver.catalog import state_dir
    from archiver.config import load

    ws = workspace
    (ws.src / "a.txt").write_text("a\n")
    ws.write_config(workers=1)
    assert ws.genarc("init").code == EXIT_OK
    url = load(ws.config).repository_url
    # A run that died holding the lock, while a process it left still holds the file (an orphaned worker of an
    # older genarc): the pid is dead, the flock is not.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = RunLock(state_dir(), url)
    lock.path.parent.mkdir(parents=True, exist_ok=True)
    lock.path.write_text(f"{dead.pid} 1 2027-05-01T01:00:00Z\n")
    free = ws.genarc("run", "--json", now="2027-05-01T01:30:00Z")  # the file names it; nobody holds it
    assert free.code == EXIT_OK and any("killed or crashed" in n and str(dead.pid) in n for n in free.json["notes"])
    assert lock.path.read_text() == ""  # a clean exit empties it: no note next time
    lock.path.write_text(f"{dead.pid} 1 2027-05-01T01:00:00Z\n")
    holder = _hold(lock.path)
    try:
        result = ws.genarc("run", "--json", now="2027-05-01T02:00:00Z")
        assert result.code == EXIT_OK, result.err
        assert any("took over the run lock" in n and str(dead.pid) in n for n in result.json["notes"])
        assert "took over the run lock" in result.err  # said on stderr too
        # A holder of another host or container cannot be judged from here: busy, never taken over.
        from archiver.processes import me

        holder.kill()
        holder.wait()
        elsewhere = "0" * 8 if me().space != "0" * 8 else "1" * 8
        lock.path.write_text(f"{dead.pid} 1 2027-05-01T01:00:00Z {elsewhere} {me().boot}\n")
        holder = _hold(lock.path)
        assert ws.genarc("run", now="2027-05-01T02:30:00Z").code == EXIT_BUSY
        holder.kill()
        holder.wait()
        lock.path.write_text("")
        # A live holder (this process) is busy, named with its pid and since when.
        with RunLock(state_dir(), url):
            busy = ws.genarc("run", now="2027-05-01T03:00:00Z")
        assert busy.code == EXIT_BUSY
        assert f"pid {os.getpid()}, started " in busy.err and "this run did nothing" in busy.err
        # Two live runs at once: the second starts while the first holds the lock (in its on_success hook).
        ws.config.write_text(ws.config.read_text() + 'on_success = "sleep 3"\n')
        (ws.src / "b.txt").write_text("b\n")
        first = _spawn(ws, "first", "run", now="2027-05-01T04:00:00Z")
        deadline = time.monotonic() + 60
        while not lock.path.read_text().startswith(f"{first.pid} ") and time.monotonic() < deadline:
            time.sleep(0.02)
        second = _spawn(ws, "second", "run", now="2027-05-01T04:00:00Z")
        assert second.wait(timeout=120) == EXIT_BUSY
        assert f"pid {first.pid}, started " in second.stderr.read().decode()
        assert first.wait(timeout=120) == EXIT_OK
        first.stderr.close()
        second.stderr.close()
    finally:
        holder.kill()
        holder.wait()


def test_a_link_at_the_lock_path_is_refused_and_what_it_points_to_is_untouched(workspace):
    from archiver.catalog import state_dir
    from archiver.config import load
    from archiver.errors import LocalIOError

    ws = workspace
    (ws.src / "a.txt").write_text("a\n")
    ws.write_config(workers=1)
    assert ws.genarc("init").code == EXIT_OK
    lock = RunLock(state_dir(), load(ws.config).repository_url)
    lock.path.parent.mkdir(parents=True, exist_ok=True)
    precious = ws.root / "precious.txt"
    precious.write_text("keep me\n")
    lock.path.symlink_to(precious)
    result = ws.genarc("run", now="2027-05-01T02:00:00Z")
    assert result.code == LocalIOError.exit_code and "Cannot open the lock file" in result.err
    assert "Traceback" not in result.err and len(result.err.strip().splitlines()) == 1
    assert precious.read_text() == "keep me\n"
