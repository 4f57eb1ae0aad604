"""A property: whatever a forged point holds and whatever already sits in the target, nothing outside it changes."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver import config as config_mod
from archiver.cli import main
from archiver.repository import Repository
from tests.forge import Forger, row
from tests.scenario.test_hostile_restore import fingerprint

NAMES = st.sampled_from(["a", "b", "c"])
PATHS = st.lists(NAMES, min_size=1, max_size=3).map("/".join)
LINK_TARGETS = st.sampled_from(["OUTSIDE", "OUTSIDE/file.txt", "..", "../..", "a", "/", "b/c"])
KINDS = st.sampled_from(["dir", "file", "symlink"])
ENTRIES = st.dictionaries(PATHS, st.tuples(KINDS, LINK_TARGETS), min_size=1, max_size=8)


def materialize(root: Path, entries: dict, outside: Path) -> None:
    """Put ``entries`` in ``root`` as they are, links included, parents made as directories where possible."""
    for path, (kind, link) in sorted(entries.items()):
        place = root / path
        if any(parent.is_symlink() for parent in place.parents if root in parent.parents):
            continue  # setting up must not write through a link either
        try:
            place.parent.mkdir(parents=True, exist_ok=True)
            if kind == "dir":
                place.mkdir(exist_ok=True)
            elif kind == "file":
                place.write_text("already in the target\n")
            else:
                place.symlink_to(link.replace("OUTSIDE", str(outside)))
        except OSError:
            pass  # a parent is a file or a link: the pre-existing tree is as hostile as it happens to be


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(point=ENTRIES, existing=ENTRIES, overwrite=st.booleans())
def test_nothing_outside_the_target_ever_changes(tmp_path_factory, monkeypatch, point, existing, overwrite):
    root = tmp_path_factory.mktemp("prop")
    monkeypatch.setenv("XDG_STATE_HOME", str(root / "state"))
    outside = root / "outside"
    (outside / "c").mkdir(parents=True)
    for name in ("file.txt", "a", "b", "c/file.txt"):
        (outside / name).write_text("outside\n")
    (root / "password").write_text("pw\n")
    config = root / "genarc.toml"
    config.write_text(f'[repository]\nurl = "{root / "repo"}"\npassword_file = "{root / "password"}"\n'
                      f'[jobs.data]\nsources = ["{root}"]\n')
    assert main(["--config", str(config), "init"]) == 0
    repo = Repository.open(config_mod.load(config))
    forger = Forger(repo, "data", datetime(2027, 3, 1, 2, tzinfo=timezone.utc))
    rows = []
    for path, (kind, link) in point.items():
        rows.append(row(path, kind, content=b"from the point\n" if kind == "file" else b"",
                        target=link.replace("OUTSIDE", str(outside)) if kind == "symlink" else None))
    forger.point(rows)
    target = root / "target"
    target.mkdir()
    materialize(target, existing, outside)
    before = fingerprint(outside)
    beside = sorted(path.name for path in root.iterdir())
    argv = ["--config", str(config), "restore", "data", "--target", str(target)] + (["--overwrite"] if overwrite else [])
    code = main(argv)
    assert code in (0, 1, 2, 7)
    assert fingerprint(outside) == before
    assert sorted(path.name for path in root.iterdir()) == beside  # nothing new beside the target either
    assert os.path.isdir(target) and not os.path.islink(target)
