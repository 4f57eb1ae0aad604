"""Replaying a restore point's chain of manifests into a tree.

The chain is followed from the chosen point back to the full that opens it by each
manifest's link to its predecessor (key and SHA-256), never by point numbers
(``archiver/history.py``). Every manifest passes its HMAC, and the replayed tree must
match the digest each point recorded.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from .catalog import TreeTable, connect
from .errors import IntegrityError
from .history import History, Point
from .manifest import Manifest, dumps
from .repository import Repository


@dataclass(frozen=True)
class Scope:
    """The part of a tree a partial read needs: every path starting with one of ``prefixes`` (literal starts of
    paths, without the leading slash), and each ancestor of those, whose type decides whether a path below
    it is safe to restore. Each path's entries are replayed exactly as in a whole replay, so the rows of the
    scope are the rows the whole tree holds for them."""

    prefixes: tuple[str, ...]

    @classmethod
    def of(cls, starts: list[str]) -> "Scope | None":
        """The scope for these literal path starts; None (read everything) when one of them is empty."""
        cleaned = [s.strip("/") for s in starts]
        return None if not cleaned or any(not s for s in cleaned) else cls(tuple(cleaned))

    def holds(self, path: str) -> bool:
        return any(path.startswith(p) or p.startswith(path + "/") for p in self.prefixes)

    def needles(self) -> tuple[bytes, ...]:
        """Byte strings one of which every manifest line for a path of the scope holds. Manifest JSON escapes
        each character on its own and never leaves a bare quote inside a string, so the encoded path
        starts with the encoded prefix exactly when the path starts with the prefix."""
        out = []
        for prefix in self.prefixes:
            out.append(b'"path":' + dumps(prefix).encode()[:-1])
            parts = prefix.split("/")
            out += [b'"path":' + dumps("/".join(parts[:i])).encode() for i in range(1, len(parts))]
        return tuple(out)


def replay(
    repo: Repository,
    history: History,
    tip: Point,
    tree: TreeTable,
    workdir: Path,
    on_point: Callable[[Manifest], None] | None = None,
    before_point: Callable[[Manifest, TreeTable], None] | None = None,
    scope: Scope | None = None,
    every_digest: bool = True,
) -> Manifest:
    """Replay ``tip``'s chain, from the full that opens it, into ``tree``. ``before_point`` sees each
    manifest with the tree as it was before it; ``on_point`` sees it after.

    The tree digest each point recorded is checked at every point; with ``every_digest=False``, at the tip
    only: a restore of the tip needs the tree the tip's writer had, which its digest covers whole, and a
    digest is a pass over the whole tree (a chain of 30 points of 100,000 files spent seconds on them).
    ``verify`` checks every point.

    With a ``scope``, only the entries of its paths are replayed (one folder for ``ls``, the files a
    restore includes): every manifest of the chain is still authenticated and linked, but the tree digest
    each point recorded, which covers the whole tree, is not checked (docs/design.md, "Reading part of a
    point").

    Inside the caller's transaction if one is open; otherwise in one of its own, which keeps
    what was replayed before an error (verify counts it).
    """
    own = not tree.conn.in_transaction
    if own:
        tree.conn.execute("BEGIN")
    try:
        return _replay(repo, history, tip, tree, workdir, on_point, before_point, scope, every_digest)
    finally:
        if own and tree.conn.in_transaction:
            tree.conn.execute("COMMIT")


def _replay(repo: Repository, history: History, tip: Point, tree: TreeTable, workdir: Path,
            on_point: Callable[[Manifest], None] | None,
            before_point: Callable[[Manifest, TreeTable], None] | None = None,
            scope: Scope | None = None, every_digest: bool = True) -> Manifest:
    chain = history.chain(repo, tip, workdir)
    tree.clear()
    for index, current in enumerate(chain):
        if before_point is not None:
            before_point(current, tree)
        entries = current.entries() if scope is None else (
            e for e in current.entries(scope.needles())
            if not isinstance(e.get("path"), str) or scope.holds(e["path"]))  # a path not text: the tree refuses it
        tree.apply_manifest(entries, current.objects, f"Manifest {current.key}", opening=index == 0)
        recorded = current.header.get("tree", {}).get("digest")
        checked = scope is None and (every_digest or index == len(chain) - 1)
        if checked and tree.digest(parallel=repo.workers > 1) != recorded:
            raise IntegrityError(f"Replaying the chain up to {current.key} does not give the tree it recorded; the chain is inconsistent.")
        if on_point is not None:
            on_point(current)
    return chain[-1]


@contextmanager
def scratch_tree(workdir: Path, filename: str = "tree.sqlite") -> Iterator[TreeTable]:
    """A throw-away tree table in its own sqlite file under ``workdir``: memory stays flat for any tree."""
    conn = connect(workdir / filename)
    try:
        TreeTable.drop(conn, "tree")
        yield TreeTable(conn, "tree")
    finally:
        conn.close()
