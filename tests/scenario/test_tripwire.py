"""The ransomware tripwire, driven as cron would drive it: a poisoned source trips it, ordinary work does not."""

from __future__ import annotations

import gzip
import os
import random
import shutil
import subprocess
from pathlib import Path

from archiver.errors import EXIT_OK, EXIT_SUSPICIOUS, EXIT_UNSAFE
from tests import treegen

DAYS = [f"2027-03-{d:02d}T02:00:00Z" for d in range(1, 29)]
WORDS = "invoice report minutes budget draft letter contract notes summary plan".split()


def documents(root: Path, count: int, seed: int = 3) -> list[Path]:
    """Office-like files: compressible text of a few KiB each, in a few folders."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        folder = root / f"dept{i % 7}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{rng.choice(WORDS)}-{i:04d}.{rng.choice(['txt', 'csv', 'md'])}"
        path.write_text(" ".join(rng.choice(WORDS) for _ in range(rng.randint(300, 1500))) + "\n")
        out.append(path)
    return out


def poison(files: list[Path], overwrite: float = 0.9, rename: float = 0.45) -> None:
    """What ransomware does: overwrite most files with random bytes, and rename half of those."""
    rng = random.Random(11)
    hit = rng.sample(files, int(len(files) * overwrite))
    for i, path in enumerate(hit):
        path.write_bytes(os.urandom(path.stat().st_size + 16))
        if i < int(len(files) * rename):
            path.rename(path.with_name(path.name + ".locked"))


def tripwire_config(ws, extra: str = "", **kwargs) -> None:
    ws.write_config(**kwargs)
    with open(ws.config, "a") as fh:
        fh.write(f'on_suspicion = "env | grep ^GENARC_ | sort > {ws.root / "hook.env"}"\n\n[tripwire]\n{extra}')


def suspicion(result) -> dict:
    return result.json["jobs"][0]["report"]["suspicion"]


def test_poisoned_source_trips_is_named_everywhere_and_stays_until_acknowledged(workspace):
    ws = workspace
    docs = documents(ws.src, 300)
    tripwire_config(ws, "protect_days = 20\n")
    metrics = ws.root / "genarc.prom"
    assert ws.genarc("init").code == EXIT_OK
    for day in DAYS[:3]:
        docs[0].write_text(docs[0].read_text() + "one more line\n")
        assert ws.genarc("run", "--json", now=day).code == EXIT_OK
    poison(docs)
    tripped = ws.genarc("run", "--json", "--metrics-file", str(metrics), now=DAYS[3])
    assert tripped.code == EXIT_SUSPICIOUS, tripped.err
    found = suspicion(tripped)
    assert found["suspicious"] and found["score"] >= 1
    assert found["profile"]["turned_dense"] == 270 and found["profile"]["renamed"] == 135
    assert any("went from compressible to incompressible" in r for r in found["reasons"])
    # The poisoned point is committed all the same: it is evidence.
    report = tripped.json["jobs"][0]["report"]
    assert report["manifest_key"] and report["point"] == 4
    # A local repository has no locks: the loss of protection is named, not hidden.
    assert "no object locks" in found["protected"]["error"] and "/p000003-" in found["protected"]["point"]
    assert "could not be protected" in tripped.err
    text = metrics.read_text()
    assert 'genarc_suspicious{job="data"} 1' in text and 'genarc_last_run_exit_code{job="data"} 11' in text
    hook = dict(line.split("=", 1) for line in (ws.root / "hook.env").read_text().splitlines())
    assert hook["GENARC_SUSPICIOUS"] == "1" and hook["GENARC_EXIT_CODE"] == "11"
    assert "/p000003-" in hook["GENARC_PROTECTED_POINT"] and float(hook["GENARC_SUSPICION_SCORE"]) >= 1

    # Nothing changes, but the trip is not acknowledged: cron keeps hearing about it, in words too.
    again = ws.genarc("run", now=DAYS[4])
    assert again.code == EXIT_SUSPICIOUS and "SUSPICIOUS" in again.out and "genarc acknowledge data" in again.out
    assert "not acknowledged" in again.out

    ack = ws.genarc("acknowledge", "data", now=DAYS[4])
    assert ack.code == EXIT_OK and "acknowledged the trip" in ack.out
    assert ws.genarc("acknowledge", "data", now=DAYS[4]).out.startswith("data: no unacknowledged")
    calm = ws.genarc("run", "--json", "--metrics-file", str(metrics), now=DAYS[5])
    assert calm.code == EXIT_OK and not suspicion(calm)["suspicious"]
    assert 'genarc_suspicious{job="data"} 0' in metrics.read_text()


def test_the_poisoned_points_are_not_learned_while_a_trip_is_open(workspace):
    """Poisoning in two steps: the second half is judged against the clean history, not the first half."""
    ws = workspace
    docs = documents(ws.src, 200)
    tripwire_config(ws)
    assert ws.genarc("init").code == EXIT_OK
    for day in DAYS[:6]:
        docs[1].write_text(docs[1].read_text() + "x\n")
        assert ws.genarc("run", now=day).code == EXIT_OK
    poison(docs[:100], rename=0)
    first = ws.genarc("run", "--json", now=DAYS[6])
    assert first.code == EXIT_SUSPICIOUS
    protected = suspicion(first)["protected"]["point"]
    poison(docs[100:], rename=0)
    second = ws.genarc("run", "--json", now=DAYS[7])
    assert second.code == EXIT_SUSPICIOUS
    assert suspicion(second)["protected"]["point"] == protected  # still the last clean point
    assert suspicion(second)["score"] >= 1  # the first poisoned run did not become "normal"


def test_watch_measures_a_poisoned_point_when_the_client_tripwire_is_off(workspace):
    ws = workspace
    docs = documents(ws.src, 150)
    tripwire_config(ws, "enabled = false\n")
    assert ws.genarc("init").code == EXIT_OK
    assert ws.genarc("run", now=DAYS[0]).code == EXIT_OK
    poison(docs)
    quiet = ws.genarc("run", "--json", now=DAYS[1])
    assert quiet.code == EXIT_OK  # switched off: the client says nothing beyond a note
    assert any("would have tripped" in n for n in quiet.json["jobs"][0]["report"]["notes"])
    # The watchdog uses its own job file: its tripwire is on.
    ws.config.write_text(ws.config.read_text().replace("enabled = false", "enabled = true"))
    watched = ws.genarc("watch", "--json", now=DAYS[1])
    assert watched.code == EXIT_UNSAFE
    kinds = {f["kind"]: f["message"] for f in watched.json["findings"]}
    assert "suspicious" in kinds and "/p000002-" in kinds["suspicious"]
    assert "went from compressible to incompressible" in kinds["suspicious"]


def test_switching_the_tripwire_off_is_drift(workspace):
    ws = workspace
    documents(ws.src, 30)
    tripwire_config(ws)
    assert ws.genarc("init").code == EXIT_OK
    assert ws.genarc("run", now=DAYS[0]).code == EXIT_OK
    ws.config.write_text(ws.config.read_text() + "enabled = false\n")
    (ws.src / "new.txt").write_text("new\n")
    assert ws.genarc("run", now=DAYS[1]).code == EXIT_OK
    watched = ws.genarc("watch", "--json", now=DAYS[1])
    drift = [f["message"] for f in watched.json["findings"] if f["kind"] == "drift"]
    assert drift and "tripwire: True -> False" in drift[0]


# -- ordinary work must not trip it ----------------------------------------------------------------
def run_days(ws, days: list[str], change) -> list[float]:
    scores = []
    for index, day in enumerate(days):
        if index:
            change(index)
        result = ws.genarc("run", "--json", now=day)
        assert result.code == EXIT_OK, (day, result.err, result.json["jobs"][0]["report"]["suspicion"])
        scores.append(suspicion(result)["score"])
    return scores


def test_a_week_of_one_percent_daily_changes_does_not_trip(workspace):
    ws = workspace
    ws.src.mkdir(exist_ok=True)
    treegen.build(ws.src, files=800, big_mb=2)
    (ws.src / "unreadable.key").unlink()
    tripwire_config(ws)
    assert ws.genarc("init").code == EXIT_OK
    scores = run_days(ws, DAYS[:8], lambda day: treegen.mutate(ws.src, day, share=0.01))
    with ws.capsys.disabled():
        print(f"\n1 % a day for a week: scores {scores}")
    assert max(scores) < 1


def fake_usr(root: Path) -> dict[str, list[Path]]:
    """A slice of this machine's /usr: package docs (gzip'd changelogs), programs and Python modules."""
    kinds: dict[str, list[Path]] = {"gz": [], "elf": [], "py": []}
    docs = sorted(p for p in Path("/usr/share/doc").glob("*/changelog*.gz") if p.stat().st_size < 200_000)[:150]
    programs = sorted(p for p in Path("/usr/bin").iterdir()
                      if p.is_file() and not p.is_symlink() and 4096 < p.stat().st_size < 400_000)[:60]
    modules = sorted(p for p in Path("/usr/lib").glob("python3*/*.py") if p.is_file())[:150]
    for kind, found, under in (("gz", docs, "share/doc"), ("elf", programs, "bin"), ("py", modules, "lib/python3")):
        for source in found:
            target = root / under / (source.parent.name if kind == "gz" else "") / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            kinds[kind].append(target)
    for i in range(20):  # versioned shared libraries
        lib = root / "lib" / f"libthing{i}.so.1.{i}.0"
        lib.write_bytes(programs[i % len(programs)].read_bytes() if programs else b"\x7fELF" * 2000)
        kinds.setdefault("lib", []).append(lib)
    return kinds


def upgrade(kinds: dict[str, list[Path]], share: float = 0.3, seed: int = 5) -> None:
    """An upgrade of about a third of the packages: new changelogs, rebuilt programs, new module code,
    libraries replaced by their next version."""
    rng = random.Random(seed)
    for path in rng.sample(kinds["gz"], int(len(kinds["gz"]) * share)):
        text = gzip.decompress(path.read_bytes())
        path.write_bytes(gzip.compress(b"pkg (2.0-1) unstable; urgency=medium\n\n  * New upstream release.\n\n" + text))
    for path in rng.sample(kinds["elf"], int(len(kinds["elf"]) * share)):
        data = bytearray(path.read_bytes())
        for _ in range(50):
            at = rng.randrange(len(data))
            data[at] = rng.randrange(256)
        path.write_bytes(bytes(data) + b"\x00" * rng.randint(0, 4096))
    for path in rng.sample(kinds["py"], int(len(kinds["py"]) * share)):
        path.write_text(path.read_text(errors="replace") + "\n# patched in 2.0\n")
    for path in rng.sample(kinds["lib"], int(len(kinds["lib"]) * share)):
        major, minor, patch = path.name.rsplit(".so.", 1)[1].split(".")
        path.rename(path.with_name(path.name.rsplit(".so.", 1)[0] + f".so.{major}.{minor}.{int(patch) + 1}"))


def test_a_package_upgrade_under_usr_does_not_trip(workspace):
    ws = workspace
    usr = ws.src / "usr"
    kinds = fake_usr(usr)
    assert len(kinds["gz"]) > 50 and len(kinds["elf"]) > 20 and len(kinds["py"]) > 50
    tripwire_config(ws, sources=[str(usr)])
    assert ws.genarc("init").code == EXIT_OK
    scores = run_days(ws, DAYS[:2], lambda day: upgrade(kinds))
    with ws.capsys.disabled():
        print(f"\npackage upgrade of a third of /usr: scores {scores}")
    assert max(scores) < 1


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=dev", "-c", "user.email=dev@example.org", *args],
                   check=True, capture_output=True)


def test_a_git_checkout_of_another_branch_does_not_trip(workspace):
    ws = workspace
    repo = ws.src / "project"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    rng = random.Random(9)
    sources = []
    for i in range(300):
        path = repo / f"pkg{i % 12}" / f"module{i:03d}.c"
        path.parent.mkdir(exist_ok=True)
        path.write_text("".join(f"int f{i}_{j}(int x) {{ return x * {j}; }}\n" for j in range(rng.randint(20, 120))))
        sources.append(path)
    (repo / "logo.png").write_bytes(os.urandom(30_000))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "main")
    git(repo, "checkout", "-q", "-b", "rewrite")
    for path in rng.sample(sources, 150):  # half the modules rewritten
        path.write_text(path.read_text().replace("return x", "return -x") + "/* rewritten */\n")
    for path in rng.sample(sources, 40):  # and a C++ migration of some
        if path.exists():
            git(repo, "mv", str(path), str(path.with_suffix(".cpp")))
    (repo / "logo.png").write_bytes(os.urandom(30_000))
    git(repo, "commit", "-q", "-a", "-m", "rewrite")
    git(repo, "checkout", "-q", "main")
    tripwire_config(ws, exclude=["**/.git/objects/**"])
    assert ws.genarc("init").code == EXIT_OK
    scores = run_days(ws, DAYS[:2], lambda day: git(repo, "checkout", "-q", "rewrite"))
    with ws.capsys.disabled():
        print(f"\ngit checkout of another branch: scores {scores}")
    assert max(scores) < 1


def test_a_photo_import_does_not_trip(workspace):
    ws = workspace
    documents(ws.src / "documents", 200)
    tripwire_config(ws)
    assert ws.genarc("init").code == EXIT_OK

    def photo_import(day: int) -> None:
        card = ws.src / "photos" / f"2027-03-{day:02d}"
        card.mkdir(parents=True)
        for i in range(400):
            (card / f"IMG_{i:04d}.JPG").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(random.randint(20_000, 60_000)))
            (card / f"IMG_{i:04d}.xmp").write_text("<x:xmpmeta>rating 3</x:xmpmeta>\n" * 20)

    scores = run_days(ws, DAYS[:3], photo_import)
    with ws.capsys.disabled():
        print(f"\nphoto imports: scores {scores}")
    assert max(scores) < 1


def test_watch_names_forged_points_and_never_crashes_on_them(workspace, monkeypatch):
    """Headers and entries a genarc run never writes (the attacker holds the password): findings, not exit 70."""
    from datetime import datetime, timezone

    import archiver.point as point_mod
    from archiver import config as config_mod
    from archiver.repository import Repository
    from tests.forge import Forger, row

    ws = workspace
    documents(ws.src, 30)
    tripwire_config(ws)
    assert ws.genarc("init").code == EXIT_OK
    assert ws.genarc("run", now=DAYS[0]).code == EXIT_OK
    repo = Repository.open(config_mod.load(ws.config))
    real = point_mod.build_header
    tweaks = {
        "huge": lambda h: h.update(profile={"files_before": 1, "turned_dense": 10**400}),
        "nolock": lambda h: h.update(lock={"mode": "compliance"}),
        "noconfig": lambda h: h.update(config=None),
    }
    for job, tweak in tweaks.items():
        def build(**kw):
            header = real(**kw)
            tweak(header)
            return header
        monkeypatch.setattr(point_mod, "build_header", build)
        forger = Forger(repo, job, datetime(2027, 3, 1, 2, tzinfo=timezone.utc))
        rows = [row("a", content=b"a\n")]
        forger.point(rows)
        forger.point(rows, listed=[], full=False)
    monkeypatch.setattr(point_mod, "build_header", real)
    forger = Forger(repo, "surrogate", datetime(2027, 3, 1, 2, tzinfo=timezone.utc))
    forger.point([row("a", content=b"a\n")])
    forger.point([row("a", content=b"a\n")], listed=[({**row("a", content=b"a\n"), "path": b"a"}, "meta")],
                 full=False)
    watched = ws.genarc("watch", "--json", now=DAYS[0])
    assert watched.code == EXIT_UNSAFE, watched.err
    assert "internal error" not in watched.err and "Traceback" not in watched.err
