#!/usr/bin/env python3
"""Restore a genarc restore point without genarc: the Python standard library and py7zr only.

For the day genarc itself cannot be installed or trusted. Copy the repository's objects to a local
folder first (for S3: `aws s3 cp --recursive s3://BUCKET/PREFIX ./repo`; for B2: `b2 sync
b2://BUCKET/PREFIX ./repo`; a local repository already is one), then:

    python3 restore-without-genarc.py --repo ./repo --job home --target ./restored
    python3 restore-without-genarc.py --repo ./repo --job home --target ./restored --generation 12 --point 3

The password is read from $GENARC_PASSWORD, --password-file, or asked for. What it does, exactly as
genarc's own restore (docs/design.md, section 4):

- every manifest of the chain is opened with the password and checked: its HMAC (scrypt-derived key,
  from genarc-repository.json), and the SHA-256 its successor records for it;
- the chain is replayed from the full that opens it (adds, changes, metadata, removals), so files
  deleted before a synthetic full stay deleted and odd names come back under their real paths;
- every volume's SHA-256 is checked before it is opened;
- directories, symlinks, empty files, hard links, modes, modification times and extended attributes
  come back; nothing is written outside --target, and an existing --target must be empty.

It does not verify each file's xxh3 (not in the standard library); the volume checks cover the bytes.
Exit status: 0 restored, 1 some entries could not be restored (named), 2 usage or refused.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import py7zr

MANIFEST = re.compile(r"^g(\d{6})-\d{8}T\d{6}Z/p(\d{6})-\d{8}T\d{6}Z-[0-9a-f]{16}\.m7z$")


def fail(message: str, status: int = 2) -> None:
    print(f"restore-without-genarc: {message}", file=sys.stderr)
    sys.exit(status)


def hmac_key(repo: Path, password: str) -> bytes:
    settings = json.loads((repo / "genarc-repository.json").read_text())
    kdf = settings["kdf"]
    if kdf.get("name") != "scrypt":
        fail(f"unknown key derivation {kdf.get('name')!r}")
    master = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(kdf["salt"]), n=kdf["n"], r=kdf["r"],
                            p=kdf["p"], dklen=32, maxmem=64 * 1024 * 1024)
    return hmac.new(master, b"genarc manifest hmac v1", hashlib.sha256).digest()


def read_manifest(path: Path, password: str, key: bytes) -> tuple[dict, list[dict]]:
    """The header and entries of one manifest, after its HMAC check."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with py7zr.SevenZipFile(path, "r", password=password or None) as archive:
                archive.extract(path=tmp, targets=["manifest.jsonl"])
            lines = Path(tmp, "manifest.jsonl").read_bytes().splitlines(keepends=True)
        except Exception as exc:  # py7zr raises many kinds for a wrong password or damaged data
            fail(f"cannot open {path} ({type(exc).__name__}): wrong password, or the file is damaged")
    mac = hmac.new(key, digestmod=hashlib.sha256)
    records = []
    for line in lines[:-1]:
        mac.update(line)
        records.append(json.loads(line))
    trailer = json.loads(lines[-1])
    if not hmac.compare_digest(mac.hexdigest(), str(trailer.get("hmac"))) or trailer.get("entries") != len(records) - 1:
        fail(f"{path} fails its HMAC check: wrong password, or the manifest was altered")
    return records[0], records[1:]


def choose(repo: Path, job: str, generation: int | None, point: int | None) -> Path:
    found = []
    for path in (repo / job / "manifests").glob("g*/p*.m7z"):
        match = MANIFEST.match(f"{path.parent.name}/{path.name}")
        if match and generation in (None, int(match[1])) and point in (None, int(match[2])):
            found.append(((int(match[1]), int(match[2])), path))
    if not found:
        fail(f"no such restore point of job {job!r} under {repo}")
    return max(found)[1]


def chain(repo: Path, tip: Path, password: str, key: bytes) -> list[tuple[dict, list[dict]]]:
    """The manifests from the full up to ``tip``, each checked against the hash its successor recorded."""
    out = [read_manifest(tip, password, key)]
    while out[0][0].get("parent"):
        parent = out[0][0]["parent"]
        path = repo / parent["key"]
        if hashlib.sha256(path.read_bytes()).hexdigest() != parent["sha256"]:
            fail(f"{path} is not the manifest its successor recorded (SHA-256 differs)")
        out.insert(0, read_manifest(path, password, key))
    return out


def replay(manifests: list[tuple[dict, list[dict]]]) -> dict[bytes, dict]:
    """The tree at the last manifest, keyed by each path's bytes (two spellings of one name are one entry)."""
    tree: dict[bytes, dict] = {}
    for header, entries in manifests:
        objects = header["objects"]
        for entry in entries:
            try:
                key = os.fsencode(entry["path"])
            except (UnicodeEncodeError, TypeError, KeyError):
                fail(f"a manifest lists a path no file system can hold: {entry.get('path')!r}")
            if entry["op"] == "remove":
                tree.pop(key, None)
                continue
            row = dict(entry)
            if "obj" in entry:
                obj = objects[entry["obj"]]
                row.update(volume=obj["key"], sha256=obj["sha256"])
            elif "parts" in entry:  # a file larger than a volume: its parts, in order, each an entry of a volume
                row["parts"] = [{"volume": objects[part["obj"]]["key"], "sha256": objects[part["obj"]]["sha256"],
                                 "entry": part["entry"], "size": part["size"]} for part in entry["parts"]]
            elif entry["op"] == "meta" and key in tree:
                row.update({k: tree[key][k] for k in ("volume", "sha256", "entry", "parts") if k in tree[key]})
            tree[key] = row
    return tree


def plain(name: object) -> bool:
    """A relative path of ordinary components: nothing absolute, empty, '.' or '..', no NUL."""
    if not isinstance(name, str) or not name or name.startswith("/") or "\x00" in name:
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def safe(target: Path, name: str) -> Path:
    """``name`` under ``target``, refusing anything that could leave it (absolute, .., a link on the way)."""
    if not plain(name):
        raise ValueError(f"unsafe path {name!r}")
    parts = name.split("/")
    current = target
    for part in parts[:-1]:
        current = current / part
        if current.is_symlink() or (current.exists() and not current.is_dir()):
            raise ValueError(f"{current} is not a directory")
        current.mkdir(exist_ok=True)
    return current / parts[-1]


def write_new(path: Path, source: Path) -> None:
    """Copy ``source`` to a new file at ``path``: never through a link, never over something already there."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
        shutil.copyfileobj(src, out, 1 << 20)


def write_part(path: Path, source: Path, offset: int) -> None:
    """Write ``source`` at ``offset`` into the file this restore made at ``path`` (never through a link)."""
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
        out.seek(offset)
        shutil.copyfileobj(src, out, 1 << 20)


def set_metadata(path: Path, row: dict, link: bool = False) -> None:
    for name, value in (row.get("xattrs") or {}).items():
        try:
            os.setxattr(path, name, base64.b64decode(value), follow_symlinks=False)
        except (OSError, ValueError, UnicodeEncodeError):
            pass  # a file system or a user that cannot take it; genarc's restore names these
    if not link:
        os.chmod(path, row["mode"])
    os.utime(path, ns=(row["mtime_ns"], row["mtime_ns"]), follow_symlinks=not link)


def linked_to(tree: dict[bytes, dict], row: dict) -> dict | None:
    """The first name of a hard-linked file, when it is one this tree can link to: a file of the same content."""
    first = tree.get(os.fsencode(row["link"])) if isinstance(row.get("link"), str) and plain(row["link"]) else None
    if first is None or first["type"] != "file" or first.get("link") or first.get("xxh3") != row.get("xxh3"):
        return None
    return first


def restore(repo: Path, tree: dict[bytes, dict], target: Path, password: str) -> list[str]:
    problems: list[str] = []
    written: set[str] = set()
    rows = [tree[key] for key in sorted(tree)]
    links = {row["path"]: first for row in rows if row["type"] == "file" and (first := linked_to(tree, row))}
    for row in rows:  # folders, links and empty files first
        try:
            path = safe(target, row["path"])
            if row["type"] == "dir":
                path.mkdir(exist_ok=True)
            elif row["type"] == "symlink":
                os.symlink(row["target"], path)
            elif not row.get("size"):
                write_new(path, Path(os.devnull))
                written.add(row["path"])
        except (OSError, ValueError, TypeError) as exc:
            problems.append(f"{row['path']}: {exc}")
    volumes: dict[str, list[dict]] = {}
    parted: dict[str, int] = {}  # a file stored in parts, created empty here -> parts still to write
    for row in rows:
        if row["type"] == "file" and row.get("size") and row.get("parts"):
            try:
                write_new(safe(target, row["path"]), Path(os.devnull))
            except (OSError, ValueError) as exc:
                problems.append(f"{row['path']}: {exc}")
                continue
            parted[row["path"]] = len(row["parts"])
            offset = 0
            for part in row["parts"]:
                volumes.setdefault(part["volume"], []).append({**part, "path": row["path"], "offset": offset})
                offset += part["size"]
        elif row["type"] == "file" and row.get("size"):
            volumes.setdefault(row["volume"], []).append(row)
    for volume, members in sorted(volumes.items()):
        local = repo / volume
        if not plain(volume) or not local.exists() or hashlib.sha256(local.read_bytes()).hexdigest() != members[0]["sha256"]:
            problems += [f"{r['path']}: volume {volume} is missing or does not match its SHA-256" for r in members]
            continue
        wanted = [r for r in members if plain(r.get("entry"))]
        problems += [f"{r['path']}: an entry name that is not a plain path" for r in members if r not in wanted]
        with tempfile.TemporaryDirectory() as tmp:
            with py7zr.SevenZipFile(local, "r", password=password or None) as archive:
                archive.extract(path=tmp, targets=sorted({r["entry"] for r in wanted}))
            for row in wanted:  # every name gets its own copy first: if linking fails, it stays
                try:
                    if "offset" in row:  # a part: written at its place in the file made above
                        write_part(safe(target, row["path"]), Path(tmp, row["entry"]), row["offset"])
                        parted[row["path"]] -= 1
                        continue
                    write_new(safe(target, row["path"]), Path(tmp, row["entry"]))
                    written.add(row["path"])
                except (OSError, ValueError) as exc:
                    problems.append(f"{row['path']}: {exc}")
    for name, missing in parted.items():
        if missing == 0:
            written.add(name)
        else:
            problems.append(f"{name}: {missing} of its parts could not be restored; the partial file is removed")
            try:
                os.unlink(safe(target, name))
            except (OSError, ValueError):
                pass
    linked = set()
    for name, first in links.items():  # further names of one file become links to a first name written here
        if first["path"] not in written or name not in written:
            continue  # it keeps its own copy
        try:
            path = safe(target, name)
            temp = path.with_name(path.name + ".restore-link")
            os.link(safe(target, first["path"]), temp, follow_symlinks=False)
            os.replace(temp, path)
            linked.add(name)
        except (OSError, ValueError):
            pass  # it keeps its own copy
    for row in sorted(rows, key=lambda r: r["path"], reverse=True):  # metadata last, deepest first
        if row["path"] in linked or (row["type"] == "file" and row["path"] not in written):
            continue
        try:
            path = safe(target, row["path"])
            if os.path.islink(path) != (row["type"] == "symlink"):
                continue  # not what this restore made there
            set_metadata(path, row, link=row["type"] == "symlink")
        except (OSError, ValueError) as exc:
            problems.append(f"{row['path']}: {exc}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", required=True, type=Path, help="a local copy of the repository's objects")
    parser.add_argument("--job", required=True)
    parser.add_argument("--target", required=True, type=Path, help="an empty or new folder")
    parser.add_argument("--generation", type=int)
    parser.add_argument("--point", type=int)
    parser.add_argument("--password-file", type=Path)
    args = parser.parse_args()
    if args.target.exists() and any(args.target.iterdir()):
        fail(f"{args.target} is not empty")
    if args.password_file:
        password = args.password_file.read_text().rstrip("\r\n")
    else:
        password = os.environ.get("GENARC_PASSWORD") or getpass.getpass("repository password: ")
    key = hmac_key(args.repo, password)
    tip = choose(args.repo, args.job, args.generation, args.point)
    tree = replay(chain(args.repo, tip, password, key))
    args.target.mkdir(parents=True, exist_ok=True)
    problems = restore(args.repo, tree, args.target.resolve(), password)
    for problem in problems:
        print(f"restore-without-genarc: not restored: {problem}", file=sys.stderr)
    print(f"restored {tip.relative_to(args.repo)}: {len(tree) - len(problems)} of {len(tree)} entries into {args.target}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
