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
from typing import Callable

from .changes import ScanTable
from .errors import GenarcError
from .point import PointWriter
from .store import ObjectInfo
from .uploads import UploadQueue

# Each copy is a handful of round trips around the server's own work, with no local disk: eight at once keep a
# far or busy server occupied (on Ceph RGW on loopback, two rollovers each took 2.19 and 2.73 s with eight, 2.71 and
# 3.11 s with four), and stay within the S3 client's pool of connections.
COPIES_IN_FLIGHT = 8


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


def synthesize(writer: PointWriter, scan: ScanTable, content: dict[str, int | None], threshold: float,
               note: Callable[[str], None], packing: dict[str, tuple[str, bool]] | None = None,
               sizes: dict[str, int] | None = None) -> SyntheticReport:
    """Copy the live volumes into the writer's generation and mark the rest of the carried content for repacking.

    Carried rows of the scan (unchanged or metadata-only) end up either pointing at a copy in
    the new generation or marked to be packed again. ``sizes``: each volume's size as its manifest
    recorded it; a copy of another size is refused (and its files repacked).
    """
    live = scan.carried_bytes()
    sources = scan.carried_volumes()
    to_copy, to_repack = choose(live, content, threshold)
    report = SyntheticReport(next_index=len(to_copy) + 1)

    def send(job: tuple[int, str]) -> ObjectInfo | GenarcError:
        index, old = job
        version_id, sha256 = sources[old]
        try:
            return writer.send_copy(old, version_id, sha256, writer.volume_key(index), size=(sizes or {}).get(old))
        except GenarcError as exc:
            return exc

    def record(job: tuple[int, str], sent: ObjectInfo | GenarcError) -> None:
        index, old = job
        if isinstance(sent, GenarcError):
            # Nothing will point at a failed or mismatching copy: its files are repacked from the source.
            note(f"server-side copy of {old} failed ({sent.message}); its files are repacked")
            report.failed_copies.append(old)
            to_repack.append(old)
            return
        sha256 = sources[old][1]
        copy = writer.record_copy(old, sent, sha256, writer.volume_key(index), content_bytes=content.get(old),
                                  packing=(packing or {}).get(old))
        moves.append((old, copy.key, copy.version_id, sha256))
        report.copied_volumes += 1
        report.copied_bytes += copy.size

    # Copies are server work and a round trip or several each: several go at once. They are recorded here, once
    # all have ended, in the order of their keys, so the same rollover writes the same manifest.
    ended: dict[tuple[int, str], ObjectInfo | GenarcError] = {}
    with UploadQueue(send, ended.__setitem__, lambda job: None, slots=COPIES_IN_FLIGHT) as copies:
        for job in enumerate(list(to_copy), start=1):
            copies.add(job)
    moves: list[tuple[str, str, str | None, str]] = []
    for job in sorted(ended):
        record(job, ended[job])
    scan.repoint(moves)
    for old in to_repack:
        report.repacked_volumes += 1
        report.repacked_bytes += live.get(old, 0)
        scan.repack(old)
    return report
