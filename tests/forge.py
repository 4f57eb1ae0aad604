"""Forging restore points as an attacker who holds the keys and the password would.

The attacker does not need genarc's scanner: with the password they can write any manifest
that passes its HMAC check, listing whatever entries they like. These helpers do exactly
that, through genarc's own PointWriter, so every forged point is one a real client could
have committed.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import xxhash

from archiver import sevenzip
from archiver.catalog import TreeTable, connect
from archiver.generation import GenerationRef
from archiver.layout import new_run_id
from archiver.parts import parts_digest
from archiver.point import CommittedPoint, LockPlan, PointWriter
from archiver.store import sha256_of


def row(path: str | bytes, type_: str = "file", *, content: bytes = b"", target: str | bytes | None = None,
        mode: int | None = None, mtime_ns: int = 1_700_000_000 * 10**9) -> dict:
    raw = path if isinstance(path, bytes) else os.fsencode(path)
    return {"path": raw, "type": type_, "size": len(content) if type_ == "file" else 0, "mtime_ns": mtime_ns,
            "mode": mode if mode is not None else (0o755 if type_ == "dir" else 0o644), "uid": os.getuid(),
            "gid": os.getgid(), "dev": 0, "ino": 0,
            "target": (target if isinstance(target, bytes) else os.fsencode(target)) if target is not None else None,
            "xxh3": xxhash.xxh3_128(content).hexdigest() if type_ == "file" else None,
            "obj_key": None, "obj_version": None, "obj_sha256": None, "entry": None, "content": content,
            "torn": None, "sparse": None, "link": None, "xattrs": None, "ctime_ns": None}


@dataclass
class Forger:
    repo: object
    job: str
    when: datetime
    generation: int = 1
    points: list[CommittedPoint] = field(default_factory=list)

    def point(self, rows: list[dict], *, listed: list[tuple[dict, str]] | None = None,
              removals: list[bytes] = (), full: bool = True) -> CommittedPoint:
        """Commit a point whose tree is ``rows``; a full lists every row, an incremental lists ``listed``."""
        gen = GenerationRef(self.generation, self.when)
        pseq = 1 if full else len(self.points) + 1
        with tempfile.TemporaryDirectory() as tmp:
            spool = Path(tmp)
            writer = PointWriter(self.repo, self.job, gen, pseq, new_run_id(), LockPlan("none", self.when), spool,
                                 full=full)
            entries = self._volume(writer, rows if full else [r for r, _ in listed or []], spool)
            for r in rows:
                r.update(entries.get(r["path"], {}))
            if full:
                for r in rows:
                    writer.add_row(r, "add", r.get("part_rows"))
            else:
                for path in removals:
                    writer.add_removal(path)
                for r, op in listed or []:
                    writer.add_row(r, op)
            conn = connect(spool / "digest.sqlite")
            tree = TreeTable(conn, "tree")
            for r in rows:
                tree.put(r)
            digest, count = tree.digest(), tree.count()
            conn.close()
            parent = None
            if not full:
                tip = self.points[-1]
                parent = {"key": tip.key, "sha256": tip.sha256, "version_id": tip.version_id}
            committed = writer.commit(kind="full" if full else "incremental", reason="forged", point_time=self.when,
                                      policy=self.repo_policy(), job_config={"sources": ["/forged"]},
                                      tree={"digest": digest, "entries": count, "bytes": 0}, parent=parent)
        self.points.append(committed)
        return committed

    def repo_policy(self):
        from archiver.generation import RetentionPolicy

        return RetentionPolicy(30, 7, 1)

    def _volume(self, writer: PointWriter, rows: list[dict], spool: Path) -> dict[bytes, dict]:
        """Pack the content of every non-empty file row into one volume; returns each row's object fields."""
        files = [r for r in rows if r["type"] == "file" and r["size"]]
        if not files:
            return {}
        path = spool / "v.7z"
        with sevenzip.open_for_writing(path, "zstd", 3, writer.repo.keys.password) as archive:
            for index, r in enumerate(files):
                if r.get("split"):  # stored in parts: one entry per part
                    offset = 0
                    for number, length in enumerate(r["split"]):
                        sevenzip.write_entry(archive, io.BytesIO(r["content"][offset:offset + length]),
                                             f"e{index:06d}.part{number}")
                        offset += length
                else:
                    sevenzip.write_entry(archive, io.BytesIO(r["content"]), f"e{index:06d}")
        obj = writer.put_volume(writer.volume_key(1), path, sha256_of(path), method="zstd",
                                content_bytes=sum(r["size"] for r in files))
        fields = {}
        for index, r in enumerate(files):
            where = {"obj_key": obj.key, "obj_version": obj.version_id, "obj_sha256": obj.sha256}
            if not r.get("split"):
                fields[r["path"]] = {**where, "entry": f"e{index:06d}"}
                continue
            parts, offset = [], 0
            for number, length in enumerate(r["split"]):
                chunk = r["content"][offset:offset + length]
                digest = xxhash.xxh3_128(chunk if number != r.get("lie") else chunk + b"!").hexdigest()
                parts.append({**where, "entry": f"e{index:06d}.part{number}", "size": length, "xxh3": digest})
                offset += length
            fields[r["path"]] = {"part_rows": parts, "parts": len(parts),
                                 "xxh3": parts_digest((p["size"], p["xxh3"]) for p in parts)}
        return fields
