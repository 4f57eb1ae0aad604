"""A reproducible, awkward source tree and the day-to-day changes a user makes to it."""

from __future__ import annotations

import os
import random
from pathlib import Path

AWKWARD = ["with space.txt", "new\nline.txt", "tab\tname.txt", "back\\slash.txt", " leading", "-dash",
           "quote'\"s.txt", "café", "日本語.txt", "🎉.bin", "a" * 200]
NON_UTF8 = os.fsdecode(b"bad-\xff\xfe-name.bin")


def _content(rng: random.Random, size: int) -> bytes:
    if rng.random() < 0.5:
        words = [b"alpha", b"beta", b"gamma", b"delta", b"backup", b"\n"]
        out = bytearray()
        while len(out) < size:
            out += rng.choice(words) + b" "
        return bytes(out[:size])
    return rng.randbytes(size)


def build(root: Path, seed: int = 7, files: int = 3000, big_mb: int = 100) -> None:
    rng = random.Random(seed)
    dirs = [root]
    for i in range(120):
        parent = rng.choice(dirs)
        d = parent / f"dir{i:03d}"
        d.mkdir()
        dirs.append(d)
    for i in range(files):
        d = rng.choice(dirs)
        p = d / f"file{i:05d}.{rng.choice(['txt', 'bin', 'dat'])}"
        p.write_bytes(_content(rng, rng.choice([0, 10, 300, 2000, 9000, 40000])))
        if rng.random() < 0.1:
            p.chmod(rng.choice([0o600, 0o640, 0o755, 0o444]))
    for name in AWKWARD:
        (root / "awkward").mkdir(exist_ok=True)
        (root / "awkward" / name).write_bytes(name.encode("utf-8", "surrogateescape") * 3)
    (root / "awkward" / NON_UTF8).write_bytes(b"not utf-8 name")
    (root / "unicode-dir-ü").mkdir()
    (root / "unicode-dir-ü" / "inner-ß.txt").write_text("straße")
    for i in range(3):
        (root / f"empty{i}").mkdir()
    (root / "empty0" / "nested-empty").mkdir()
    (root / "zero-byte").write_bytes(b"")
    (root / "links").mkdir()
    (root / "links" / "to-file").symlink_to("../zero-byte")
    (root / "links" / "to-dir").symlink_to("../dir000")
    (root / "links" / "dangling").symlink_to("does/not/exist")
    (root / "links" / "absolute").symlink_to("/etc/hostname")
    big = root / "sparse-ish.img"
    with open(big, "wb") as fh:
        fh.truncate(big_mb * 1024 * 1024)
        for offset in (0, big_mb // 3, big_mb - 1):
            fh.seek(offset * 1024 * 1024)
            fh.write(rng.randbytes(256 * 1024))
    secret = root / "unreadable.key"
    secret.write_bytes(b"only root may read this")
    secret.chmod(0o000)


def files_of(root: Path) -> list[Path]:
    out = []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            p = Path(dirpath) / name
            if (p.is_file() and not p.is_symlink() and p.name not in ("unreadable.key", "sparse-ish.img")
                    and p.stat().st_mode & 0o200):
                out.append(p)
    return sorted(out)


def mutate(root: Path, day: int, share: float = 0.03) -> dict[str, int]:
    """A day of user activity: adds, edits, deletions and renames on a few percent of the files."""
    rng = random.Random(1000 + day)
    files = files_of(root)
    count = max(1, int(len(files) * share))
    picked = rng.sample(files, min(len(files), 4 * count))
    edits, deletes, renames = picked[:count], picked[count:2 * count], picked[2 * count:3 * count]
    for p in edits:
        with open(p, "ab") as fh:
            fh.write(rng.randbytes(rng.randint(1, 5000)))
    for p in deletes:
        p.unlink()
    for p in renames:
        p.rename(p.with_name(p.name + f".renamed{day}"))
    new_dir = root / f"day{day:02d}"
    new_dir.mkdir()
    for i in range(count):
        (new_dir / f"new{i}.txt").write_bytes(_content(rng, rng.randint(0, 20000)))
    return {"edited": len(edits), "deleted": len(deletes), "renamed": len(renames), "added": count}
