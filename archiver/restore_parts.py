"""Reading the parts of a file stored in parts out of a volume, into a new file at each part's offset.

Restore (``archiver/restore.py``) creates the file and puts it in place once every part is written and checked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import GenarcError
from .repository import Repository
from .sevenzip import EntryTooLarge, HashSink, extract_entries
from .store import sha256_of
from .target import NewFile, stops_everything


class PositionedWriter:
    """Writes a part at its offset in a new file (a sparse file's zero blocks are left as holes)."""

    def __init__(self, fd: int, offset: int, holes: bool) -> None:
        self.fd, self.position, self.holes = fd, offset, holes

    BLOCK = 64 * 1024

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            # Up to the next 64 KiB boundary of the file: an all-zero block of a sparse file is left a hole.
            step = min(len(view), self.BLOCK - self.position % self.BLOCK) if self.holes else len(view)
            block = view[:step]
            if not (self.holes and bytes(block).count(0) == step):
                done = 0
                while done < step:
                    done += os.pwrite(self.fd, block[done:], self.position + done)
            view, self.position = view[step:], self.position + step
        return len(data)

    def flush(self) -> None:
        pass


def write_parts(repo: Repository, new: NewFile, row: dict[str, Any], key: str, members: list[dict[str, Any]],
                 workdir: Path) -> str | None:
    """Extract the parts a volume holds into ``new`` at their offsets; what went wrong, or None."""
    local = workdir / "volume.7z"
    version_id, sha256 = members[0]["obj_version"], members[0]["obj_sha256"]
    try:
        repo.store.download(key, local, version_id=version_id)
    except GenarcError as exc:
        return f"object {key} {unreadable(repo, key, version_id, exc)}"
    try:
        if sha256_of(local) != sha256:
            return f"object {key} does not match its recorded SHA-256 (corrupt or altered)"
        by_entry: dict[str, list[dict[str, Any]]] = {}
        for part in members:
            by_entry.setdefault(part["entry"], []).append(part)
        sinks: dict[str, HashSink] = {}

        def make(entry: str) -> HashSink | None:
            if entry not in by_entry or entry in sinks:
                return None
            sink = HashSink([PositionedWriter(new.out.fileno(), p["offset"], bool(row["sparse"])) for p in by_entry[entry]],
                            limit=max(p["size"] for p in by_entry[entry]))
            sinks[entry] = sink
            return sink

        try:
            extract_entries(local, repo.keys.password, list(by_entry), workdir / "x", make)
        except OSError as exc:
            if stops_everything(exc):
                raise
            return f"cannot be written into the target ({exc.strerror})"  # one file's trouble (a forged offset)
        except Exception as exc:  # py7zr raises many unrelated types for damaged data
            why = "holds more bytes than recorded" if isinstance(exc, EntryTooLarge) else f"cannot be decoded ({type(exc).__name__})"
            return f"object {key} {why}"
        for entry, parts in by_entry.items():
            sink = sinks.get(entry)
            if sink is None:
                return f"a part of it is missing from object {key}"
            if not all(sink.matches(p["xxh3"], p["size"]) for p in parts):
                return f"a part of it from object {key} fails its xxh3 check"
        return None
    finally:
        local.unlink(missing_ok=True)


def unreadable(repo: Repository, key: str, version_id: str | None, exc: GenarcError) -> str:
    """Why an object could not be read: "lost" when the bucket no longer holds its recorded version.

    A key without list rights often hears 403 for a missing object, so a refusal is checked against the listing."""
    try:
        infos = list(repo.store.list_versions(key) if repo.store.capabilities.versioning else repo.store.list(key))
    except GenarcError:
        return f"cannot be read ({exc.message})"
    present = [i for i in infos if i.key == key and not i.is_delete_marker and not i.hidden
               and (version_id is None or i.version_id == version_id)]
    if not present:
        return ("is lost: the bucket no longer holds the version genarc recorded" if version_id
                else "is lost: the bucket no longer holds it")
    return f"cannot be read ({exc.message})"
