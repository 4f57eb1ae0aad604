"""Entries a restore must refuse, and verify must name: paths that climb, and entries under a non-directory.

A manifest that passes its HMAC check proves only that someone with the password wrote
it. A forged point can list ``../../etc/cron.d/x``, an absolute path, or a symlink
``evil -> /etc`` next to a file ``evil/passwd``. genarc's own runs never write such
entries, so each one is named as an integrity finding; restore refuses it and goes on
with the rest (its writer could not follow the link anyway, see ``archiver/target.py``).
"""

from __future__ import annotations

import os
from typing import Iterator

from .catalog import TreeTable, path_name


def path_problem(name: str) -> str | None:
    """Why a manifest path is unsafe to restore, or None. Paths are relative, with plain components."""
    if not name:
        return "an empty path"
    if name.startswith("/"):
        return "an absolute path"
    if "\x00" in name:
        return "a NUL byte in the path"
    parts = name.split("/")
    if any(p in (".", "..") for p in parts):
        return "a '.' or '..' component"
    if any(p == "" for p in parts):
        return "an empty component ('//' or a trailing '/')"
    if any(len(os.fsencode(p)) > 255 for p in parts):
        return "a name longer than 255 bytes"
    return None


def newly_unsafe(tree: TreeTable, seen: set[tuple[bytes, str]]) -> list[tuple[bytes, str]]:
    """The unsafe entries of ``tree`` not in ``seen``, which they join: each is named once over many points."""
    fresh = [item for item in unsafe_entries(tree) if item not in seen]
    seen.update(fresh)
    return fresh


def unsafe_entries(tree: TreeTable) -> Iterator[tuple[bytes, str]]:
    """(path, reason) for every entry of ``tree`` that a restore must refuse, in path order."""
    for (path,) in tree.conn.execute(f"SELECT path FROM {tree.name} ORDER BY path"):
        problem = path_problem(path_name(path))
        if problem is not None:
            yield path, f"the point holds {problem}"
    # Children of a file or symlink: the path of each one's topmost non-directory ancestor.
    # Children of p sort between p + '/' and p + '0' ('0' follows '/' in ASCII).
    for path, parent, kind in tree.conn.execute(f"""
            SELECT c.path, min(p.path), p.type FROM {tree.name} AS p JOIN {tree.name} AS c
              ON c.path >= CAST(p.path || '/' AS BLOB) AND c.path < CAST(p.path || '0' AS BLOB)
            WHERE p.type != 'dir' GROUP BY c.path ORDER BY c.path"""):
        what = "symlink" if kind == "symlink" else kind
        yield path, f"it lies under the {what} {path_name(parent)} of the same point"
