"""Shared pieces of genarc's benchmark scripts: a reproducible corpus, timed commands, a table.

Benchmarks report; they never fail on a timing. Quote medians and ratios: these
machines are noisy.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

WORDS = (b"the archive keeps every generation whole so that lifecycle rules can expire it "
         b"backup restore volume manifest lock retention object bucket checksum chain ").split()


@dataclass
class Timing:
    tool: str
    step: str
    seconds: float
    peak_rss_mb: float
    input_bytes: int
    output_bytes: int | None = None
    runs: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def mb_per_s(self) -> float:
        return self.input_bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0


_POOL: bytes | None = None


def compile_genarc() -> None:
    """Compile genarc's bytecode before timing it, as installing it does (pip compiles every module). Run from
    a checkout with PYTHONDONTWRITEBYTECODE set, each run would compile every module again (~0.1 s a run)."""
    import compileall

    compileall.compile_dir(str(Path(__file__).resolve().parents[1] / "archiver"), quiet=1)


def _pool() -> bytes:
    """8 MiB of word salad, made once; text files are slices of it (compresses about 2-3x with zstd)."""
    global _POOL
    if _POOL is None:
        rng = random.Random(99)
        lines = [b" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 16))) + b"\n" for _ in range(40000)]
        out = bytearray()
        while len(out) < 8 * 1024 * 1024:
            out += rng.choice(lines) + rng.randbytes(rng.randint(0, 6)).hex().encode() + b" "
        _POOL = bytes(out)
    return _POOL


def text_bytes(rng: random.Random, size: int) -> bytes:
    pool = _pool()
    out = bytearray()
    while len(out) < size:
        start = rng.randrange(0, len(pool) - 65536)
        out += pool[start:start + min(65536, size - len(out))]
    return bytes(out)


def build_corpus(root: Path, total_bytes: int, seed: int = 20261126) -> dict:
    """About half the bytes compress well, half do not; many small files, some medium, a few large."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    counts = {"small": 0, "medium": 0, "large": 0}
    written = 0
    budget_small, budget_medium = total_bytes * 0.10, total_bytes * 0.35
    i = 0
    while written < budget_small:
        d = root / "small" / f"d{i % 200:03d}"
        d.mkdir(parents=True, exist_ok=True)
        size = rng.randint(200, 16000)
        data = text_bytes(rng, size) if rng.random() < 0.7 else rng.randbytes(size)
        (d / f"f{i:06d}.txt").write_bytes(data)
        written += size
        counts["small"] += 1
        i += 1
    j = 0
    while written < budget_small + budget_medium:
        d = root / "medium" / f"d{j % 20:02d}"
        d.mkdir(parents=True, exist_ok=True)
        size = rng.randint(100_000, 3_000_000)
        data = text_bytes(rng, size) if j % 2 == 0 else rng.randbytes(size)
        (d / f"m{j:05d}.bin").write_bytes(data)
        written += size
        counts["medium"] += 1
        j += 1
    k = 0
    (root / "large").mkdir(exist_ok=True)
    while written < total_bytes:
        size = min(int(total_bytes * 0.11), total_bytes - written)
        with open(root / "large" / f"L{k:02d}.img", "wb") as fh:
            left = size
            while left > 0:
                chunk = min(left, 4 * 1024 * 1024)
                fh.write(text_bytes(rng, chunk) if k % 2 == 0 else rng.randbytes(chunk))
                left -= chunk
        written += size
        counts["large"] += 1
        k += 1
    return {"bytes": written, "files": sum(counts.values()), **counts, "seed": seed, "kind": "classic"}


def build_mixed_corpus(root: Path, total_bytes: int, seed: int = 20261203) -> dict:
    """Content that mixes incompressible and compressible blocks inside files, about a third incompressible:
    many small text files (25 % of the bytes); medium files of alternating 64 KiB random and text blocks,
    random first, as office documents with images or databases with blobs (40 %); large images of
    alternating multi-MiB random and repetitive chunks (35 %, a third of it random)."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    counts = {"small": 0, "medium": 0, "large": 0}
    written = random_bytes = 0
    i = 0
    while written < total_bytes * 0.25:
        d = root / "small" / f"d{i % 200:03d}"
        d.mkdir(parents=True, exist_ok=True)
        size = rng.randint(200, 16000)
        (d / f"f{i:06d}.txt").write_bytes(text_bytes(rng, size))
        written += size
        counts["small"] += 1
        i += 1
    j = 0
    while written < total_bytes * 0.65:
        d = root / "medium" / f"d{j % 20:02d}"
        d.mkdir(parents=True, exist_ok=True)
        blocks = rng.randint(8, 64)
        with open(d / f"m{j:05d}.doc", "wb") as fh:
            for b in range(blocks):
                if b % 2 == 0:
                    fh.write(rng.randbytes(65536))
                    random_bytes += 65536
                else:
                    fh.write(text_bytes(rng, 65536))
        written += blocks * 65536
        counts["medium"] += 1
        j += 1
    k = 0
    (root / "large").mkdir(exist_ok=True)
    while written < total_bytes:
        size = min(max(int(total_bytes * 0.35 / 4), 1 << 20), total_bytes - written)
        with open(root / "large" / f"L{k:02d}.img", "wb") as fh:
            left, turn = size, 0
            while left > 0:
                chunk = min(left, rng.randint(2, 6) * 1024 * 1024)
                if turn % 3 == 0:
                    fh.write(rng.randbytes(chunk))
                    random_bytes += chunk
                else:  # repetitive: a short pattern over and over, as blank or uniform regions of an image
                    pattern = rng.randbytes(64) * 16
                    fh.write((pattern * (chunk // len(pattern) + 1))[:chunk])
                left -= chunk
                turn += 1
        written += size
        counts["large"] += 1
        k += 1
    return {"bytes": written, "files": sum(counts.values()), **counts, "seed": seed, "kind": "mixed",
            "incompressible_share": round(random_bytes / written, 3)}


def change_share(root: Path, share: float, seed: int) -> dict:
    """Edit ``share`` of the files (appending a little) and add as many new small files."""
    rng = random.Random(seed)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    picked = rng.sample(files, max(1, int(len(files) * share)))
    changed_bytes = 0
    for p in picked:
        extra = text_bytes(rng, 2048)
        with open(p, "ab") as fh:
            fh.write(extra)
        changed_bytes += len(extra)
    new_dir = root / f"new-{seed}"
    new_dir.mkdir()
    for n in range(len(picked)):
        data = text_bytes(rng, rng.randint(500, 8000))
        (new_dir / f"n{n:05d}.txt").write_bytes(data)
        changed_bytes += len(data)
    return {"edited": len(picked), "added": len(picked), "bytes": changed_bytes}


def timed(cmd: list[str], **kwargs) -> tuple[float, float, str]:
    """Run a command; return (seconds, peak RSS in MB of its largest process, output).

    A fresh helper process runs it, so the RSS figure is this command's alone.
    """
    import sys

    helper = (
        "import json,os,resource,subprocess,sys,time;"
        "cmd=json.loads(sys.argv[1]);t=time.perf_counter();"
        "p=subprocess.run(cmd,stdin=subprocess.DEVNULL if not os.environ.get('BENCH_STDIN') else None);"
        "s=time.perf_counter()-t;"
        "print(json.dumps([s,resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024,p.returncode]),file=sys.stderr)"
    )
    env = {**os.environ, **(kwargs.get("env") or {})}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", helper, json.dumps(cmd)], env=env, cwd=kwargs.get("cwd"),
                          capture_output=True, text=True, input=kwargs.get("stdin"))
    elapsed = time.perf_counter() - start
    try:
        seconds, rss, code = json.loads(proc.stderr.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f"{' '.join(cmd)}: no timing ({proc.stderr[-2000:]})") from None
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({code}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return seconds or elapsed, rss, proc.stdout


PEER_PACKAGES = {"restic": "restic", "borg": "borgbackup", "duplicity": "duplicity", "7zz": "7zip"}


def install_peers(names: list[str]) -> None:
    """Install the peers that are missing from Debian's packages (as root, where apt-get is there)."""
    missing = [PEER_PACKAGES[n] for n in names if shutil.which(n) is None]
    if not missing or shutil.which("apt-get") is None or os.geteuid() != 0:
        return
    print(f"installing {', '.join(missing)} from Debian's packages ...", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=False, stdout=subprocess.DEVNULL,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [headers] + rows) for i in range(len(headers))]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join([line, sep, *body])


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=lambda o: asdict(o) if hasattr(o, "__dataclass_fields__") else str(o)) + "\n")


def fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path
