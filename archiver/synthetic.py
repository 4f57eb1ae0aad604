"""Synthetic fulls: open generation g+1 by server-side copy and repack, not by re-uploading everything.

For each volume of g that still holds content of the latest tree:
- **copy** it server-side into g+1 (a new write-once key with g+1's lock) when at least
  ``copy_threshold`` of its bytes are still live; the copy's SHA-256 is checked against
  the recorded one, and a copy that fails or differs is repacked instead;
- otherwise **repack**: its live files are read from the source and packed afresh.
Changed and new files are packed as in any run. The full manifest of g+1 lists the whole
tree and points only at g+1 objects; each copied object records the g object it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .catalog import TreeTable
from .errors import GenarcError
from .generation import GenerationRef
from .layout import volume_key
from .repository import Repository
from .store import Retention

UNCHANGED = "(op IS NULL OR op = 'meta')"


@dataclass
class SyntheticReport:
    copied_volumes: int = 0
    copied_bytes: int = 0
    repacked_volumes: int = 0
    repacked_bytes: int = 0
    failed_copies: list[str] = field(default_factory=list)
    next_index: int = 1  # volume numbers below this were used by copies, even failed ones: never reuse a key


def choose(live: dict[str, int], content: dict[str, int | None], threshold: float) -> tuple[list[str], list[str]]:
    """Pure: which volumes to copy and which to repack, by their share of live bytes."""
    copy, repack = [], []
    for key in sorted(live):
        total = content.get(key)
        share = live[key] / total if total else 0.0
        (copy if total and share >= threshold else repack).append(key)
    return copy, repack


def synthesize(repo: Repository, job: str, scan: TreeTable, content: dict[str, int | None], gen: GenerationRef,
               run_id: str, retention: Retention | None, threshold: float, objects: list[dict[str, Any]],
               note: Callable[[str], None]) -> SyntheticReport:
    """Copy the live volumes into ``gen`` and mark the rest of the unchanged content for repacking.

    Rows of the scan table that carried content from g (unchanged or metadata-only) end up either
    pointing at a copy in ``gen`` (objects appended to ``objects``) or marked ``op = 'pack'``.
    """
    conn = scan.conn
    live = {row[0]: int(row[1]) for row in conn.execute(
        f"SELECT obj_key, sum(size) FROM scan WHERE type = 'file' AND size > 0 AND obj_key IS NOT NULL AND {UNCHANGED} "
        "GROUP BY obj_key")}
    sources = {row[0]: (row[1], row[2]) for row in conn.execute(
        f"SELECT DISTINCT obj_key, obj_version, obj_sha256 FROM scan WHERE obj_key IS NOT NULL AND {UNCHANGED}")}
    to_copy, to_repack = choose(live, content, threshold)
    report = SyntheticReport(next_index=len(to_copy) + 1)
    for index, old in enumerate(list(to_copy), start=1):
        version_id, sha256 = sources[old]
        new = volume_key(job, gen.seq, gen.start, 1, run_id, index)
        try:
            info = repo.store.copy(old, new, src_version_id=version_id, sha256=sha256, retention=retention)
        except GenarcError as exc:
            # Nothing will point at a failed or mismatching copy: its files are repacked from the source.
            note(f"server-side copy of {old} failed ({exc.message}); its files are repacked")
            report.failed_copies.append(old)
            to_repack.append(old)
            continue
        objects.append({"key": new, "size": info.size, "sha256": sha256, "version_id": info.version_id,
                        "method": "copy", "copied_from": old, "content_bytes": content.get(old)})
        conn.execute(f"UPDATE scan SET obj_key = ?, obj_version = ?, obj_sha256 = ? WHERE obj_key = ? AND {UNCHANGED}",
                     (new, info.version_id, sha256, old))
        report.copied_volumes += 1
        report.copied_bytes += info.size
    for old in to_repack:
        report.repacked_volumes += 1
        report.repacked_bytes += live.get(old, 0)
        conn.execute(f"UPDATE scan SET op = 'pack' WHERE obj_key = ? AND {UNCHANGED} AND type = 'file' AND size > 0",
                     (old,))
    return report
