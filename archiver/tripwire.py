"""The ransomware tripwire: notice a poisoned source, and keep the last clean point from expiring.

Object Lock stops an attacker from deleting backups; it does nothing against the slow attack,
where the source is encrypted and backed up as normal changes until the last clean generation
expires. Every run therefore measures what it changed (a :class:`Profile`, recorded in its
manifest), and judges it against the job's own history (:func:`judge`). A run that trips:

- still commits its point (it is evidence; nothing is lost);
- exits 11 (suspicious) and says why in its summary, ``--json``, metrics and hooks;
- extends the lock of every object the last point before the trip needs to restore, to
  ``protect_days`` from now (:func:`protect`): compliance retention only ever grows, so an
  attacker who owns the machine afterwards cannot undo it.

While a trip is unacknowledged, later runs keep the protection alive and do not learn from
the poisoned points. ``genarc acknowledge JOB`` ends the trip on this machine only; it changes
nothing stored. ``genarc watch`` measures the same profile from the manifests with a read-only
key, so a tripwire switched off on the client is still noticed elsewhere.

The measuring and the judging are pure; the state file and the protection are the only I/O.
"""

from __future__ import annotations

import json
import os
import posixpath
import statistics
import tempfile
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from .catalog import TreeTable, dense_object, path_key
from .clock import format_time, parse_time
from .names import escape

HISTORY_RUNS = 20  # how many untripped runs the thresholds learn from
MIN_HISTORY = 5  # fewer runs than this: the floors alone decide


@dataclass(frozen=True)
class TripwireSettings:
    """``[tripwire]`` in the job file. Shares are of the files the previous point held."""

    enabled: bool = True
    protect_days: int = 30  # how long past the trip the last clean point is kept, at least
    min_files: int = 20  # fewer files than this never trip a measure, whatever their share
    turned_dense: float = 0.10  # files that went from compressible to incompressible
    renamed: float = 0.10  # files renamed to another extension (same stem)
    dense_rewrites: float = 0.50  # existing files rewritten with incompressible content

    def thresholds(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in MEASURES}


MEASURES = {
    "turned_dense": "went from compressible to incompressible",
    "renamed": "were renamed to another extension, with incompressible content",
    "dense_rewrites": "were rewritten with incompressible content",
}


@dataclass
class Profile:
    """What one point changed, against the point before it (counts of files; bytes of new content)."""

    files_before: int = 0
    added: int = 0
    changed: int = 0  # files whose content changed
    removed: int = 0
    renamed: int = 0  # removed files back under the same stem, another extension and incompressible content
    same_size: int = 0  # content changes that kept the size
    turned_dense: int = 0  # compressible before, incompressible now (changed in place or renamed)
    dense_rewrites: int = 0  # content changes (in place or renamed) whose new content is incompressible
    changed_bytes: int = 0  # bytes of new content (added and changed files)
    dense_bytes: int = 0  # of which incompressible
    density_known: bool = True  # False when every volume is COPY (compression = "copy"): density cannot be told
    examples: list[str] = field(default_factory=list)  # a few of the files, names escaped (archiver/names.py)

    def share(self, measure: str) -> float:
        return getattr(self, measure) / self.files_before if self.files_before else 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "Profile | None":
        """A profile as a manifest or the state file holds it; None when it is not one."""
        if not isinstance(data, Mapping):
            return None
        names = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for name in names:
            value = data.get(name)
            if name == "examples":
                values[name] = [str(v) for v in value[:3]] if isinstance(value, list) else []
            elif name == "density_known":
                values[name] = value is not False
            elif type(value) is int and 0 <= value < 2**53:
                values[name] = value
            elif value is not None:
                return None
        return cls(**values)


def _key_of(path: Any) -> bytes | None:
    """The catalog key of a path, or None for one no file system can hold (a forged manifest)."""
    try:
        return path_key(path) if isinstance(path, str) else None
    except UnicodeEncodeError:
        return None


def _stem(path: str) -> str:
    """The path without the extension of its last component (``a/b.docx`` -> ``a/b``). An extension without
    a letter is part of the name: ``libz.so.1.2.13`` -> ``libz.so.1.2.14`` is an upgrade, not a rename."""
    head, tail = posixpath.split(path)
    root, ext = posixpath.splitext(tail)
    if not ext or not root or len(ext) > 16 or not any(c.isalpha() for c in ext):
        return path
    return posixpath.join(head, root)


_OLD_COLUMNS = "path, type, size, xxh3, obj_key, parts"  # what a measure reads of the tree before a point


class Measurer:
    """Builds a :class:`Profile` from a point's entries as its manifest lists them, against the tree before it.

    ``dense`` maps each object key of the previous tree to whether its content is incompressible;
    ``objects`` are the point's own objects (as its manifest lists them). The packer puts exactly what
    its probe found incompressible into dense volumes (:func:`archiver.catalog.dense_object`), unless
    the job packs everything with COPY, in which case density is not measured.
    """

    def __init__(self, previous: TreeTable | None, dense: Mapping[str, bool], objects: list[Mapping[str, Any]],
                 job_method: str, ordered: bool = False) -> None:
        """``ordered``: the entries come in path order and are most of the tree (a full's listing): the previous
        tree is read in one ordered pass for them, not queried path by path. Removals, usually few, are queried."""
        self.previous, self.dense, self.objects = previous, dense, objects
        self._old = (lambda key: None) if previous is None else previous.ordered_get(_OLD_COLUMNS) if ordered \
            else previous.get
        self.profile = Profile(density_known=job_method != "copy")
        if previous is not None:
            self.profile.files_before = int(previous.conn.execute(
                f"SELECT count(*) FROM {previous.name} WHERE type = 'file'").fetchone()[0])
        self._added: dict[str, bool] = {}  # stem of an added file -> its content is incompressible
        self._added_content: dict[str, set[str]] = {}  # stem of an added file -> the xxh3 of its content
        self._removed: dict[str, bool] = {}  # removed file -> its content was compressible
        self._removed_content: dict[str, str] = {}  # removed file -> the xxh3 of its content
        self._dense_objects: dict[int, bool] = {}  # object index -> its content is incompressible

    def _dense_new(self, entry: Mapping[str, Any]) -> bool:
        """Whether the content an entry lists is incompressible: its object is dense, or, for a file stored in
        parts, every part's is."""
        parts = entry.get("parts")
        indexes = [p.get("obj") if isinstance(p, Mapping) else None for p in parts] if isinstance(parts, list) and \
            parts else [entry.get("obj")]
        if not self.profile.density_known or not all(type(i) is int and 0 <= i < len(self.objects) for i in indexes):
            return False
        return all(self._dense_object(i) for i in indexes)

    def _dense_object(self, index: int) -> bool:
        """Whether the point's object ``index`` holds incompressible content (asked once per object)."""
        dense = self._dense_objects.get(index)
        if dense is None:
            dense = self._dense_objects[index] = dense_object(self.objects[index])
        return dense

    def _compressible_old(self, row: Mapping[str, Any]) -> bool:
        if not self.profile.density_known or not row["size"]:
            return False
        if row["parts"] and self.previous is not None:  # stored in parts: compressible if some part was
            return any(self.dense.get(p["obj_key"]) is False for p in self.previous.parts_of(row["path"]))
        return self.dense.get(row["obj_key"]) is False

    def entry(self, entry: Mapping[str, Any]) -> None:
        """One entry of the point (any op; a full lists everything as ``add``). A malformed entry (a forged
        manifest; replaying it fails anyway) is not measured."""
        p = self.profile
        if not isinstance(entry, (dict, Mapping)) or not isinstance(entry.get("path"), str) or (
                entry.get("size") is not None and type(entry.get("size")) is not int) or not _key_of(entry["path"]):
            return
        op = entry.get("op")
        if op == "remove":
            self.removal(entry["path"])
            return
        if entry.get("type") != "file" or op == "meta":
            return
        old = self._old(path_key(entry["path"]))
        if old is not None and old["type"] == "file" and old["xxh3"] == entry.get("xxh3"):
            return  # a full listing unchanged content
        size = max(entry.get("size") or 0, 0)
        dense = size > 0 and self._dense_new(entry)
        p.changed_bytes += size
        p.dense_bytes += size if dense else 0
        if old is None or old["type"] != "file":
            p.added += 1
            if self.previous is None:  # nothing was there before, so nothing was renamed: keep no names
                return
            stem = _stem(entry["path"])
            self._added[stem] = self._added.get(stem, False) or dense
            if isinstance(entry.get("xxh3"), str):
                self._added_content.setdefault(stem, set()).add(entry["xxh3"])
            return
        p.changed += 1
        p.same_size += size == old["size"]
        if dense:
            p.dense_rewrites += 1
            if self._compressible_old(old):
                p.turned_dense += 1
                self._example(f"/{escape(entry['path'])} became incompressible")

    def removal(self, path: str) -> None:
        key = _key_of(path)
        old = self.previous.get(key) if self.previous is not None and key else None
        if old is not None and old["type"] == "file":
            self.profile.removed += 1
            self._removed[path] = self._compressible_old(old)
            if old["xxh3"] is not None:
                self._removed_content[path] = old["xxh3"]

    def _example(self, text: str) -> None:
        if len(self.profile.examples) < 3:
            self.profile.examples.append(text)

    def finish(self) -> Profile:
        """Pair removed files with added ones of the same stem: renamed to another extension. Only a rename to
        incompressible content counts (ransomware encrypts what it renames; a branch that renames .c to .cpp
        does not), unless density cannot be told. The same bytes under a new name (``IMG.JPG`` to ``IMG.jpg``)
        are no rename that counts: encryption changes the content."""
        p = self.profile
        for path, was_compressible in self._removed.items():
            stem = _stem(path)
            for candidate in (path, stem) if stem != path else (path,):
                if candidate in self._added:
                    if self._removed_content.get(path) in self._added_content.get(candidate, ()):
                        break
                    dense = self._added[candidate]
                    if dense or not p.density_known:
                        p.renamed += 1
                        self._example(f"/{escape(path)} was renamed to {escape(posixpath.basename(candidate))}.*")
                    if dense:
                        p.dense_rewrites += 1
                        p.turned_dense += was_compressible
                    break
        for kept in (self._added, self._added_content, self._removed, self._removed_content):
            kept.clear()
        return p


@dataclass(frozen=True)
class Verdict:
    score: float  # the highest measure against its threshold: 1.0 or more trips
    suspicious: bool
    reasons: list[str]
    thresholds: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _learned(values: list[float]) -> float:
    """What the job's own history considers normal for a measure: its median plus four spreads."""
    median = statistics.median(values)
    spread = statistics.median(abs(v - median) for v in values) * 1.4826
    return median + 4 * max(spread, 0.01)


def judge(profile: Profile, history: Iterable[Profile], settings: TripwireSettings) -> Verdict:
    """Score ``profile`` against the job's earlier untripped runs; floors keep a first or quiet run from tripping.

    Each measure is a share of the files the previous point held. Its threshold is the configured
    share, or what the job's own history shows to be normal if that is higher (with at least
    :data:`MIN_HISTORY` runs). A measure also needs ``min_files`` files. The score is the highest
    ratio of a measure to its threshold (and of its count to ``min_files``): 1.0 or more trips.
    """
    past = list(history)[-HISTORY_RUNS:]
    thresholds, reasons, score = {}, [], 0.0
    for measure, floor in settings.thresholds().items():
        threshold = floor
        if len(past) >= MIN_HISTORY:
            threshold = max(floor, _learned([h.share(measure) for h in past]))
        thresholds[measure] = round(threshold, 4)
        count = getattr(profile, measure)
        ratio = min(profile.share(measure) / threshold, count / max(settings.min_files, 1))
        score = max(score, ratio)
        if ratio >= 1.0:
            reasons.append(f"{count} of {profile.files_before} files ({profile.share(measure):.0%}) {MEASURES[measure]} "
                           f"(threshold {threshold:.0%})")
    return Verdict(round(score, 3), score >= 1.0, reasons, thresholds)


# -- the state of one job on this machine ---------------------------------------------------------
@dataclass
class TripState:
    """Kept in the state directory: the recent untripped profiles, and an unacknowledged trip if any.

    Losing it loses nothing stored: a protection already applied holds until its date.
    """

    path: Path
    profiles: list[Profile] = field(default_factory=list)
    trip: dict[str, Any] | None = None  # since, point (the first suspicious one), protected {...}, reasons

    @staticmethod
    def location(state_dir: Path, repo_id: str, job: str) -> Path:
        return state_dir / "tripwire" / repo_id / f"{job}.json"

    @classmethod
    def load(cls, path: Path, warn: Callable[[str], None]) -> "TripState":
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError) as exc:
            warn(f"the tripwire state {path} cannot be read ({exc}); it starts again from its floors")
            return cls(path)
        if not isinstance(data, dict):
            return cls(path)
        profiles = [p for p in map(Profile.from_dict, data.get("profiles") or []) if p is not None]
        trip = data.get("trip") if isinstance(data.get("trip"), dict) else None
        return cls(path, profiles[-HISTORY_RUNS:], trip)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"profiles": [p.as_dict() for p in self.profiles[-HISTORY_RUNS:]], "trip": self.trip},
                          indent=1)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(tmp, self.path)


# -- protection -----------------------------------------------------------------------------------
@dataclass
class Protection:
    point: str  # the manifest key of the protected point
    label: str  # "generation G, point P"
    until: str = ""  # every object it needs is locked at least until this date
    objects: int = 0
    error: str = ""  # why it could not be applied (fully), with what to do instead

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def protect_until(now: datetime, settings: TripwireSettings, day: timedelta) -> datetime:
    return now + settings.protect_days * day


def needs_renewal(protection: Mapping[str, Any], now: datetime, settings: TripwireSettings, day: timedelta) -> bool:
    """Renew a protection once less than half of ``protect_days`` is left of it (or it never took)."""
    until = protection.get("until")
    if not until or protection.get("error"):
        return True
    try:
        return parse_time(until) - now < settings.protect_days * day / 2
    except ValueError:
        return True


def protect(store: Any, versions: Iterable[tuple[str, str | None]], mode: str, until: datetime,
            protection: Protection) -> Protection:
    """Raise the lock of every (key, version) to ``until`` (never lowering one), through the store's
    ``ensure_lock``. Stops at the first refusal and says what to do instead."""
    from .errors import GenarcError
    from .store import Retention

    retention = Retention(mode, until)
    protection.until = format_time(until)
    for key, version_id in sorted(versions, key=lambda v: (v[0], v[1] or "")):
        try:
            store.ensure_lock(key, version_id=version_id, retention=retention)
        except GenarcError as exc:
            protection.error = exc.message
            return protection
        protection.objects += 1
    return protection
