"""Replaying a restore point's chain of manifests into a tree.

The chain is followed from the chosen point back to the full that opens it by each
manifest's link to its predecessor (key and SHA-256), never by point numbers
(``archiver/history.py``). Every manifest passes its HMAC, and the replayed tree must
match the digest each point recorded.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .catalog import TreeTable, connect
from .errors import IntegrityError
from .history import History, Point
from .manifest import Manifest
from .repository import Repository


def replay(
    repo: Repository,
    history: History,
    tip: Point,
    tree: TreeTable,
    workdir: Path,
    on_point: Callable[[Manifest], None] | None = None,
    before_point: Callable[[Manifest, TreeTable], None] | None = None,
) -> Manifest:
    """Replay ``tip``'s chain, from the full that opens it, into ``tree``. ``before_point`` sees each
    manifest with the tree as it was before it; ``on_point`` sees it after.

    Inside the caller's transaction if one is open; otherwise in one of its own, which keeps
    what was replayed before an error (verify counts it).
    """
    own = not tree.conn.in_transaction
    if own:
        tree.conn.execute("BEGIN")
    try:
        return _replay(repo, history, tip, tree, workdir, on_point, before_point)
    finally:
        if own and tree.conn.in_transaction:
            tree.conn.execute("COMMIT")


def _replay(repo: Repository, history: History, tip: Point, tree: TreeTable, workdir: Path,
            on_point: Callable[[Manifest], None] | None,
            before_point: Callable[[Manifest, TreeTable], None] | None = None) -> Manifest:
    chain = history.chain(repo, tip, workdir)
    tree.clear()
    for current in chain:
        if before_point is not None:
            before_point(current, tree)
        tree.apply_manifest(current.entries(), current.objects, f"Manifest {current.key}")
        recorded = current.header.get("tree", {}).get("digest")
        if tree.digest() != recorded:
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
