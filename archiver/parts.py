"""Files larger than a volume are stored in parts (pure arithmetic, shared by the packer, the catalog and restore).

A part is ``part_size`` bytes of the file (the last one shorter), stored as an entry of its own with its
own xxh3-128, so temporary disk stays within a volume per packing process (and per upload in flight)
whatever the file's size, and an incremental stores again only the parts that changed. Parts refer only
to volumes of their generation.
"""

from __future__ import annotations

from typing import Iterable

import xxhash

PART_SIZE = 8 * 1024**2  # a file larger than a volume is stored in parts of this size (at most the volume size)


def part_size(volume_size: int) -> int:
    """The size of the parts of a file larger than ``volume_size``."""
    return max(1, min(PART_SIZE, volume_size))


def part_spans(size: int, volume_size: int) -> list[tuple[int, int]]:
    """(offset, length) of each part of a file of ``size`` bytes, or [] when it is stored whole."""
    if size <= volume_size:
        return []
    step = part_size(volume_size)
    return [(offset, min(step, size - offset)) for offset in range(0, size, step)]


def parts_digest(parts: Iterable[tuple[int, str]]) -> str:
    """The content hash of a file stored in parts: xxh3-128 over each part's (size, xxh3-128), prefixed ``p``
    so it never equals the hash of a file stored whole. It changes when any part does."""
    h = xxhash.xxh3_128()
    for size, digest in parts:
        h.update(size.to_bytes(8, "little") + bytes.fromhex(digest))
    return "p" + h.hexdigest()
