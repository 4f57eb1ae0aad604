"""docs/restore-without-genarc.md, tested: a full generation's volumes open with stock tools."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from archiver.errors import EXIT_OK

PASSWORD = "correct horse battery staple"
SEVEN_ZIP = shutil.which("7zz") or shutil.which("7z")


def make_tree(src: Path) -> dict[str, bytes]:
    files = {
        "docs/readme.txt": b"hello from genarc\n" * 200,
        "docs/deep/nested/notes.md": b"# notes\n" * 500,
        "bin/random.bin": os.urandom(200_000),  # incompressible: goes into a COPY volume
        "unicode/naïve café.txt": "ünïcödé\n".encode() * 30,
    }
    for rel, data in files.items():
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return {str(src / rel).lstrip("/"): data for rel, data in files.items()}


def full_volumes(repo: Path) -> list[Path]:
    return sorted(repo.glob("data/volumes/g000001-*/p000001-*/v*.7z"))


def check_extracted(out: Path, expected: dict[str, bytes]) -> None:
    """Every file extracted by hand holds its bytes; a file larger than a volume is joined from its parts with
    the command docs/restore-without-genarc.md prints (`cat restored/PATH.genarc-part* > PATH`)."""
    joined = 0
    for name, data in expected.items():
        if not (out / name).exists() and (out / f"{name}.genarc-part000000").exists():
            subprocess.run(["sh", "-c", 'cat "$1".genarc-part* > "$1"', "sh", str(out / name)], check=True)
            joined += 1
        assert (out / name).read_bytes() == data, name
    assert joined or all(len(data) <= 64 * 1024 for data in expected.values())
    assert "cat restored/PATH.genarc-part* > PATH" in (SCRIPT.parents[1] / "docs" / "restore-without-genarc.md").read_text()


@pytest.mark.parametrize("compression", ["zstd", "deflate"])
def test_py7zr_command_line_extracts_a_full_generation(workspace, compression):
    expected = make_tree(workspace.src)
    workspace.write_config(password=PASSWORD, compression=compression, volume_size="64KiB")
    assert workspace.genarc("init").code == EXIT_OK
    assert workspace.genarc("run", now="2027-02-01T02:00:00Z").code == EXIT_OK
    volumes = full_volumes(workspace.repo)
    assert len(volumes) >= 2
    out = workspace.root / "out"
    for volume in volumes:
        # py7zr asks for the password with getpass; without a terminal it reads standard input.
        done = subprocess.run([sys.executable, "-m", "py7zr", "x", "-P", str(volume), str(out)],
                              input=PASSWORD + "\n", capture_output=True, text=True, start_new_session=True)
        assert done.returncode == 0, done.stderr
    check_extracted(out, expected)


@pytest.mark.skipif(SEVEN_ZIP is None, reason="Debian's 7zip (7zz) is not installed")
@pytest.mark.parametrize("compression", ["deflate", "lzma2"])
def test_stock_7zip_extracts_stock_compatible_methods(workspace, compression):
    expected = make_tree(workspace.src)
    workspace.write_config(password=PASSWORD, compression=compression, volume_size="64KiB")
    assert workspace.genarc("init").code == EXIT_OK
    assert workspace.genarc("run", now="2027-02-01T02:00:00Z").code == EXIT_OK
    out = workspace.root / "out"
    for volume in full_volumes(workspace.repo):
        done = subprocess.run([SEVEN_ZIP, "x", f"-p{PASSWORD}", f"-o{out}", "-y", str(volume)],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    check_extracted(out, expected)


@pytest.mark.skipif(SEVEN_ZIP is None, reason="Debian's 7zip (7zz) is not installed")
def test_stock_7zip_needs_the_password_to_even_list_names(workspace):
    make_tree(workspace.src)
    workspace.write_config(password=PASSWORD, compression="deflate")
    assert workspace.genarc("init").code == EXIT_OK
    assert workspace.genarc("run", now="2027-02-01T02:00:00Z").code == EXIT_OK
    done = subprocess.run([SEVEN_ZIP, "l", "-pwrong", str(full_volumes(workspace.repo)[0])],
                          capture_output=True, text=True)
    assert done.returncode != 0 and "readme.txt" not in done.stdout


SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "restore-without-genarc.py"
DAYS = [f"2027-02-{d:02d}T02:00:00Z" for d in range(1, 8)]


def awkward_history(ws) -> dict[int, dict]:
    """Four daily runs, two-day generations (so a synthetic full), odd names, deletions before a
    rollover, links of both kinds, empty files and folders; returns each point's tree by run."""
    from tests.conftest import snapshot

    src = ws.src
    (src / "docs").mkdir()
    (src / "docs" / "keep.txt").write_text("kept all week\n" * 50)
    (src / "docs" / "gone-before-rollover.txt").write_text("deleted on day 1\n" * 50)
    (src / "new\nline.txt").write_bytes(b"a newline in the name\n" * 20)
    (src / "back\\slash.txt").write_bytes(b"a backslash\n" * 20)
    (src / os.fsdecode(b"bad-\xff-name.bin")).write_bytes(os.urandom(5000))
    (src / "empty-dir").mkdir()
    (src / "empty.txt").write_bytes(b"")
    (src / "link").symlink_to("docs/keep.txt")
    os.link(src / "docs" / "keep.txt", src / "hard-keep.txt")
    states = {}
    for day, now in enumerate(DAYS[:4]):
        if day == 1:
            (src / "docs" / "gone-before-rollover.txt").unlink()
            (src / "docs" / "day1.txt").write_text("added on day 1\n")
        if day == 2:
            (src / "new\nline.txt").write_bytes(b"changed on day 2\n" * 20)
        if day == 3:
            (src / "docs" / "day1.txt").unlink()
        result = ws.genarc("run", "--json", now=now)
        assert result.code == EXIT_OK, result.err
        states[day] = snapshot(src)
    return states


def run_script(repo: Path, target: Path, *extra: str) -> subprocess.CompletedProcess:
    # Isolated (-I): no genarc on the path, no PYTHON* variables; only the standard library and py7zr.
    return subprocess.run([sys.executable, "-I", str(SCRIPT), "--repo", str(repo), "--job", "data",
                           "--target", str(target), *extra], capture_output=True, text=True,
                          env={"GENARC_PASSWORD": PASSWORD, "PATH": os.environ.get("PATH", "")}, cwd="/")


def test_the_recovery_script_needs_no_genarc_and_restores_what_genarc_restores(workspace):
    from tests.conftest import restored_root, snapshot

    text = SCRIPT.read_text()
    assert "import archiver" not in text and "from archiver" not in text
    ws = workspace
    ws.write_config(password=PASSWORD, keep_days=3, generation_days=2, margin_days=1, volume_size="64KiB")
    assert ws.genarc("init").code == EXIT_OK
    states = awkward_history(ws)
    # Generation 2 opens with a synthetic full on day 2, after a deletion on day 1.
    for generation, point, day in ((1, 1, 0), (1, 2, 1), (2, 1, 2), (2, 2, 3)):
        mine, theirs = ws.root / f"script-{day}", ws.root / f"genarc-{day}"
        done = run_script(ws.repo, mine, "--generation", str(generation), "--point", str(point))
        assert done.returncode == 0, done.stderr
        assert ws.genarc("restore", "data", "--target", str(theirs), "--generation", str(generation),
                         "--point", str(point)).code == EXIT_OK
        assert snapshot(restored_root(mine, ws.src)) == snapshot(restored_root(theirs, ws.src)) == states[day], day
        assert os.stat(restored_root(mine, ws.src) / "hard-keep.txt").st_ino == \
            os.stat(restored_root(mine, ws.src) / "docs" / "keep.txt").st_ino
    # The newest point by default; a wrong password is refused, not guessed around.
    assert run_script(ws.repo, ws.root / "newest").returncode == 0
    wrong = subprocess.run([sys.executable, "-I", str(SCRIPT), "--repo", str(ws.repo), "--job", "data",
                            "--target", str(ws.root / "wrong")], capture_output=True, text=True,
                           env={"GENARC_PASSWORD": "not it"})
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr and "password" in wrong.stderr, wrong.stderr


def test_the_recovery_script_on_objects_copied_from_s3(workspace):
    from tests.conftest import restored_root, snapshot
    from tests.servers import MotoServer

    ws = workspace
    moto = MotoServer()
    try:
        bucket = moto.make_bucket()
        ws.write_config(password=PASSWORD, url=f"s3://{bucket}/backups", endpoint_url=moto.url, keep_days=3,
                        generation_days=2, margin_days=1, volume_size="64KiB")
        ws.monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        ws.monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        assert ws.genarc("init").code == EXIT_OK
        states = awkward_history(ws)
        # What `aws s3 cp --recursive s3://BUCKET/backups ./copy` does.
        s3, copy = moto.client(), ws.root / "copy"
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="backups/"):
            for item in page.get("Contents", []):
                local = copy / item["Key"].removeprefix("backups/")
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_bytes(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
        done = run_script(copy, ws.root / "restored")
        assert done.returncode == 0, done.stderr
        assert snapshot(restored_root(ws.root / "restored", ws.src)) == states[3]
    finally:
        moto.stop()


def doc_commands(containing: str) -> list[str]:
    """The shell lines of docs/restore-without-genarc.md that contain ``containing``, exactly as printed."""
    text = (SCRIPT.parents[1] / "docs" / "restore-without-genarc.md").read_text()
    blocks = text.split("```sh\n")[1:]
    return [line for block in blocks for line in block.split("```")[0].splitlines() if containing in line]


@pytest.mark.skipif(SEVEN_ZIP is None or shutil.which("7zz") is None, reason="Debian's 7zip (7zz) is not installed")
def test_the_docs_7zip_commands_run_exactly_as_printed(workspace):
    ws = workspace
    expected = make_tree(ws.src)
    (ws.src / "odd\nname.txt").write_bytes(b"an odd name\n")
    ws.write_config(password=PASSWORD, compression="deflate", volume_size="64KiB")
    assert ws.genarc("init").code == EXIT_OK
    assert ws.genarc("run", now="2027-02-01T02:00:00Z").code == EXIT_OK
    extract, = doc_commands("7zz x -p\"$PASSWORD\" -orestored")
    folder = full_volumes(ws.repo)[0].parent
    env = {**os.environ, "PASSWORD": PASSWORD}
    done = subprocess.run(["bash", "-c", extract], cwd=folder, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    check_extracted(folder / "restored", expected)
    odd = list((folder / "restored" / "_genarc" / "odd").iterdir())
    assert len(odd) == 1 and odd[0].read_bytes() == b"an odd name\n"
    mapping, = doc_commands("manifest.jsonl | grep")
    manifests = next(ws.repo.glob("data/manifests/g000001-*"))
    done = subprocess.run(["bash", "-c", mapping], cwd=manifests, env=env, capture_output=True, text=True)
    assert done.returncode == 0 and odd[0].name in done.stdout and "odd\\nname.txt" in done.stdout, done.stderr


def test_odd_entry_names_never_collide_across_volumes_or_points(workspace):
    import py7zr

    ws = workspace
    for i in range(3):
        (ws.src / f"odd\n{i}.txt").write_bytes(f"day 0, file {i}\n".encode() * 50)
    ws.write_config(password=PASSWORD, compression="deflate", volume_size="2KiB", max_files=1)
    assert ws.genarc("init").code == EXIT_OK
    assert ws.genarc("run", now="2027-02-01T02:00:00Z").code == EXIT_OK
    for i in range(3):
        (ws.src / f"odd\n{i}.txt").write_bytes(f"day 1, file {i}, changed\n".encode() * 50)
    assert ws.genarc("run", now="2027-02-02T02:00:00Z").code == EXIT_OK
    volumes = sorted(ws.repo.glob("data/volumes/*/*/v*.7z"))
    assert len(volumes) == 6  # one file per volume, two points
    out = ws.root / "all-in-one"
    for volume in volumes:
        with py7zr.SevenZipFile(volume, "r", password=PASSWORD) as archive:
            archive.extractall(out)
    odd = sorted(p for p in (out / "_genarc" / "odd").iterdir())
    assert len(odd) == 6 and len({p.read_bytes() for p in odd}) == 6  # six entries, none overwritten


def test_the_recovery_script_never_writes_outside_its_target_for_a_forged_point(workspace):
    from datetime import datetime, timezone

    import archiver.manifest as manifest_mod
    import archiver.point as point_mod
    from archiver import config as config_mod
    from archiver.repository import Repository
    from tests.forge import Forger, row

    ws = workspace
    ws.write_config(password=PASSWORD)
    assert ws.genarc("init").code == EXIT_OK
    outside = ws.root / "outside"
    outside.mkdir()
    (outside / "victim").write_text("untouched\n")
    (outside / "secret").write_text("never copied in\n")
    before = {p.name: (p.read_bytes(), p.stat().st_mode, p.stat().st_mtime_ns) for p in outside.iterdir()}
    repo = Repository.open(config_mod.load(ws.config))
    forgeries = {
        "through-a-link": [row("esc", "symlink", target=str(outside)), row("esc/victim", content=b"", mode=0o4777)],
        "climbing": [row("../outside/victim", content=b"x", mode=0o4777), row(str(outside / "abs"), content=b"x"),
                     row("ok", content=b"ok\n")],
        "two-spellings": [row("x\udcc3\udca9", "symlink", target=str(outside / "victim")),
                          row("x\u00e9", content=b"written through the alias\n")],
    }
    for job, rows in forgeries.items():
        Forger(repo, job, datetime(2027, 3, 1, 2, tzinfo=timezone.utc)).point(rows)
    real = manifest_mod.entry_of

    def stolen(r, path, op, index, *parts):
        entry = real(r, path, op, index, *parts)
        entry["entry"] = str(outside / "secret")  # an entry name that is a local path
        return entry
    point_mod.entry_of = stolen
    try:
        Forger(repo, "stolen", datetime(2027, 3, 1, 2, tzinfo=timezone.utc)).point([row("loot", content=b"decoy\n")])
    finally:
        point_mod.entry_of = real
    for job in (*forgeries, "stolen"):
        done = subprocess.run([sys.executable, "-I", str(SCRIPT), "--repo", str(ws.repo), "--job", job,
                               "--target", str(ws.root / f"r-{job}")], capture_output=True, text=True,
                              env={"GENARC_PASSWORD": PASSWORD})
        assert "Traceback" not in done.stderr, done.stderr
    assert {p.name: (p.read_bytes(), p.stat().st_mode, p.stat().st_mtime_ns) for p in outside.iterdir()} == before
    assert not (ws.root / "r-stolen" / "loot").exists() or (ws.root / "r-stolen" / "loot").read_bytes() != b"never copied in\n"
