#!/usr/bin/env python3
"""Benchmark genarc on a local repository, side by side with its peers on the same corpus.

    python scripts/bench_local.py [--size-gib 1.0] [--corpus classic|mixed] [--repeat 1] [--workdir DIR] [--json FILE]
                                  [--many-files N] [--far-ms MS] [--restore-dir DIR]

Steps, each for genarc and for every peer (7zz, restic, borg, duplicity; missing ones are
installed from Debian's packages when run as root): an active full, an incremental after
changing 1 % of the files, a run over the unchanged tree, a full restore, an incremental
after renaming the folder of small files (bytes each tool adds to its repository), and one
large file (``--big-gib``, 2 by default; 20 is the case genarc's parts were made for) backed
up, 1 % of it rewritten in place, and backed up again. ``--many-files N`` then runs
scripts/bench_many.py on a tree of N small files (full, unchanged rerun, ``ls`` of a folder,
one-file restore, with bytes read), and ``--far-ms MS`` runs scripts/bench_far.py (a full to
Ceph RGW directly and behind a proxy adding MS each way); each writes its JSON beside this
one's. It prints
MB/s, wall-time ratios against each peer, stored bytes and peak RSS, and writes JSON. It never
fails on a timing.

Restores go into the workdir, or into ``--restore-dir`` (a tmpfs such as /dev/shm takes the
disk's write cost out and leaves each tool's own work). Beside them, ``cp -a`` of the corpus
to the same place is timed as the floor: what writing the tree there costs any tool.

Corpora: ``classic`` (half the bytes compressible text, half random, each file one or the
other) and ``mixed`` (files that mix random and compressible blocks, about a third random;
benchlib.build_mixed_corpus), where stored bytes are the measure.

Targets (reported, not asserted): full >= 1.3x restic's initial throughput and >= 3x
duplicity's; incremental <= 0.8x restic's second-run time and below duplicity's; restore
>= 1.2x restic's throughput and >= 1.0x duplicity's; peak RSS < 200 MB. genarc's bytecode is
compiled first (benchlib.compile_genarc), as an installed genarc's is.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (Timing, build_corpus, build_mixed_corpus, change_share, compile_genarc, dir_bytes,  # noqa: E402
                      fresh, install_peers, median, table, timed, write_json)

PASSWORD = "benchmark password"
NOW = ["2027-01-04T02:00:00Z", "2027-01-05T02:00:00Z"]


class S3Target:
    """An S3 server to back up to: moto's server (in this process) or Ceph RGW (scripts/ceph-rgw.sh)."""

    def __init__(self, name: str, work: Path, lock: bool = True) -> None:
        import boto3

        self.name, self.work = name, work
        self._moto = None
        if name == "moto":
            import logging

            from moto.server import ThreadedMotoServer

            logging.getLogger("werkzeug").setLevel(logging.ERROR)

            self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            self._moto.start()
            host, port = self._moto._server.server_address
            self.url, access, secret = f"http://{host}:{port}", "bench", "bench"
        elif name == "ceph":
            self.dir = work / "ceph"
            subprocess.run(["bash", str(Path(__file__).with_name("ceph-rgw.sh")), "start", str(self.dir)], check=True)
            env = dict(line.split("=", 1) for line in (self.dir / "env").read_text().split())
            self.url, access, secret = env["RGW_URL"], env["RGW_ADMIN_ACCESS_KEY"], env["RGW_ADMIN_SECRET_KEY"]
        else:
            raise SystemExit(f"unknown S3 target {name!r} (moto, ceph)")
        self.env = {"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret}
        client = boto3.client("s3", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id=access,
                              aws_secret_access_key=secret)
        bucket = f"genarc-bench-{name}"
        if lock:
            client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        else:
            client.create_bucket(Bucket=bucket)
            client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        self.config = work / f"genarc-{name}.toml"
        self.config.write_text(
            f'[repository]\nurl = "s3://{bucket}/bench"\nendpoint_url = "{self.url}"\nregion = "us-east-1"\n'
            f'password_file = "{work / "pw"}"\nlock_mode = "{"compliance" if lock else "none"}"\n\n'
            f'[retention]\nkeep_days = 14\ngeneration_days = 7\nmargin_days = 1\n\n'
            f'[jobs.bench]\nsources = ["{work / "corpus"}"]\n')
        subprocess.run(genarc_cmd(self.config, "init"), check=True, capture_output=True,
                       env={**os.environ, **self.env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})

    def stop(self) -> None:
        if self._moto is not None:
            self._moto.stop()
        else:
            subprocess.run(["bash", str(Path(__file__).with_name("ceph-rgw.sh")), "stop", str(self.dir)], check=False)


def s3_targets(work: Path, names: list[str]) -> list[S3Target]:
    return [S3Target(name, work) for name in names]


def timing_output(timing: Timing) -> str:
    return timing.note


def genarc_cmd(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "archiver", "--config", str(config), *args]


class Bench:
    def __init__(self, work: Path, repeat: int) -> None:
        self.work, self.repeat = work, repeat
        self.results: list[Timing] = []

    def once(self, tool: str, step: str, input_bytes: int, cmd: list[str], output: Path | None = None, **kw) -> Timing:
        """Time one run and fold it into the (tool, step) row; the row reports the median."""
        seconds, peak, out_text = timed(cmd, **kw)
        timing = next((t for t in self.results if (t.tool, t.step) == (tool, step)), None)
        if timing is None:
            timing = Timing(tool, step, seconds, peak, input_bytes)
            self.results.append(timing)
        timing.runs.append(seconds)
        timing.seconds = median(timing.runs)
        timing.peak_rss_mb = max(timing.peak_rss_mb, peak)
        timing.input_bytes = input_bytes
        timing.output_bytes = dir_bytes(output) if output else None
        timing.note = out_text[-20000:]
        print(f"  {tool:<9} {step:<12} {seconds:8.2f} s  {input_bytes / 1e6 / seconds if seconds else 0:8.1f} MB/s  "
              f"peak {peak:6.0f} MB", flush=True)
        return timing

    def measure(self, tool: str, step: str, input_bytes: int, prepare, cmd_for, output: Path | None = None, **kw) -> Timing:
        """Repeat a step from the same starting state (``prepare`` resets it)."""
        for _ in range(self.repeat):
            prepare()
            timing = self.once(tool, step, input_bytes, cmd_for(), output, **kw)
        return timing


def companions(args: argparse.Namespace, work: Path) -> None:
    """The scale benches, run as their own scripts (each prints its table and writes its JSON)."""
    here, peers = Path(__file__).resolve().parent, ["--no-peers"] if args.no_peers else []
    if args.many_files:
        subprocess.run([sys.executable, str(here / "bench_many.py"), "--files", str(args.many_files),
                        "--workdir", str(work / "many"), "--json", str(args.json.with_name("bench_many.json")),
                        *peers], check=True)
    if args.far_ms:
        subprocess.run([sys.executable, str(here / "bench_far.py"), "--size-gib", str(args.size_gib),
                        "--delay-ms", str(args.far_ms), "--repeat", str(args.repeat), "--workdir", str(work / "far"),
                        "--json", str(args.json.with_name("bench_far.json")), *peers], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--corpus", choices=["classic", "mixed"], default="classic")
    parser.add_argument("--big-gib", type=float, default=2.0,
                        help="size of the single large file rewritten 1 %% in place (the issue's case: 20; 0 skips it)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per step; the median is reported")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=Path("bench-out/bench_local.json"))
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--s3", default="", help="also back up to S3 servers: comma-separated moto,ceph")
    parser.add_argument("--many-files", type=int, default=0, help="also run scripts/bench_many.py with this many files")
    parser.add_argument("--far-ms", type=float, default=0, help="also run scripts/bench_far.py with this latency")
    parser.add_argument("--restore-dir", type=Path, default=None,
                        help="write the restores into this folder instead of the workdir (a tmpfs such as /dev/shm "
                             "takes the disk's write cost out and leaves each tool's own work)")
    args = parser.parse_args()
    compile_genarc()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="genarc-bench-"))
    corpus_dir, state_a = work / "corpus", work / "corpus-state-a"
    print(f"building a {args.size_gib} GiB corpus in {corpus_dir} ...", flush=True)
    fresh(corpus_dir)
    corpus = (build_mixed_corpus if args.corpus == "mixed" else build_corpus)(corpus_dir, int(args.size_gib * 1024**3))
    # Keep the pristine tree so every repetition of a full starts from the same state.
    shutil.copytree(corpus_dir, state_a, symlinks=True) if not state_a.exists() else None
    size = corpus["bytes"]
    bench = Bench(work, args.repeat)
    env_pw = {"RESTIC_PASSWORD": PASSWORD, "PASSPHRASE": PASSWORD, "BORG_PASSPHRASE": PASSWORD,
              "BORG_BASE_DIR": str(work / "b-home"), "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes"}

    # genarc
    cfg = work / "genarc.toml"
    (work / "pw").write_text(PASSWORD + "\n")
    cfg.write_text(f'[repository]\nurl = "{work / "g-repo"}"\npassword_file = "{work / "pw"}"\n\n'
                   f'[jobs.bench]\nsources = ["{corpus_dir}"]\n')
    genv = {"XDG_STATE_HOME": str(work / "g-state"), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}

    def genarc_fresh():
        fresh(work / "g-repo")
        shutil.rmtree(work / "g-state", ignore_errors=True)
        timed(genarc_cmd(cfg, "init"), env={**genv, "GENARC_NOW": NOW[0]})

    names = ("7zz", "restic", "borg", "duplicity")
    if not args.no_peers:
        install_peers(list(names))
    peers = {name: None if args.no_peers else shutil.which(name) for name in names}
    targets = s3_targets(work, [t for t in args.s3.split(",") if t])
    s3_runs: dict[str, list[dict]] = {t.name: [] for t in targets}

    def s3_run(target: "S3Target", step: str, input_bytes: int, now: str, *extra: str) -> None:
        timing = bench.once(f"genarc-{target.name}", step, input_bytes, genarc_cmd(target.config, "run", "--json", *extra),
                            env={**genv, **target.env, "GENARC_NOW": now, "XDG_STATE_HOME": str(work / f"s-{target.name}")})
        out = timing_output(timing)
        report_json = json.loads(out[out.index("{"):])["jobs"][0]["report"]
        requests = report_json["requests"]
        total = requests["http_requests"]  # every HTTP request the S3 store sent, HEADs included
        s3_runs[target.name].append({"step": step, "volumes": report_json["volumes"], "requests": requests,
                                     "requests_total": total, "within_target": total <= report_json["volumes"] + 5,
                                     "deletes": requests["deletes"]})

    print("full backups:", flush=True)
    bench.measure("genarc", "full", size, genarc_fresh, lambda: genarc_cmd(cfg, "run", "--full"),
                  output=work / "g-repo", env={**genv, "GENARC_NOW": NOW[0]})
    for target in targets:
        for rep in range(args.repeat):
            s3_run(target, "full", size, f"2027-01-0{4 + rep}T01:00:00Z", "--full")
    if peers["7zz"]:
        archive = work / "7z-out" / "a.7z"
        bench.measure("7zz", "full", size, lambda: fresh(work / "7z-out"),
                      lambda: [peers["7zz"], "a", "-bd", "-mx1", "-m0=lzma2", f"-p{PASSWORD}", "-mhe=on", str(archive), str(corpus_dir)],
                      output=work / "7z-out")
    if peers["restic"]:
        def restic_fresh():
            fresh(work / "r-repo")
            timed([peers["restic"], "-r", str(work / "r-repo"), "init"], env=env_pw)
        bench.measure("restic", "full", size, restic_fresh,
                      lambda: [peers["restic"], "-r", str(work / "r-repo"), "backup", "-q", str(corpus_dir)],
                      output=work / "r-repo", env=env_pw)
    borg_repo = work / "b-repo"
    borg_serial = iter(range(1_000_000))
    borg_create = (lambda: [peers["borg"], "create", f"{borg_repo}::a{next(borg_serial)}", str(corpus_dir)]) \
        if peers["borg"] else None
    if peers["borg"]:
        def borg_fresh():
            shutil.rmtree(borg_repo, ignore_errors=True)
            shutil.rmtree(work / "b-home", ignore_errors=True)
            timed([peers["borg"], "init", "-e", "repokey", str(borg_repo)], env=env_pw)
        # borg's default compression (lz4), as a user who types `borg create` gets.
        bench.measure("borg", "full", size, borg_fresh, borg_create, output=borg_repo, env=env_pw)
    if peers["duplicity"]:
        def dup_fresh():
            fresh(work / "d-repo")
            shutil.rmtree(work / "d-cache", ignore_errors=True)
        bench.measure("duplicity", "full", size, dup_fresh,
                      lambda: [peers["duplicity"], "full", "--archive-dir", str(work / "d-cache"), "--no-print-statistics",
                               str(corpus_dir), f"file://{work / 'd-repo'}"],
                      output=work / "d-repo", env=env_pw)

    # Each repetition changes 1 % of the files again, so every incremental has real work to do.
    restic_backup = [peers["restic"], "-r", str(work / "r-repo"), "backup", "-q", str(corpus_dir)] if peers["restic"] else None
    dup_incr = ([peers["duplicity"], "incr", "--archive-dir", str(work / "d-cache"), "--no-print-statistics",
                 str(corpus_dir), f"file://{work / 'd-repo'}"] if peers["duplicity"] else None)
    changes = []
    for rep in range(args.repeat):
        changed = change_share(corpus_dir, 0.01, seed=1 + rep)
        changes.append(changed)
        print(f"changed 1% of files ({changed['edited']} edited, {changed['added']} added); incrementals:", flush=True)
        bench.once("genarc", "incremental", changed["bytes"], genarc_cmd(cfg, "run"),
                   env={**genv, "GENARC_NOW": f"2027-01-04T{3 + rep:02d}:00:00Z"})
        for target in targets:
            s3_run(target, "incremental", changed["bytes"], f"2027-01-0{4 + args.repeat}T{3 + rep:02d}:00:00Z")
        if restic_backup:
            bench.once("restic", "incremental", changed["bytes"], restic_backup, env=env_pw)
        if borg_create:
            bench.once("borg", "incremental", changed["bytes"], borg_create(), env=env_pw)
        if dup_incr:
            bench.once("duplicity", "incremental", changed["bytes"], dup_incr, env=env_pw)
    print("unchanged tree:", flush=True)
    for rep in range(args.repeat):
        bench.once("genarc", "unchanged", 0, genarc_cmd(cfg, "run"), env={**genv, "GENARC_NOW": f"2027-01-04T{12 + rep:02d}:00:00Z"})
        if restic_backup:
            bench.once("restic", "unchanged", 0, restic_backup, env=env_pw)
        if borg_create:
            bench.once("borg", "unchanged", 0, borg_create(), env=env_pw)
    metadata_reads = statistics.median(extended_metadata_seconds(corpus_dir) for _ in range(max(3, args.repeat)))

    print("restores:", flush=True)
    target = (args.restore_dir / f"genarc-bench-restore-{os.getpid()}") if args.restore_dir else work / "restore"
    # The floor: the file system's own cost of writing the tree, which every tool pays on top of its work.
    bench.measure("cp -a", "restore", size, lambda: shutil.rmtree(target, ignore_errors=True),
                  lambda: ["cp", "-a", str(corpus_dir), str(target)])
    bench.measure("genarc", "restore", size, lambda: fresh(target),
                  lambda: genarc_cmd(cfg, "restore", "bench", "--target", str(target)), env={**genv, "GENARC_NOW": NOW[1]})
    if peers["7zz"]:
        bench.measure("7zz", "restore", size, lambda: fresh(target),
                      lambda: [peers["7zz"], "x", "-bd", "-y", f"-p{PASSWORD}", f"-o{target}", str(work / "7z-out" / "a.7z")])
    if peers["restic"]:
        bench.measure("restic", "restore", size, lambda: fresh(target),
                      lambda: [peers["restic"], "-r", str(work / "r-repo"), "restore", "latest", "-q", "--target", str(target)],
                      env=env_pw)
    if peers["borg"]:
        last_archive = f"{borg_repo}::a{next(borg_serial) - 1}"
        bench.measure("borg", "restore", size, lambda: fresh(target),
                      lambda: [peers["borg"], "extract", last_archive], env=env_pw, cwd=str(target))
    if peers["duplicity"]:
        bench.measure("duplicity", "restore", size, lambda: shutil.rmtree(target, ignore_errors=True),
                      lambda: [peers["duplicity"], "restore", "--archive-dir", str(work / "d-cache"), f"file://{work / 'd-repo'}",
                               str(target)], env=env_pw)
    shutil.rmtree(target, ignore_errors=True)

    # A reorganisation: the folder of small files is renamed. What each tool adds to its repository is
    # what it uploads; a tool that recognises moved content adds little more than its metadata.
    renamed_from = corpus_dir / "small"
    moved_bytes = dir_bytes(renamed_from)
    moved_files = sum(1 for p in renamed_from.rglob("*") if p.is_file())
    renamed_from.rename(corpus_dir / "small-renamed")
    print(f"renamed a folder of {moved_files} files ({moved_bytes / 1e6:.0f} MB); incrementals:", flush=True)
    renamed = {}

    def after_rename(tool: str, repo: Path, cmd: list[str], **kw) -> None:
        before = dir_bytes(repo)
        timing = bench.once(tool, "renamed", moved_bytes, cmd, **kw)
        renamed[tool] = {"seconds": timing.seconds, "uploaded_bytes": dir_bytes(repo) - before,
                         "share_of_folder": round((dir_bytes(repo) - before) / moved_bytes, 5)}

    after_rename("genarc", work / "g-repo", genarc_cmd(cfg, "run"), env={**genv, "GENARC_NOW": "2027-01-05T04:00:00Z"})
    if restic_backup:
        after_rename("restic", work / "r-repo", restic_backup, env=env_pw)
    if borg_create:
        after_rename("borg", borg_repo, borg_create(), env=env_pw)
    if dup_incr:
        after_rename("duplicity", work / "d-repo", dup_incr, env=env_pw)

    big = big_file(bench, work, args.big_gib, peers, env_pw, genv) if args.big_gib > 0 else {}

    for target in targets:
        target.stop()
    report(bench, corpus, changes, peers, args.json, work, s3_runs, metadata_reads, renamed, big,
           restores_into=str(args.restore_dir) if args.restore_dir else "the workdir")
    companions(args, work)
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def big_file(bench: Bench, work: Path, gib: float, peers: dict, env_pw: dict, genv: dict) -> dict:
    """One large file (a disk image: 4 MiB runs, a third random), backed up, then 1 % of it rewritten in place in
    20 runs at random offsets, and backed up again: what each tool stores, and then adds."""
    import random

    folder = fresh(work / "big")
    image = folder / "disk.img"
    size = int(gib * 1024**3)
    rng = random.Random(20261203)
    print(f"a {size / 1e9:.1f} GB file, then 1 % of it rewritten in place:", flush=True)
    with open(image, "wb") as fh:
        left, turn = size, 0
        while left > 0:
            chunk = min(left, 4 * 1024 * 1024)
            fh.write(rng.randbytes(chunk) if turn % 3 == 0 else (rng.randbytes(64) * 16) * (chunk // 1024) + b"\0" * (chunk % 1024))
            left, turn = left - chunk, turn + 1
    cfg = work / "genarc-big.toml"
    cfg.write_text(f'[repository]\nurl = "{work / "g-big"}"\npassword_file = "{work / "pw"}"\n\n'
                   f'[jobs.big]\nsources = ["{folder}"]\n')
    genv_big = {**genv, "XDG_STATE_HOME": str(work / "g-big-state")}
    timed(genarc_cmd(cfg, "init"), env={**genv_big, "GENARC_NOW": NOW[0]})
    tools = {"genarc": (work / "g-big", lambda now: genarc_cmd(cfg, "run", "big"), {**genv_big})}
    if peers.get("restic"):
        timed([peers["restic"], "-r", str(work / "r-big"), "init"], env=env_pw)
        tools["restic"] = (work / "r-big", lambda now: [peers["restic"], "-r", str(work / "r-big"), "backup", "-q",
                                                        str(folder)], env_pw)
    if peers.get("borg"):
        timed([peers["borg"], "init", "-e", "repokey", str(work / "b-big")], env=env_pw)
        serial = iter(range(100))
        tools["borg"] = (work / "b-big", lambda now: [peers["borg"], "create", f"{work / 'b-big'}::a{next(serial)}",
                                                      str(folder)], env_pw)
    if peers.get("duplicity"):
        tools["duplicity"] = (work / "d-big", lambda now: [peers["duplicity"], "full" if now == 0 else "incr",
                                                           "--archive-dir", str(work / "d-big-cache"),
                                                           "--no-print-statistics", str(folder),
                                                           f"file://{work / 'd-big'}"], env_pw)
    out: dict = {"bytes": size}
    for tool, (repo, cmd, env) in tools.items():
        first = bench.once(tool, "big full", size, cmd(0), env={**env, "GENARC_NOW": "2027-01-04T02:00:00Z"})
        out[tool] = {"full_seconds": first.seconds, "stored_bytes": dir_bytes(repo)}
    regions, rewritten = 20, size // 100
    with open(image, "r+b") as fh:
        for _ in range(regions):
            fh.seek(rng.randrange(0, size - rewritten // regions))
            fh.write(rng.randbytes(rewritten // regions))
    for tool, (repo, cmd, env) in tools.items():
        before = dir_bytes(repo)
        again = bench.once(tool, "big 1% rewrite", rewritten, cmd(1), env={**env, "GENARC_NOW": "2027-01-04T03:00:00Z"})
        added = dir_bytes(repo) - before
        out[tool].update(incremental_seconds=again.seconds, uploaded_bytes=added, share_of_file=round(added / size, 4))
    largest = max((p.stat().st_size for p in (work / "g-big").rglob("*.7z")), default=0)
    out["genarc_largest_volume_bytes"] = largest
    shutil.rmtree(folder, ignore_errors=True)
    return out


def extended_metadata_seconds(root: Path) -> float:
    """What the scan of an unchanged tree pays for faithful copies beyond the lstat it always did: one
    listxattr per file and folder (the ctime and link count come with the same lstat, at no cost)."""
    started = time.perf_counter()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            try:
                os.listxattr(os.path.join(dirpath, name), follow_symlinks=False)
            except OSError:
                pass
    return time.perf_counter() - started


def report(bench: Bench, corpus: dict, changed: list, peers: dict, out: Path, work: Path,
           s3_runs: dict | None = None, metadata_reads: float | None = None, renamed: dict | None = None,
           big: dict | None = None, restores_into: str = "the workdir") -> None:
    by = {(t.tool, t.step): t for t in bench.results}
    rows = []
    for t in bench.results:
        rows.append([t.tool, t.step, f"{t.seconds:.2f}", f"{t.mb_per_s:.1f}" if t.input_bytes else "-",
                     f"{t.output_bytes / 1e6:.0f} MB" if t.output_bytes else "-", f"{t.peak_rss_mb:.0f}"])
    print()
    print(table(rows, ["tool", "step", "seconds (median)", "MB/s", "output", "peak RSS MB"]))
    g = {step: by.get(("genarc", step)) for step in ("full", "incremental", "unchanged", "restore")}
    ratios = {}
    for peer in ("7zz", "restic", "borg", "duplicity"):
        for step in ("full", "incremental", "unchanged", "restore"):
            other = by.get((peer, step))
            if other and g[step]:
                ratios[f"{step} time genarc/{peer}"] = round(g[step].seconds / other.seconds, 3)
    targets = {}
    if g["full"] and by.get(("restic", "full")):
        targets["full >= 1.3x restic throughput"] = round(by[("restic", "full")].seconds / g["full"].seconds, 3)
    if g["full"] and by.get(("duplicity", "full")):
        targets["full >= 3x duplicity throughput"] = round(by[("duplicity", "full")].seconds / g["full"].seconds, 3)
    if g["incremental"] and by.get(("restic", "incremental")):
        targets["incremental <= 0.8x restic second-run time"] = ratios["incremental time genarc/restic"]
    if g["incremental"] and by.get(("duplicity", "incremental")):
        targets["incremental < 1.0x duplicity's time"] = ratios["incremental time genarc/duplicity"]
    if g["restore"] and by.get(("restic", "restore")):
        targets["restore >= 1.2x restic throughput"] = round(by[("restic", "restore")].seconds / g["restore"].seconds, 3)
    if g["restore"] and by.get(("duplicity", "restore")):
        targets["restore >= 1.0x duplicity speed"] = round(by[("duplicity", "restore")].seconds / g["restore"].seconds, 3)
    targets["peak RSS MB < 200"] = round(max(t.peak_rss_mb for t in bench.results if t.tool == "genarc"), 1)
    stored = {t.tool: t.output_bytes for t in bench.results if t.step == "full" and t.output_bytes}
    if stored.get("genarc") and stored.get("restic"):
        targets["stored bytes <= restic's (genarc/restic)"] = round(stored["genarc"] / stored["restic"], 3)
    if renamed and "genarc" in renamed:
        targets["renamed folder uploads < 1% of it"] = renamed["genarc"]["share_of_folder"]
    if big and "genarc" in big:
        targets["large file: 1% rewritten uploads <= 5% of it"] = big["genarc"]["share_of_file"]
    if metadata_reads is not None and g["unchanged"]:
        targets["xattr reads <= 10% of the unchanged run"] = round(metadata_reads / g["unchanged"].seconds, 4)
    if g["restore"] and by.get(("cp -a", "restore")):
        ratios["restore time genarc/cp -a (the floor)"] = round(g["restore"].seconds / by[("cp -a", "restore")].seconds, 3)
    print("\nratios (genarc time / peer time; below 1 means genarc is faster):")
    for k, v in ratios.items():
        print(f"  {k:<40} {v}")
    print("\ntargets (value shown; speed targets as a speed-up factor):")
    for k, v in targets.items():
        print(f"  {k:<48} {v}")
    if stored:
        print(f"\nstored bytes after the full ({corpus.get('kind')} corpus, {corpus['bytes'] / 1e6:.0f} MB"
              + (f", {corpus['incompressible_share']:.0%} incompressible" if "incompressible_share" in corpus else "") + "):")
        for tool, size in sorted(stored.items(), key=lambda kv: kv[1]):
            print(f"  {tool:<10} {size / 1e6:8.1f} MB  {size / corpus['bytes']:.3f} of the source")
    if renamed:
        print("\nafter renaming a folder (bytes added to the repository):")
        for tool, r in renamed.items():
            print(f"  {tool:<10} {r['uploaded_bytes']:>12} B  {r['share_of_folder']:.4%} of the folder  {r['seconds']:.2f} s")
    if big:
        print(f"\na {big['bytes'] / 1e9:.1f} GB file, 1 % rewritten in place (largest genarc volume "
              f"{big.get('genarc_largest_volume_bytes', 0) / 1e6:.0f} MB):")
        for tool, r in big.items():
            if isinstance(r, dict):
                print(f"  {tool:<10} full {r['full_seconds']:7.1f} s, stores {r['stored_bytes'] / 1e6:8.0f} MB; "
                      f"after the rewrite {r['incremental_seconds']:6.1f} s, adds {r['uploaded_bytes'] / 1e6:8.1f} MB "
                      f"({r['share_of_file']:.2%} of the file)")
    for name, runs in (s3_runs or {}).items():
        print(f"\nS3 on {name}: requests per run against volumes (target: requests <= volumes + 5, deletes = 0):")
        for run in runs:
            print(f"  {run['step']:<12} volumes {run['volumes']:>4}  requests {run['requests_total']:>4}  "
                  f"deletes {run['deletes']}  {'ok' if run['within_target'] and not run['deletes'] else 'MISSED'}")
    write_json(out, {
        "s3": s3_runs or {},
        "benchmark": "bench_local", "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                                "platform": platform.platform()},
        "corpus": corpus, "change": changed, "peers": {k: bool(v) for k, v in peers.items()},
        "results": bench.results, "ratios": ratios, "targets": targets, "stored_bytes": stored,
        "renamed_folder": renamed or {}, "big_file": big or {}, "restores_into": restores_into,
    })
    print(f"\nwrote {out}")


if __name__ == "__main__":
    sys.exit(main())
