#!/usr/bin/env python3
"""Benchmark genarc on a tree of many small files, side by side with restic (issue: speed at scale).

    python scripts/bench_many.py [--files 1000000] [--workdir DIR] [--json FILE] [--no-peers]
                                 [--against REF [--repeat 3]]

Steps, for genarc and restic on the same tree (``--files`` files of 100 to 500 bytes of text,
1,000 to a folder): an active full, a rerun over the unchanged tree, ``ls`` of one folder, and
the restore of one file; then genarc's next generation, opened by a synthetic full (restic has none). Each row gives wall time, peak RSS and, for genarc's ls and restore,
the bytes read from the repository (from ``--json``). It prints a table and ratios against
restic, writes JSON, and never fails on a timing.

Targets (reported, not asserted): full <= 1.0x restic's wall time with peak RSS <= 200 MB;
unchanged rerun <= 0.5x restic's; ls of a folder and the restore of one file in <= 3 s.
``scripts/bench_local.py --many-files N`` runs this after its own steps.

``--against REF`` times instead genarc's full and unchanged rerun with the code of the git ref REF
and with this checkout's, alternating (REF, this, REF, this, ...) ``--repeat`` times on the same tree,
and reports the medians: what a change did, measured on one machine in one sitting.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import compile_genarc, fresh, install_peers, median, table, timed, write_json  # noqa: E402

PASSWORD = "benchmark password"
NOW = ["2027-01-04T02:00:00Z", "2027-01-04T03:00:00Z", "2027-01-11T02:00:00Z"]  # the last opens generation 2
PER_FOLDER = 1000
WORDS = b"the quick brown fox jumps over a lazy dog while genarc keeps every generation locked".split()


def build_many(root: Path, files: int, seed: int = 20261203) -> dict:
    """``files`` small text files in folders of PER_FOLDER; returns their count and bytes."""
    rng = random.Random(seed)
    total = 0
    for index in range(files):
        folder = root / f"d{index // PER_FOLDER:05d}"
        if index % PER_FOLDER == 0:
            folder.mkdir(parents=True, exist_ok=True)
        size = rng.randrange(100, 500)
        data = b" ".join(rng.choice(WORDS) for _ in range(size // 4))[:size]
        fd = os.open(folder / f"f{index % PER_FOLDER:04d}.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        total += len(data)
    return {"files": files, "bytes": total}


def warm(corpus: Path) -> None:
    """Read every file once, so that the first tool timed does not pay alone for a cold page cache."""
    for root, _, names in os.walk(corpus):
        for name in names:
            with open(os.path.join(root, name), "rb") as fh:
                fh.read()


def genarc_cmd(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "archiver", "--config", str(config), *args]


def run_bench(work: Path, files: int, peers: bool) -> dict:
    corpus = work / "many"
    if not (work / "many.json").exists():
        print(f"building {files:,} files in {corpus} ...", flush=True)
        fresh(corpus)
        (work / "many.json").write_text(json.dumps(build_many(corpus, files)))
    built = json.loads((work / "many.json").read_text())
    warm(corpus)
    folder = "d00000" if built["files"] <= PER_FOLDER else f"d{(built['files'] // PER_FOLDER) // 2:05d}"
    one = f"{folder}/f0007.txt"
    stored = str(corpus).strip("/")
    rows: list[dict] = []

    def row(tool: str, step: str, cmd: list[str], env: dict, read_from=None) -> str:
        seconds, rss, out = timed(cmd, env=env)
        item = {"tool": tool, "step": step, "seconds": round(seconds, 2), "peak_rss_mb": round(rss)}
        if read_from is not None:
            item["bytes_read"] = read_from(out)
        rows.append(item)
        extra = f"  read {item['bytes_read'] / 1e6:.1f} MB" if item.get("bytes_read") is not None else ""
        print(f"  {tool:<7} {step:<14} {seconds:8.2f} s  peak {rss:6.0f} MB{extra}", flush=True)
        return out

    cfg = work / "genarc.toml"
    (work / "pw").write_text(PASSWORD + "\n")
    (work / "pw").chmod(0o600)
    cfg.write_text(f'[repository]\nurl = "{work / "g-repo"}"\npassword_file = "{work / "pw"}"\n\n'
                   f'[jobs.many]\nsources = ["{corpus}"]\n')
    genv = {"XDG_STATE_HOME": str(work / "g-state"), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    fresh(work / "g-repo")
    shutil.rmtree(work / "g-state", ignore_errors=True)
    timed(genarc_cmd(cfg, "init"), env={**genv, "GENARC_NOW": NOW[0]})

    def got(out: str) -> int | None:
        try:
            data = json.loads(out[out.index("{"):])
        except ValueError:
            return None
        return (data.get("read") or data.get("report", {}).get("read") or {}).get("bytes")

    row("genarc", "full", genarc_cmd(cfg, "run", "--full"), {**genv, "GENARC_NOW": NOW[0]})
    row("genarc", "unchanged", genarc_cmd(cfg, "run"), {**genv, "GENARC_NOW": NOW[1]})
    later = {**genv, "GENARC_NOW": NOW[1]}
    row("genarc", "ls folder", genarc_cmd(cfg, "ls", "many", f"{stored}/{folder}", "--json"), later, got)
    target = fresh(work / "g-restore")
    row("genarc", "restore 1 file", genarc_cmd(cfg, "restore", "many", "--target", str(target), "--include",
                                               f"{stored}/{one}", "--json"), later, got)
    assert (target / stored / one).read_bytes() == (corpus / one).read_bytes(), "the restored file differs"
    # The next generation opens with a synthetic full: copies of the volumes still live, and what changed.
    out = row("genarc", "synthetic full", genarc_cmd(cfg, "run", "--json"), {**genv, "GENARC_NOW": NOW[2]})
    opened = json.loads(out[out.index("{"):])["jobs"][0]["report"]
    assert opened["generation"] == 2 and opened["synthetic"].get("copied_volumes"), opened

    restic = shutil.which("restic") if peers else None
    if restic:
        env = {"RESTIC_PASSWORD": PASSWORD, "RESTIC_REPOSITORY": str(work / "r-repo"),
               "RESTIC_CACHE_DIR": str(work / "r-cache")}
        fresh(work / "r-repo")
        shutil.rmtree(work / "r-cache", ignore_errors=True)
        timed([restic, "init"], env=env)
        row("restic", "full", [restic, "backup", "-q", str(corpus)], env)
        row("restic", "unchanged", [restic, "backup", "-q", str(corpus)], env)
        row("restic", "ls folder", [restic, "ls", "latest", f"/{stored}/{folder}"], env)
        target = fresh(work / "r-restore")
        row("restic", "restore 1 file", [restic, "restore", "latest", "--target", str(target), "--include",
                                         f"/{stored}/{one}"], env)
    return {"files": built["files"], "bytes": built["bytes"], "folder": folder, "rows": rows}


def report(result: dict) -> str:
    by = {(r["tool"], r["step"]): r for r in result["rows"]}
    lines = []
    for step in ("full", "unchanged", "ls folder", "restore 1 file", "synthetic full"):
        g, r = by.get(("genarc", step)), by.get(("restic", step))
        if g is None:
            continue
        lines.append([step, f"{g['seconds']:.2f} s", f"{g['peak_rss_mb']} MB",
                      f"{g['bytes_read'] / 1e6:.1f} MB" if g.get("bytes_read") is not None else "",
                      f"{r['seconds']:.2f} s" if r else "-", f"{r['peak_rss_mb']} MB" if r else "-",
                      f"{g['seconds'] / r['seconds']:.2f}x" if r and r["seconds"] else "-"])
    return table(lines, ["step", "genarc", "genarc RSS", "genarc read", "restic", "restic RSS", "genarc/restic"])


def run_against(work: Path, files: int, ref: str, repeat: int) -> dict:
    """genarc's full and unchanged rerun with REF's code and with this checkout's, alternating; medians."""
    corpus = work / "many"
    if not (work / "many.json").exists():
        fresh(corpus)
        (work / "many.json").write_text(json.dumps(build_many(corpus, files)))
    built = json.loads((work / "many.json").read_text())
    warm(corpus)
    here = Path(__file__).resolve().parents[1]
    commit = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", ref], capture_output=True, text=True,
                            check=True).stdout.strip()
    theirs = fresh(work / f"code-{commit}")
    archive = subprocess.run(["git", "-C", str(here), "archive", commit, "archiver"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(theirs)], input=archive.stdout, check=True)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(theirs / "archiver")], check=True)
    codes = {commit: theirs, "this checkout": here}
    (work / "pw").write_text(PASSWORD + "\n")
    (work / "pw").chmod(0o600)
    cfg = work / "genarc.toml"
    cfg.write_text(f'[repository]\nurl = "{work / "g-repo"}"\npassword_file = "{work / "pw"}"\n\n'
                   f'[jobs.many]\nsources = ["{corpus}"]\n')
    runs: dict[tuple[str, str], list[float]] = {}
    for _ in range(repeat):
        for label, code in codes.items():
            # Run from the code's own folder: ``python -m archiver`` looks in the working directory first.
            env = {"XDG_STATE_HOME": str(work / "g-state"), "PYTHONPATH": str(code)}
            fresh(work / "g-repo")
            shutil.rmtree(work / "g-state", ignore_errors=True)
            timed(genarc_cmd(cfg, "init"), env={**env, "GENARC_NOW": NOW[0]}, cwd=code)
            for step, args, now in (("full", ("run", "--full"), NOW[0]), ("unchanged", ("run",), NOW[1])):
                seconds = timed(genarc_cmd(cfg, *args), env={**env, "GENARC_NOW": now}, cwd=code)[0]
                runs.setdefault((label, step), []).append(round(seconds, 2))
                print(f"  {label:<14} {step:<10} {seconds:8.2f} s", flush=True)
    rows = [{"tool": f"genarc ({label})", "step": step, "seconds": median(times), "runs": times}
            for (label, step), times in runs.items()]
    return {"files": built["files"], "bytes": built["bytes"], "against": commit, "repeat": repeat, "rows": rows}


def report_against(result: dict) -> str:
    by = {(r["tool"], r["step"]): r for r in result["rows"]}
    lines = []
    for step in ("full", "unchanged"):
        old, new = by[(f"genarc ({result['against']})", step)], by[("genarc (this checkout)", step)]
        lines.append([step, f"{old['seconds']:.2f} s", f"{new['seconds']:.2f} s",
                      f"{new['seconds'] / old['seconds']:.2f}x" if old["seconds"] else "-"])
    return table(lines, ["step", result["against"], "this checkout", "ratio"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=Path("bench-out/bench_many.json"))
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--against", metavar="REF", help="time REF's code and this checkout's, alternating")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, with --against")
    args = parser.parse_args()
    compile_genarc()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="genarc-many-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.against:
        result = run_against(work, args.files, args.against, max(1, args.repeat))
        print(f"\n{result['files']:,} files, {result['bytes'] / 1e6:.0f} MB, medians of {result['repeat']}:")
        print(report_against(result))
        write_json(args.json, result)
        print(f"\nJSON: {args.json}")
        return 0
    if not args.no_peers:
        install_peers(["restic"])
    result = run_bench(work, args.files, not args.no_peers)
    print(f"\n{result['files']:,} files, {result['bytes'] / 1e6:.0f} MB:")
    print(report(result))
    write_json(args.json, result)
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
