"""Manifests: the record, and the commit, of one run. See docs/design.md, "Manifest format".

A manifest is JSON Lines inside a 7z holding one entry, ``manifest.jsonl``
(deflate, AES-256 with encrypted headers when the repository is encrypted):

    line 1      header: job, kind, generation, point, parent link, objects, tree digest, config
    lines 2..n  one entry per file, directory or symlink (a full lists the tree,
                an incremental lists only what changed)
    last line   trailer: entry count and HMAC-SHA256 of every byte before it

Entries are spooled to disk while the run packs, so memory stays flat for large trees.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import py7zr

from . import sevenzip
from .catalog import link_target, path_name
from .errors import IntegrityError, LocalIOError, WrongPasswordError
from .layout import ManifestName, is_volume_of
from .repository import Keys, Repository
from .store import sha256_of

FORMAT = 1
ENTRY_NAME = "manifest.jsonl"


_CANONICAL = json.JSONEncoder(ensure_ascii=True, sort_keys=True, separators=(",", ":"))


def _direct_encoder() -> Any:
    """The C encoder behind ``_CANONICAL``, built once. ``JSONEncoder.encode`` builds it again on every call,
    about half the cost of a manifest line; the result is the same text (checked here, else the plain call is
    used). It keeps no record of containers being encoded: genarc's values are trees, never cycles."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    try:
        c = _CANONICAL  # its settings, so the two can never disagree
        encoder = make(None, c.default, json.encoder.encode_basestring_ascii, c.indent, c.key_separator,
                       c.item_separator, c.sort_keys, c.skipkeys, c.allow_nan)
        sample = [{"b": "\udcff\u00e9\"\\\n", "a": [1, None, True, -2**70]}, "x", 0]
        return encoder if "".join(encoder(sample, 0)) == _CANONICAL.encode(sample) else None
    except Exception:  # another Python's signature: keep the plain call
        return None


_DIRECT = _direct_encoder()


def dumps(value: Any) -> str:
    """Canonical JSON: ASCII (names that are not UTF-8 survive as \\udcXX escapes), sorted keys."""
    if _DIRECT is None or isinstance(value, str):
        return _CANONICAL.encode(value)
    return "".join(_DIRECT(value, 0))


def build_header(*, job: str, repository: str, kind: str, reason: str, generation_seq: int, generation_start: str,
                 point_seq: int, point_time: str, run_id: str, parent: dict | None, previous_generation_tip: dict | None,
                 lock_mode: str, lock_until: str, policy: Any, job_config: dict, objects: list[dict], tree: dict,
                 warnings: int, **extra: Any) -> dict[str, Any]:
    """The manifest header (docs/design.md, "Manifest format"): one schema for every writer."""
    return {
        "job": job, "repository": repository, "kind": kind, "reason": reason,
        "generation": {"seq": generation_seq, "start": generation_start},
        "point": {"seq": point_seq, "time": point_time, "run_id": run_id},
        "parent": parent, "previous_generation_tip": previous_generation_tip,
        "lock": {"mode": lock_mode, "until": lock_until},
        "policy": {"keep_days": policy.keep_days, "generation_days": policy.generation_days,
                   "margin_days": policy.margin_days, "day_seconds": policy.day_seconds},
        "config": job_config, "objects": objects, "tree": tree, "warnings": warnings, **extra,
    }


def _get(row: Any, key: str) -> Any:
    """A column of a tree row (a sqlite row or a dict) that rows from before it was kept may lack."""
    try:
        return row[key]
    except (KeyError, IndexError):
        return None


def entry_of(row: Any, path: str, op: str, obj_index: dict[str, int], parts: list[Any] = ()) -> dict[str, Any]:
    """A manifest entry from a tree row; content in an object this manifest lists gets its object index (each
    part of a file stored in parts, when every part's object is listed)."""
    entry = {k: row[k] for k in ("type", "size", "mtime_ns", "mode", "uid", "gid", "xxh3")}
    entry.update(op=op, path=path, target=link_target(row["target"]))
    if row["obj_key"] in obj_index:
        entry.update(obj=obj_index[row["obj_key"]], entry=row["entry"])
    elif parts and all(p["obj_key"] in obj_index for p in parts):
        entry["parts"] = [{"obj": obj_index[p["obj_key"]], "entry": p["entry"], "size": p["size"], "xxh3": p["xxh3"],
                           **({"kxxh3": _get(p, "kxxh3")} if _get(p, "kxxh3") else {})} for p in parts]
    if _get(row, "kxxh3") and ("obj" in entry or "parts" in entry):
        entry["kxxh3"] = row["kxxh3"]  # keyed by the repository: what a move or an unchanged part is matched on
    if row["torn"]:
        entry["torn"] = True  # the file kept changing while it was read: stored as last read
    if row["sparse"]:
        entry["sparse"] = True  # it has holes: a restore leaves them holes
    if row["link"] is not None:
        entry["link"] = path_name(row["link"])  # another name of the file at this path (hard link)
    if row["xattrs"] is not None:
        entry["xattrs"] = json.loads(row["xattrs"])  # extended attributes and ACLs: {name: base64 value}
    return entry


class ManifestWriter:
    def __init__(self, spool_dir: Path) -> None:
        self.spool_dir = spool_dir
        self.entries_path = spool_dir / "entries.jsonl"
        self._fh = open(self.entries_path, "w", encoding="ascii", newline="\n")
        self.count = 0

    def add(self, entry: dict[str, Any]) -> None:
        try:
            self._fh.write(dumps(entry) + "\n")
        except OSError as exc:
            raise LocalIOError(f"Cannot spool the manifest in {self.spool_dir}: {exc.strerror}; free space and rerun.") from exc
        self.count += 1

    def finish(self, header: dict[str, Any], keys: Keys) -> Path:
        """Write header + entries + trailer, and pack it. Returns the path of the .m7z to upload."""
        self._fh.close()
        plain = self.spool_dir / ENTRY_NAME
        mac = hmac.new(keys.manifest_hmac, digestmod=hashlib.sha256)
        try:
            with open(plain, "wb") as out:
                first = (dumps({"type": "header", "format": FORMAT, **header}) + "\n").encode()
                out.write(first)
                mac.update(first)
                with open(self.entries_path, "rb") as src:
                    for chunk in iter(lambda: src.read(1 << 20), b""):
                        out.write(chunk)
                        mac.update(chunk)
                out.write((dumps({"type": "trailer", "entries": self.count, "hmac": mac.hexdigest()}) + "\n").encode())
            packed = self.spool_dir / "manifest.m7z"
            with sevenzip.open_for_writing(packed, "deflate", 0, keys.password) as archive:
                archive.write(plain, ENTRY_NAME)
        except OSError as exc:
            raise LocalIOError(f"Cannot write the manifest in {self.spool_dir}: {exc.strerror}; free space and rerun.") from exc
        return packed


@dataclass
class Manifest:
    """A downloaded, decrypted and authenticated manifest."""

    name: ManifestName
    header: dict[str, Any]
    plain_path: Path
    sha256: str
    version_id: str | None
    count: int  # entry lines between the header and the trailer, as the HMAC'd trailer says
    body: tuple[int, int]  # the byte offsets where the entry lines start and end

    @property
    def key(self) -> str:
        return self.name.key

    @property
    def objects(self) -> list[dict[str, Any]]:
        return list(self.header["objects"])

    def entries(self, needles: tuple[bytes, ...] | None = None) -> Iterator[dict[str, Any]]:
        """The entries, in order; with ``needles``, only lines holding one of them are parsed and yielded (a
        pre-filter, found at the speed of a regular-expression search over the file: the caller still checks
        what it gets). A line that is not a JSON object in canonical form is refused."""
        try:
            if needles is None:
                with open(self.plain_path, "rb") as fh:
                    fh.readline()
                    for _, line in zip(range(self.count), fh):
                        yield _entry(line)
                return
            if not needles or self.body[1] <= self.body[0]:
                return
            yield from self._found(needles)
        except (ValueError, UnicodeDecodeError):
            raise IntegrityError(f"Manifest {self.key} is malformed; it is corrupt or forged.") from None

    def _found(self, needles: tuple[bytes, ...]) -> Iterator[dict[str, Any]]:
        """Read in blocks that end at a line's end (not mapped: a mapped manifest of a million entries counted
        its 300 MB in the reader's resident memory)."""
        common = os.path.commonprefix(list(needles))
        pattern = re.compile(re.escape(common) + b"(?:" + b"|".join(re.escape(n[len(common):]) for n in needles) + b")")
        start, end = self.body
        with open(self.plain_path, "rb") as fh:
            fh.seek(start)
            left, carry = end - start, []
            while left > 0:
                data = fh.read(min(left, _BLOCK))
                if not data:
                    raise ValueError("a manifest shorter than it was")
                left -= len(data)
                cut = data.rfind(b"\n") + 1 if left > 0 else len(data)
                if not cut:  # within a line longer than a block: carried whole, each byte searched once
                    carry.append(data)
                    continue
                block = b"".join([*carry, data[:cut]])
                carry = [data[cut:]]
                yield from _lines_matching(pattern, block)


_BLOCK = 8 << 20


def _lines_matching(pattern: re.Pattern[bytes], block: bytes) -> Iterator[dict[str, Any]]:
    """The entry of every line of ``block`` (whole lines) that ``pattern`` finds, once per line."""
    done = -1  # the end of the last line yielded
    for match in pattern.finditer(block):
        if match.start() < done:
            continue  # a second needle in a line already yielded
        line_start = block.rfind(b"\n", 0, match.start()) + 1
        done = block.find(b"\n", match.start())
        done = len(block) if done < 0 else done
        yield _entry(block[line_start:done])


def _entry(line: bytes) -> dict[str, Any]:
    """One entry line. Only the canonical text (:func:`dumps`, as every genarc run writes it) is an entry: JSON
    allows the same record in other spellings (spaces, escapes, repeated keys), which a search for a path's
    canonical spelling would not find, so a partial read and a whole one could see different entries."""
    record = json.loads(line)
    if not isinstance(record, dict):
        raise ValueError("a line that is not a JSON object")
    if dumps(record).encode() != line.rstrip(b"\n"):
        raise ValueError("a line that is not in canonical form")
    return record


def extract_single(archive_path: Path, dest_dir: Path, password: str | None, what: str) -> Path:
    """Extract the one entry of a genarc manifest archive, mapping py7zr's many failure types to ours."""
    try:
        with py7zr.SevenZipFile(archive_path, "r", password=password) as archive:
            names = archive.getnames()
            if names != [ENTRY_NAME]:
                raise IntegrityError(f"{what} does not hold a genarc manifest; it may have been replaced.")
            archive.extractall(path=dest_dir)
    except IntegrityError:
        raise
    except py7zr.exceptions.PasswordRequired:
        raise WrongPasswordError(f"{what} is encrypted but no password is configured; check the job's password source.") from None
    except Exception as exc:  # py7zr raises many unrelated types for bad bytes or a wrong key
        raise IntegrityError(f"{what} cannot be decrypted or decoded ({type(exc).__name__}); it is corrupt or was written with another password.") from None
    return dest_dir / ENTRY_NAME


def _header_problem(header: dict[str, Any], name: ManifestName) -> str | None:
    """What makes a header unusable, or None: the shapes a genarc run writes, and objects of its own generation."""
    for part, optional in (("point", False), ("generation", False), ("tree", False), ("lock", True), ("config", True),
                           ("parent", True), ("previous_generation_tip", True)):
        if not isinstance(header.get(part), dict) and not (optional and header.get(part) is None):
            return f"a header {part!r} that is not an object"
    objects = header.get("objects")
    if not isinstance(objects, list) or not all(
            isinstance(o, dict) and type(o.get("size")) is int and isinstance(o.get("sha256"), str)
            and (o.get("version_id") is None or isinstance(o["version_id"], str)) for o in objects):
        return "an object list in the wrong form"
    for obj in objects:
        if not isinstance(obj.get("key"), str) or not is_volume_of(obj["key"], name):
            return f"an object {obj.get('key')!r} that is not a volume of its own generation"
    return None


_TAIL = 1 << 16  # the trailer is one short line; a longer last line is not one genarc wrote


def _authenticate(plain: Path, key: bytes, name: ManifestName
                  ) -> tuple[dict[str, Any], dict[str, Any], int, str, tuple[int, int]]:
    """The header, the trailer, the number of entry lines, the HMAC of every byte before the trailer and the
    span of the entry lines, of a manifest's plain text. Entry lines are not parsed here: whoever reads them does (:meth:`Manifest.entries`),
    so reading a manifest of a million entries costs one pass of hashing."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    truncated = IntegrityError(f"Manifest {name.key} is truncated; it is corrupt or forged.")
    try:
        with open(plain, "rb") as fh:
            first = fh.readline()
            start = max(len(first), os.fstat(fh.fileno()).st_size - _TAIL)
            fh.seek(start)
            tail = fh.read()
            if not first.endswith(b"\n") or not tail.endswith(b"\n"):
                raise truncated
            cut = tail.rfind(b"\n", 0, len(tail) - 1)  # the end of the line before the trailer
            if cut < 0 and start != len(first):
                raise ValueError("a last line too long to be a trailer")
            trailer_at = start + cut + 1 if cut >= 0 else len(first)
            header, trailer = json.loads(first), json.loads(tail[trailer_at - start:])
            mac.update(first)
            fh.seek(len(first))
            count, left = 0, trailer_at - len(first)
            while left > 0:
                chunk = fh.read(min(left, 1 << 20))
                if not chunk:
                    raise truncated
                mac.update(chunk)
                count += chunk.count(b"\n")
                left -= len(chunk)
    except (ValueError, UnicodeDecodeError):
        raise IntegrityError(f"Manifest {name.key} is malformed; it is corrupt or forged.") from None
    if not isinstance(header, dict) or not isinstance(trailer, dict) or header.get("type") != "header" \
            or trailer.get("type") != "trailer":
        raise truncated
    return header, trailer, count, mac.hexdigest(), (len(first), trailer_at)


def load(repo: Repository, name: ManifestName, workdir: Path, version_id: str | None = None) -> Manifest:
    """Download, decrypt and authenticate one manifest."""
    slot = workdir / f"m-{name.gseq}-{name.pseq}-{name.run_id}"
    if slot.exists():
        shutil.rmtree(slot)
    slot.mkdir(parents=True)
    packed = slot / "manifest.m7z"
    version_id = version_id or name.version_id
    info = repo.store.stat(name.key, version_id=version_id)
    repo.store.download(name.key, packed, version_id=version_id or info.version_id)
    digest = sha256_of(packed)
    plain = extract_single(packed, slot, repo.keys.password, f"Manifest {name.key}")
    os.unlink(packed)
    header, trailer, count, mac, body = _authenticate(plain, repo.keys.manifest_hmac, name)
    if not hmac.compare_digest(mac, str(trailer.get("hmac"))) or trailer.get("entries") != count:
        raise IntegrityError(f"Manifest {name.key} fails its HMAC check; it was altered or forged, do not trust it.")
    problem = _header_problem(header, name)
    if problem is not None:
        raise IntegrityError(f"Manifest {name.key} has {problem}, which genarc never writes; it was forged.")
    point, generation = header["point"], header["generation"]
    if (header.get("job"), generation.get("seq"), point.get("seq"), point.get("run_id")) != (
        name.job, name.gseq, name.pseq, name.run_id
    ):
        raise IntegrityError(f"Manifest {name.key} describes a different restore point than its key says; it was moved or forged.")
    return Manifest(name, header, plain, digest, version_id or info.version_id, count, body)
