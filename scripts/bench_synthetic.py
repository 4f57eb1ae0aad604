#!/usr/bin/env python3
"""Synthetic full against active full, side by side, and the copy-threshold trade-off.

    python scripts/bench_synthetic.py [--size-gib 1.0] [--s3 moto] [--study-size-mib 64] [--json FILE]

Part 1, on the core benchmark's corpus: a full, then a week of 1 % daily changes with an
incremental each day, then the rollover: a synthetic full and, on the same tree, an active
full. Reported per target (local, and S3 on moto): client bytes uploaded, server-side copy
bytes, requests and wall time. Targets: the synthetic full uploads <= 5 % of the active
full's bytes, in <= 20 % of its wall time.

Part 2: ten generations with a 10 % daily change, for several copy thresholds: bytes
uploaded in all, and bytes the last generation stores (copied volumes carry dead entries).
It never fails on a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_local import PASSWORD, S3Target, genarc_cmd  # noqa: E402
from benchlib import compile_genarc, build_corpus, change_share, dir_bytes, table, timed, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def run(config: Path, env: dict, now: str, *extra: str) -> tuple[float, dict]:
    seconds, _, out = timed(genarc_cmd(config, "run", "--json", *extra), env={**env, "GENARC_NOW": now})
    return seconds, json.loads(out[out.index("{"):])["jobs"][0]["report"]


def local_config(work: Path, name: str, corpus: Path, threshold: float = 0.5, days: int = 7) -> Path:
    config = work / f"{name}.toml"
    config.write_text(f'[repository]\nurl = "{work / (name + "-repo")}"\npassword_file = "{work / "pw"}"\n\n'
                      f'[retention]\nkeep_days = 14\ngeneration_days = {days}\nmargin_days = 1\n\n'
                      f'[fulls]\ncopy_threshold = {threshold}\n\n[jobs.bench]\nsources = ["{corpus}"]\n')
    return config


def rollover(name: str, config: Path, env: dict, corpus: Path) -> dict:
    _, first = run(config, env, "2027-01-01T02:00:00Z")
    for day in range(1, 7):
        change_share(corpus, 0.01, seed=100 + day)
        run(config, env, f"2027-01-{1 + day:02d}T02:00:00Z")
    change_share(corpus, 0.01, seed=107)
    seconds_s, synthetic = run(config, env, "2027-01-08T02:00:00Z")
    seconds_a, active = run(config, env, "2027-01-08T03:00:00Z", "--full=active")
    assert synthetic["kind_detail"] == "synthetic full", synthetic["kind_detail"]
    row = {"target": name, "first_full_bytes": first["bytes_uploaded"],
           "synthetic": {"seconds": seconds_s, "uploaded": synthetic["bytes_uploaded"],
                         "copied": synthetic["requests"]["bytes_copied"], "requests": synthetic["requests"],
                         "detail": synthetic["synthetic"]},
           "active": {"seconds": seconds_a, "uploaded": active["bytes_uploaded"], "copied": 0,
                      "requests": active["requests"]}}
    row["upload_ratio"] = row["synthetic"]["uploaded"] / row["active"]["uploaded"]
    row["time_ratio"] = seconds_s / seconds_a
    return row


def threshold_study(work: Path, size_mib: int, thresholds: list[float], generations: int = 10) -> list[dict]:
    results = []
    for threshold in thresholds:
        corpus = work / f"study-{threshold}"
        if corpus.exists():
            shutil.rmtree(corpus)
        build_corpus(corpus, size_mib * 1024**2, seed=7)
        name = f"study-{threshold}"
        config = local_config(work, name, corpus, threshold, days=2)
        env = {"XDG_STATE_HOME": str(work / f"{name}-state"), "PYTHONPATH": str(ROOT)}
        timed(genarc_cmd(config, "init"), env=env)
        uploaded, last = 0, None
        for day in range(generations * 2):
            if day:
                change_share(corpus, 0.10, seed=day)
            _, report = run(config, env, f"2027-02-{1 + day:02d}T02:00:00Z")
            uploaded += report["bytes_uploaded"]
            last = report["generation"]
        repo = work / f"{name}-repo" / "bench" / "volumes"
        last_gen = sorted(repo.glob(f"g{last:06d}-*"))[0]
        results.append({"threshold": threshold, "uploaded_bytes": uploaded, "last_generation_bytes": dir_bytes(last_gen),
                        "source_bytes": dir_bytes(corpus)})
        print(f"  threshold {threshold}: uploaded {uploaded / 1e6:.1f} MB over {generations} generations; "
              f"last generation stores {dir_bytes(last_gen) / 1e6:.1f} MB for a {dir_bytes(corpus) / 1e6:.1f} MB tree",
              flush=True)
        shutil.rmtree(corpus)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--s3", default="moto", help="also run on these S3 servers (comma-separated: moto, ceph; '' for none)")
    parser.add_argument("--study-size-mib", type=int, default=64)
    parser.add_argument("--thresholds", default="0.25,0.5,0.75")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path, default=Path("bench-out/bench_synthetic.json"))
    args = parser.parse_args()
    compile_genarc()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="genarc-bench-synthetic-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "pw").write_text(PASSWORD + "\n")
    corpus = work / "corpus"
    rows = []
    print(f"building a {args.size_gib} GiB corpus ...", flush=True)
    if corpus.exists():
        shutil.rmtree(corpus)
    build_corpus(corpus, int(args.size_gib * 1024**3))
    pristine = work / "pristine"
    shutil.copytree(corpus, pristine) if not pristine.exists() else None
    env = {"XDG_STATE_HOME": str(work / "local-state"), "PYTHONPATH": str(ROOT)}
    config = local_config(work, "local", corpus)
    timed(genarc_cmd(config, "init"), env=env)
    print("local: a week of 1 % changes, then the rollover ...", flush=True)
    rows.append(rollover("local", config, env, corpus))
    for name in [n for n in args.s3.split(",") if n]:
        shutil.rmtree(corpus)
        shutil.copytree(pristine, corpus)
        target = S3Target(name, work, lock=name != "moto")  # moto: its CopyObject into a lock bucket is broken
        print(f"S3 on {name}: the same week and rollover ...", flush=True)
        rows.append(rollover(f"s3-{name}", target.config, {**env, **target.env,
                                                             "XDG_STATE_HOME": str(work / f"{name}-state")}, corpus))
        target.stop()
    table_rows = []
    for row in rows:
        for kind in ("synthetic", "active"):
            r = row[kind]
            req = r["requests"]
            table_rows.append([row["target"], kind, f"{r['seconds']:.2f}", f"{r['uploaded'] / 1e6:.1f} MB",
                               f"{r['copied'] / 1e6:.1f} MB", str(req.get("http_requests") or req["puts"] + req["copies"]),
                               str(req["copies"])])
    print()
    print(table(table_rows, ["target", "full", "seconds", "uploaded", "copied server-side", "requests", "copies"]))
    for row in rows:
        print(f"{row['target']}: synthetic uploads {row['upload_ratio'] * 100:.2f} % of the active full's bytes "
              f"(target <= 5 %), in {row['time_ratio'] * 100:.1f} % of its time (target <= 20 %)")
    thresholds = [float(t) for t in args.thresholds.split(",") if t]
    print(f"\ncopy threshold study: {args.study_size_mib} MiB tree, 10 generations of 2 days, 10 % daily change:")
    study = threshold_study(work, args.study_size_mib, thresholds)
    write_json(args.json, {"benchmark": "bench_synthetic", "machine": {"cpus": os.cpu_count(),
               "python": platform.python_version()}, "rollover": rows, "threshold_study": study})
    print(f"\nwrote {args.json}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
