"""A week of daily runs over an awkward tree, across three generations; every point restores exactly."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from archiver import backup as backup_mod, catalog as catalog_mod, chain, config as config_mod
from archiver.catalog import TreeTable, connect
from archiver.layout import volume_generation_prefix
from archiver.repository import Repository
from tests.conftest import history_of, restored_root, snapshot, unprivileged
from tests.treegen import build, mutate

DAYS = [f"2027-01-{4 + d:02d}T02:00:00Z" for d in range(7)]


def assert_self_contained(config_path: Path) -> int:
    """Invariant 3: no manifest, and no replayed tree, refers to an object outside its own generation."""
    cfg = config_mod.load(config_path)
    repo = Repository.open(cfg)
    history = history_of(repo)
    checked = 0
    with tempfile.TemporaryDirectory() as tmp:
        conn = connect(Path(tmp) / "t.sqlite")
        for point in history.points:
            name = point.name
            prefix = volume_generation_prefix("data", name.gseq, name.gstart)
            tree = TreeTable(conn, "t")
            tip = chain.replay(repo, history, point, tree, Path(tmp))
            assert all(o["key"].startswith(prefix) for o in tip.objects)
            for row in tree.rows("obj_key IS NOT NULL"):
                assert row["obj_key"].startswith(prefix), (name.key, row["obj_key"])
                checked += 1
            for (key,) in conn.execute("SELECT obj_key FROM t_parts"):  # parts of files larger than a volume
                assert key.startswith(prefix), (name.key, key)
                checked += 1
            TreeTable.drop(conn, "t")
    return checked


@pytest.mark.slow
def test_week_of_runs_restores_every_point_exactly(workspace):
    ws = workspace
    expected: dict[tuple[int, int], dict] = {}
    # Every tree digest of the week (each commit, every replay) is taken on two cores, as a large tree's is.
    ws.monkeypatch.setattr(catalog_mod, "PARALLEL_DIGEST_ROWS", 1)
    ws.monkeypatch.setattr(backup_mod, "PARALLEL_DIGEST_ROWS", 1)
    with unprivileged():
        build(ws.src)
        ws.write_config(generation_days=3, volume_size="8MiB", workers=2)
        assert ws.genarc("init").code == 0
        for day, now in enumerate(DAYS):
            if day == 1:
                # Touched but not changed: a new mtime, the same bytes. It must not be stored again.
                victim = sorted(ws.src.glob("dir0*/file*.txt"))[0]
                os.utime(victim, ns=(victim.stat().st_atime_ns, victim.stat().st_mtime_ns + 5_000_000_000))
            elif day > 1:
                mutate(ws.src, day)
            state = snapshot(ws.src)
            result = ws.genarc("run", "--json", now=now)
            assert result.code == 1, result.err  # partial: the unreadable file
            assert "unreadable.key" in result.err and "Permission denied" in result.err
            report = result.json["jobs"][0]["report"]
            expected[(report["generation"], report["point"])] = state
            if day == 1:
                assert (report["kind"], report["changed"], report["added"], report["removed"]) == ("incremental", 0, 0, 0)
                assert report["metadata_changed"] == 1 and report["bytes_packed"] == 0 and report["volumes"] == 0
            if day > 1 and report["kind"] == "incremental":
                assert report["changed"] > 0 and report["added"] > 0 and report["removed"] > 0
        assert sorted(expected) == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3), (3, 1)]

        listing = ws.genarc("list", "--json").json[0]["generations"]
        assert [len(g["points"]) for g in listing] == [3, 3, 1]

        for (gseq, pseq), state in expected.items():
            target = ws.root / f"restore-{gseq}-{pseq}"
            result = ws.genarc("restore", "data", "--target", str(target), "--generation", str(gseq),
                               "--point", str(pseq))
            assert result.code == 0, result.err
            assert snapshot(restored_root(target, ws.src)) == state, (gseq, pseq)

        assert assert_self_contained(ws.config) > 3000
        verified = ws.genarc("verify", "--deep", "--json")
        assert verified.code == 0, verified.out
        assert verified.json["report"]["orphans"] == []
