"""Loading a generation's chain of manifests and replaying it into a tree.

A chain is valid when its points are numbered 1..n without a gap, point 1 is a
full, every later point names its predecessor's key and SHA-256, every manifest
passes its HMAC, and the replayed tree matches the digest each point recorded.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from . import manifest as manifest_mod
from .catalog import TreeTable, connect
from .errors import IntegrityError
from .layout import ManifestName
from .manifest import Manifest
from .repository import Repository


def check_link(manifest: Manifest, previous: Manifest | None) -> None:
    parent = manifest.header.get("parent")
    if previous is None:
        if manifest.header.get("kind") != "full" or parent is not None:
            raise IntegrityError(f"Manifest {manifest.key} should open its generation with a full but does not.")
        return
    if manifest.header.get("kind") != "incremental" or not parent:
        raise IntegrityError(f"Manifest {manifest.key} does not link to the previous point {previous.key}.")
    if parent.get("key") != previous.key or parent.get("sha256") != previous.sha256:
        raise IntegrityError(
            f"Manifest {manifest.key} links to a different predecessor than {previous.key}; the chain was altered."
        )


def missing_points(names: list[ManifestName], upto: ManifestName) -> list[int]:
    """Point numbers absent from ``upto``'s chain, judged from the manifest listing alone."""
    present = {n.pseq for n in names if n.gseq == upto.gseq and n.pseq <= upto.pseq}
    return sorted(set(range(1, upto.pseq + 1)) - present)


def replay(
    repo: Repository,
    names: list[ManifestName],
    upto: ManifestName,
    tree: TreeTable,
    workdir: Path,
    on_point: Callable[[Manifest], None] | None = None,
) -> Manifest:
    """Replay the chain of ``upto``'s generation up to and including ``upto`` into ``tree``.

    Inside the caller's transaction if one is open; otherwise in one of its own, which keeps
    what was replayed before an error (verify counts it).
    """
    own = not tree.conn.in_transaction
    if own:
        tree.conn.execute("BEGIN")
    try:
        return _replay(repo, names, upto, tree, workdir, on_point)
    finally:
        if own and tree.conn.in_transaction:
            tree.conn.execute("COMMIT")


def _replay(repo: Repository, names: list[ManifestName], upto: ManifestName, tree: TreeTable, workdir: Path,
            on_point: Callable[[Manifest], None] | None) -> Manifest:
    chain = [n for n in names if n.gseq == upto.gseq and n.pseq <= upto.pseq]
    chain.sort(key=lambda n: n.pseq)
    missing = missing_points(names, upto)
    if missing or len(chain) != upto.pseq:
        raise IntegrityError(
            f"Generation {upto.gseq} of job {upto.job} is missing the manifest of point(s) "
            f"{', '.join(map(str, missing)) or 'with a duplicate number'}; its chain is broken."
        )
    tree.clear()
    previous: Manifest | None = None
    for name in chain:
        current = manifest_mod.load(repo, name, workdir)
        check_link(current, previous)
        what = f"Manifest {name.key}"
        tree.apply_manifest(current.entries(), current.objects, what)
        recorded = current.header.get("tree", {}).get("digest")
        if tree.digest() != recorded:
            raise IntegrityError(f"Replaying the chain up to {name.key} does not give the tree it recorded; the chain is inconsistent.")
        if on_point is not None:
            on_point(current)
        if previous is not None:
            previous.plain_path.unlink(missing_ok=True)
        previous = current
    assert previous is not None
    return previous


@contextmanager
def scratch_tree(workdir: Path, filename: str = "tree.sqlite") -> Iterator[TreeTable]:
    """A throw-away tree table in its own sqlite file under ``workdir``: memory stays flat for any tree."""
    conn = connect(workdir / filename)
    try:
        conn.execute("DROP TABLE IF EXISTS tree")
        yield TreeTable(conn, "tree")
    finally:
        conn.close()

