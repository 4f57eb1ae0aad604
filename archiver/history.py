"""A job's history, built on what an attacker with the keys and the password cannot forge.

Anyone holding the password can write a manifest that passes its HMAC check, so what a
manifest or its key *claims* (a point number, a time) proves nothing. What the attacker
cannot change is the server's own record: the upload time of each object version, and
every version stored before they arrived. So (docs/design.md, "Trust and time"):

- points are ordered and dated by the server's upload time of their manifest, and
  ``--trusted-before`` keeps only what the server stored before a time;
- chains are followed by the previous manifest's key and SHA-256, never by numbers; a
  manifest that cannot be read is ignored with a warning and cannot break a chain;
- a point whose claimed time is in the future, after the server stored it, or earlier
  than a point the server stored before it, or that forks a chain another point already
  continued, is *suspect*: listed and flagged, never chosen unless asked for by number.

Simulations pin "now" (``GENARC_NOW``), so claimed times there are not on the server's
timeline. This module is the one place that knows it: with an injected clock a point's
time is its claimed time, and claims are not compared with upload times.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from . import manifest as manifest_mod
from .clock import Clock, format_time
from .errors import IntegrityError, UsageError
from .layout import ManifestName, manifests_prefix, parse_manifest_key
from .manifest import Manifest
from .repository import Repository, first_version, listing
from .store import ObjectInfo

TOLERANCE = timedelta(minutes=15)  # clock skew allowed between a client and the server
_EPOCH = datetime.min.replace(tzinfo=timezone.utc)


@dataclass
class Point:
    """One committed restore point: the manifest version genarc wrote first at its key."""

    name: ManifestName
    stored: datetime | None  # the server's upload time of that version
    flags: dict[str, str] = field(default_factory=dict)  # why it is suspect: "future", "backdated", ...
    parent: tuple[str, str] | None = None  # (key, SHA-256) of the manifest it continues, once read
    sha256: str | None = None  # of its manifest, once read

    @property
    def key(self) -> str:
        return self.name.key

    @property
    def claimed(self) -> datetime:
        return self.name.point_time

    @property
    def suspect(self) -> bool:
        return bool(self.flags)

    def label(self) -> str:
        return f"{self.name.gseq}.{self.name.pseq}"


@dataclass
class History:
    job: str
    points: list[Point]  # oldest stored first
    versions: dict[str, list[ObjectInfo]]  # every version and marker under the job's manifest prefix, by key
    injected: bool
    now: datetime
    warnings: list[str] = field(default_factory=list)
    _manifests: dict[str, Manifest] = field(default_factory=dict)
    _keys: dict[str, Point] = field(init=False)

    def __post_init__(self) -> None:
        self._keys = {p.key: p for p in self.points}

    # -- reading -----------------------------------------------------------------------------------
    @classmethod
    def read(cls, repo: Repository, job: str, clock: Clock) -> "History":
        versions = listing(repo.store, manifests_prefix(job))
        points = []
        for key, infos in versions.items():
            parsed = parse_manifest_key(key)
            original = first_version(infos)
            if parsed is None or parsed.job != job or original is None:
                continue
            name = dataclasses.replace(parsed, version_id=original.version_id)
            points.append(Point(name, original.modified))
        points.sort(key=lambda p: (p.stored or _EPOCH, p.claimed, p.name.gseq, p.name.pseq, p.key))
        history = cls(job, points, versions, bool(getattr(clock, "injected", False)), clock.now())
        history._flag_times()
        return history

    def time_of(self, point: Point) -> datetime:
        """The point's time on the reader's timeline: the server's upload time (the claim under an injected clock)."""
        if self.injected or point.stored is None:
            return point.claimed
        return point.stored

    def _flag_times(self) -> None:
        latest_claim: datetime | None = None  # the newest claim of a trusted point stored strictly earlier
        pending: list[Point] = []
        for index, point in enumerate(self.points):
            if point.claimed > self.now + TOLERANCE:
                point.flags["future"] = f"claims {format_time(point.claimed)}, in the future"
            if not self.injected and point.stored is not None and point.claimed > point.stored + TOLERANCE:
                point.flags["skewed"] = (f"claims {format_time(point.claimed)}, after the server stored it at "
                                         f"{format_time(point.stored)}")
            if latest_claim is not None and point.claimed < latest_claim - TOLERANCE:
                point.flags["backdated"] = (f"claims {format_time(point.claimed)}, earlier than a point the server "
                                            f"stored before it ({format_time(latest_claim)})")
            pending.append(point)
            following = self.points[index + 1] if index + 1 < len(self.points) else None
            if following is None or following.stored != point.stored:  # a second later on the server: settle
                for done in pending:
                    if not done.flags and (latest_claim is None or done.claimed > latest_claim):
                        latest_claim = done.claimed
                pending = []

    # -- choosing ----------------------------------------------------------------------------------
    def by_key(self, key: str) -> Point | None:
        return self._keys.get(key)

    def gaps(self, point: Point) -> list[int]:
        """Point numbers below ``point`` that no point of its generation holds: a sign, free from the listing,
        that a manifest of its chain is gone (the chain itself is followed by hashes)."""
        held = {p.name.pseq for p in self.points
                if (p.name.gseq, p.name.gstart) == (point.name.gseq, point.name.gstart)}
        return [n for n in range(1, point.name.pseq) if n not in held]

    def trusted(self, before: datetime | None = None) -> list[Point]:
        return [p for p in self.stored_before(before) if not p.suspect]

    def stored_before(self, before: datetime | None) -> list[Point]:
        if before is None:
            return list(self.points)
        return [p for p in self.points if p.stored is not None and p.stored <= before]

    def newest(self, repo: Repository | None = None, workdir: Path | None = None,
               before: datetime | None = None, known: str | None = None) -> Point | None:
        """The newest trusted point; with a repository, one whose manifest can be read (others are flagged).
        A point at key ``known`` (the catalog's tip, read when it was committed) is taken without reading it."""
        for point in reversed(self.trusted(before)):
            if repo is None or workdir is None or point.key == known or self.readable(repo, point, workdir):
                return point
        return None

    def choose(self, repo: Repository, workdir: Path, *, generation: int | None = None, point: int | None = None,
               at: datetime | None = None, trusted_before: datetime | None = None) -> Point:
        """The point --generation/--point/--at/--trusted-before ask for: the newest trusted one by default.

        A suspect point is chosen only by its number, and then with a warning."""
        job = self.job
        pool = self.stored_before(trusted_before)
        if not self.points:
            raise UsageError(f"Job {job!r} has no restore points in this repository.")
        if not pool:
            raise UsageError(f"Job {job!r} has no restore point the server stored before {format_time(trusted_before)}.")  # type: ignore[arg-type]
        if generation is not None:
            pool = [p for p in pool if p.name.gseq == generation]
            if not pool:
                raise UsageError(f"Job {job!r} has no generation {generation}; `genarc list {job}` shows them.")
        if point is not None:
            pool = [p for p in pool if p.name.pseq == point]
            if not pool:
                raise UsageError(f"Job {job!r} has no point {point} in that generation; `genarc list {job}` shows them.")
            pool.sort(key=lambda p: (p.suspect, not self.readable(repo, p, workdir), p.stored or _EPOCH))
            chosen = pool[0]
            if chosen.suspect:
                self.warnings.append(f"point {chosen.label()} ({chosen.key}) is suspect: "
                                     f"{'; '.join(chosen.flags.values())}; it was chosen by number")
            return chosen
        if at is not None:
            pool = [p for p in pool if self.time_of(p) <= at]
            if not pool:
                raise UsageError(f"Job {job!r} has no restore point at or before {format_time(at)}.")
        for candidate in reversed(pool):
            if not candidate.suspect and self.readable(repo, candidate, workdir):
                return candidate
        raise IntegrityError(f"Every restore point of job {job!r} that matches is unreadable or suspect; `genarc audit "
                             f"{job}` says why. Choose one with --generation and --point, or restore from before the "
                             "attack with --trusted-before.")

    # -- manifests and chains -------------------------------------------------------------------------
    def load(self, repo: Repository, point: Point, workdir: Path) -> Manifest:
        """The point's manifest, read once; a manifest that cannot be read flags its point ``unreadable``."""
        cached = self._manifests.get(point.key)
        if cached is not None and cached.plain_path.exists():
            return cached
        try:
            loaded = manifest_mod.load(repo, point.name, workdir)
        except IntegrityError as exc:
            if "unreadable" not in point.flags:
                point.flags["unreadable"] = exc.message
                self.warnings.append(f"ignored {point.key}: {exc.message}")
            raise
        parent = loaded.header.get("parent")
        point.sha256 = loaded.sha256
        point.parent = (str(parent.get("key")), str(parent.get("sha256"))) if isinstance(parent, dict) else None
        self._manifests[point.key] = loaded
        return loaded

    def readable(self, repo: Repository, point: Point, workdir: Path) -> bool:
        try:
            self.load(repo, point, workdir)
        except IntegrityError:
            return False
        return True

    def chain(self, repo: Repository, tip: Point, workdir: Path) -> list[Manifest]:
        """The manifests from the full that opens ``tip``'s chain up to ``tip``, followed by parent hashes."""
        chain = [self.load(repo, tip, workdir)]
        while True:
            current = chain[-1]
            parent = current.header.get("parent")
            kind = current.header.get("kind")
            if parent is None:
                if kind != "full":
                    raise IntegrityError(f"Manifest {current.key} should open its generation with a full but does not.")
                break
            if kind != "incremental" or not isinstance(parent, dict):
                raise IntegrityError(f"Manifest {current.key} does not link to a previous point in the form genarc writes.")
            key = parent.get("key")
            point = self.by_key(key) if isinstance(key, str) else None
            if point is None:
                raise IntegrityError(f"Manifest {current.key} continues {key!r}, which is missing from the repository; "
                                     "its chain is broken.")
            try:
                previous = self.load(repo, point, workdir)
            except IntegrityError as exc:
                raise IntegrityError(f"Manifest {current.key} continues {key}, which cannot be read ({exc.message}); "
                                     "its chain is broken.") from None
            if previous.sha256 != parent.get("sha256"):
                raise IntegrityError(f"Manifest {current.key} links to a different version of {key} than genarc wrote; "
                                     "the chain was altered.")
            if (point.name.gseq, point.name.pseq + 1) != (current.name.gseq, current.name.pseq):
                raise IntegrityError(f"Manifest {current.key} continues {key}, which is not the point before it in its "
                                     "generation; the chain was altered.")
            current_point = self.by_key(current.key)
            if current_point and current_point.stored and point.stored and point.stored > current_point.stored:
                raise IntegrityError(f"Manifest {current.key} continues {key}, which the server stored after it; "
                                     "the chain was forged.")
            chain.append(previous)
        chain.reverse()
        return chain

    def check(self, repo: Repository, workdir: Path) -> None:
        """Read every manifest: flag the unreadable ones, forks, and points whose chain cannot be followed."""
        for point in self.points:
            self.readable(repo, point, workdir)
        keeper: dict[tuple, Point] = {}
        for point in self.points:  # in stored order: the first trusted point to continue a point keeps it
            if point.suspect:
                continue
            link = point.parent or ("full", point.name.gseq, point.name.gstart)
            if link in keeper:
                point.flags["fork"] = f"continues the same point as {keeper[link].key}, which the server stored first"
            else:
                keeper[link] = point
        for point in self.points:  # parents were stored first, so their flags are settled by now
            if point.suspect:
                continue
            try:
                chain = self.chain(repo, point, workdir)
            except IntegrityError as exc:
                point.flags["broken"] = exc.message
                continue
            tainted = [p for p in map(self.by_key, (m.key for m in chain)) if p is not None and p.suspect]
            if tainted:
                point.flags["tainted"] = f"its chain goes through the suspect point {tainted[-1].key}"

    def leaves(self, before: datetime | None = None) -> list[Point]:
        """Readable points (stored by ``before``) that no other such point continues: their chains cover all."""
        scope = [p for p in self.stored_before(before) if "unreadable" not in p.flags]
        continued = {p.parent[0] for p in scope if p.parent}
        return [p for p in scope if p.key not in continued]

    def needed(self, repo: Repository, tips: list[Point], workdir: Path) -> set[tuple[str, str | None]]:
        """Every (key, version) the chains of ``tips`` need to restore: their manifests and the objects they list."""
        found: set[tuple[str, str | None]] = set()
        for tip in tips:
            for manifest in self.chain(repo, tip, workdir):
                found.add((manifest.key, manifest.version_id))
                found.update((obj["key"], obj.get("version_id")) for obj in manifest.objects)
        return found

    def drop(self, workdir: Path) -> None:
        """Forget the manifests read so far (their plain files live in ``workdir``)."""
        for manifest in self._manifests.values():
            manifest.plain_path.unlink(missing_ok=True)
        self._manifests.clear()


def describe(point: Point) -> str:
    return f"point {point.label()} ({point.key}): " + "; ".join(f"{k}: {v}" for k, v in point.flags.items())


