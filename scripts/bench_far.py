#!/usr/bin/env python3
"""A far-away bucket: full backups to S3 with and without added latency, side by side with restic.

    python scripts/bench_far.py [--size-gib 0.5] [--delay-ms 50] [--s3 ceph|moto] [--repeat 1]
                                [--workdir DIR] [--json FILE] [--no-peers]

The S3 server (Ceph RGW by default, scripts/ceph-rgw.sh) is reached either directly or through
scripts/latency_proxy.py, which holds every byte ``--delay-ms`` in each direction (so a request
costs two delays more, and a new connection two more again), on loopback only. Each tool makes
an active full of the same tree (the core benchmark's corpus) both ways: genarc into a bucket
with Object Lock (every volume locked and its lock checked), restic into a fresh repository
each time. The table gives wall time, MB/s, peak RSS and the share of the direct throughput
kept at a distance; genarc's row adds its requests and the temporary disk it may use, from
its report. It writes JSON and never fails on a timing.

Every full stays in the bucket (genarc's are locked), and the test Ceph keeps its objects in a
4 GiB memstore: the script refuses sizes whose fulls would not fit (0.5 GiB with --repeat 2 do).

Target (reported, not asserted): at 50 ms each way, genarc's full keeps >= 80 % of its
direct throughput. genarc sends up to four volumes at once while the next ones are packed,
and a multipart upload's parts four at once; temporary disk is (workers + 4) volumes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_local import PASSWORD, S3Target, genarc_cmd  # noqa: E402
from benchlib import compile_genarc, build_corpus, install_peers, table, timed, write_json  # noqa: E402
from latency_proxy import LatencyProxy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def far_config(target: S3Target, port: int) -> Path:
    """The target's job file, with the endpoint moved behind the proxy."""
    config = target.work / f"genarc-{target.name}-far.toml"
    config.write_text(target.config.read_text().replace(target.url, f"http://127.0.0.1:{port}"))
    return config


def genarc_full(config: Path, env: dict, now: str) -> dict:
    seconds, rss, out = timed(genarc_cmd(config, "run", "--json", "--full=active"), env={**env, "GENARC_NOW": now})
    report = json.loads(out[out.index("{"):])["jobs"][0]["report"]
    return {"seconds": seconds, "rss_mb": rss, "volumes": report["volumes"], "uploaded": report["bytes_uploaded"],
            "requests": report["requests"]["http_requests"]}


def restic_full(restic: str, url: str, bucket: str, name: str, corpus: Path, env: dict) -> dict:
    repo = ["-r", f"s3:{url}/{bucket}/{name}", "-o", "s3.bucket-lookup=path"]
    timed([restic, *repo, "init"], env=env)
    seconds, rss, _ = timed([restic, *repo, "backup", "-q", str(corpus)], env=env)
    return {"seconds": seconds, "rss_mb": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gib", type=float, default=0.5)
    parser.add_argument("--delay-ms", type=float, default=50.0, help="latency added in each direction")
    parser.add_argument("--s3", choices=["ceph", "moto"], default="ceph")
    parser.add_argument("--repeat", type=int, default=1, help="runs per step; the median is reported")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=Path("bench-out/bench_far.json"))
    parser.add_argument("--no-peers", action="store_true")
    args = parser.parse_args()
    compile_genarc()
    fulls = args.repeat * 2 * (1 if args.no_peers else 2)
    if args.s3 == "ceph" and args.size_gib * fulls > 4.5:
        raise SystemExit(f"{fulls} fulls of {args.size_gib} GiB would overflow the test Ceph's 4 GiB memstore; "
                         "lower --size-gib or --repeat.")

    work = args.workdir or Path(tempfile.mkdtemp(prefix="genarc-far-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "pw").write_text(PASSWORD + "\n")
    os.chmod(work / "pw", 0o600)
    corpus_dir = work / "corpus"
    shutil.rmtree(corpus_dir, ignore_errors=True)
    print(f"building a {args.size_gib} GiB corpus in {corpus_dir} ...", flush=True)
    size = build_corpus(corpus_dir, int(args.size_gib * 1024**3))["bytes"]
    if not args.no_peers:
        install_peers(["restic"])
    restic = None if args.no_peers else shutil.which("restic")

    target = S3Target(args.s3, work)
    port = int(target.url.rsplit(":", 1)[1].split("/")[0])
    proxy = LatencyProxy(port, args.delay_ms).start()
    endpoints = {"direct": (target.config, target.url), "far": (far_config(target, proxy.port),
                                                             f"http://127.0.0.1:{proxy.port}")}
    env = {**target.env, "PYTHONPATH": str(ROOT), "XDG_STATE_HOME": str(work / "state")}
    runs: dict[tuple[str, str], list[dict]] = {}
    try:
        if restic:
            import boto3

            boto3.client("s3", endpoint_url=target.url, region_name="us-east-1",
                         aws_access_key_id=target.env["AWS_ACCESS_KEY_ID"],
                         aws_secret_access_key=target.env["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket="restic-far")
        for rep in range(args.repeat):
            for where, (config, url) in endpoints.items():
                print(f"  genarc full, {where} ({rep + 1}/{args.repeat}) ...", flush=True)
                now = f"2027-01-{4 + rep:02d}T{1 + len(runs) % 20:02d}:00:00Z"
                runs.setdefault(("genarc", where), []).append(genarc_full(config, env, now))
                if restic:
                    print(f"  restic full, {where} ({rep + 1}/{args.repeat}) ...", flush=True)
                    runs.setdefault(("restic", where), []).append(
                        restic_full(restic, url, "restic-far", f"{where}-{rep}", corpus_dir,
                                    {**target.env, "RESTIC_PASSWORD": PASSWORD}))
    finally:
        proxy.stop()
        target.stop()

    results, rows = [], []
    for tool in ("genarc", "restic"):
        if (tool, "direct") not in runs:
            continue
        medians = {where: statistics.median(r["seconds"] for r in runs[(tool, where)]) for where in endpoints}
        kept = medians["direct"] / medians["far"]
        for where in endpoints:
            last = runs[(tool, where)][-1]
            result = {"tool": tool, "where": where, "delay_ms": args.delay_ms if where == "far" else 0.0,
                      "seconds": medians[where], "mb_per_s": size / 1e6 / medians[where],
                      "rss_mb": max(r["rss_mb"] for r in runs[(tool, where)]), "runs": runs[(tool, where)]}
            if where == "far":
                result["kept"] = kept
            results.append(result)
            rows.append([tool, where, f"{result['delay_ms']:.0f}", f"{medians[where]:.2f}", f"{result['mb_per_s']:.1f}",
                         f"{result['rss_mb']:.0f}", f"{kept:.0%}" if where == "far" else "",
                         str(last.get("requests", "")), str(last.get("volumes", ""))])
    print(f"\nFull of {size / 1e9:.2f} GB to {args.s3}, {args.delay_ms:.0f} ms added each way behind the proxy "
          f"(medians of {args.repeat}):")
    print(table(rows, ["tool", "endpoint", "ms", "seconds", "MB/s", "RSS MB", "kept", "requests", "volumes"]))
    genarc_kept = next((r["kept"] for r in results if r["tool"] == "genarc" and r["where"] == "far"), None)
    if genarc_kept is not None:
        print(f"target: genarc keeps >= 80 % of its direct throughput at a distance: "
              f"{'met' if genarc_kept >= 0.8 else 'not met'} ({genarc_kept:.0%})")
    write_json(args.json, {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                           "size_bytes": size, "s3": args.s3, "delay_ms": args.delay_ms, "repeat": args.repeat,
                           "results": results})
    print(f"JSON written to {args.json}")


if __name__ == "__main__":
    main()
