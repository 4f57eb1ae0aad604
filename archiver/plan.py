"""The retention planner (pure): lifecycle rules, forecasts, the suggested F, and the checks.

Everything here takes data (a RetentionPolicy, a Sizing, rules, restore points, a
``now``) and returns data. The CLI prints it; the admin module applies it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Iterable

from .clock import format_time
from .generation import RetentionPolicy, lifecycle_age_days
from .store.inspect import LifecycleRule, rules_from_b2, rules_from_s3
from .units import human_bytes

NONCURRENT_DAYS = 1
ABORT_MULTIPART_DAYS = 1
DEFAULT_B2_HIDE_TO_DELETE = 1


@dataclass(frozen=True)
class Sizing:
    source_bytes: float = 100e9
    daily_change: float = 0.01  # share of the source that changes per day
    compression: float = 0.6  # stored bytes per source byte
    runs_per_day: float = 1.0
    volume_bytes: float = 64 * 1024**2
    price_gb_month: float = 0.006
    price_per_1000_requests: float = 0.005
    synthetic: bool = True  # new generations open by server-side copy and repack
    copy_threshold: float = 0.5


# -- lifecycle rules -------------------------------------------------------------------------------
def job_prefixes(repository_prefix: str, jobs: Iterable[str]) -> list[str]:
    """Rules cover each job's prefix, never the repository config beside them."""
    base = repository_prefix.strip("/")
    return [f"{base}/{job}/" if base else f"{job}/" for job in sorted(jobs)]


def s3_lifecycle(policy: RetentionPolicy, prefixes: list[str]) -> dict[str, Any]:
    """The input of `aws s3api put-bucket-lifecycle-configuration`."""
    age = lifecycle_age_days(policy)
    rules = []
    for prefix in prefixes:
        rules.append({
            "ID": f"genarc-expire-{prefix.strip('/').replace('/', '-')}",
            "Status": "Enabled",
            "Filter": {"Prefix": prefix},
            "Expiration": {"Days": age},
            "NoncurrentVersionExpiration": {"NoncurrentDays": NONCURRENT_DAYS},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_MULTIPART_DAYS},
        })
        rules.append({
            "ID": f"genarc-markers-{prefix.strip('/').replace('/', '-')}",
            "Status": "Enabled",
            "Filter": {"Prefix": prefix},
            "Expiration": {"ExpiredObjectDeleteMarker": True},
        })
    return {"Rules": rules}


def b2_lifecycle(policy: RetentionPolicy, prefixes: list[str], hide_to_delete: int = DEFAULT_B2_HIDE_TO_DELETE) -> list[dict]:
    age = lifecycle_age_days(policy)
    return [{"fileNamePrefix": p, "daysFromUploadingToHiding": age, "daysFromHidingToDeleting": hide_to_delete}
            for p in prefixes]


# -- the storage model -----------------------------------------------------------------------------
@dataclass
class Curve:
    generation_days: int
    days: list[int] = field(default_factory=list)
    stored_bytes: list[float] = field(default_factory=list)
    alive_generations: list[int] = field(default_factory=list)
    per_generation: dict[int, list[float]] = field(default_factory=dict)

    @property
    def steady(self) -> slice:
        """The part of the curve after the first expiry, where the sawtooth has settled."""
        return slice(min(len(self.days) - 1, len(self.days) // 2), None)

    @property
    def peak(self) -> float:
        return max(self.stored_bytes[self.steady]) if self.stored_bytes else 0.0

    @property
    def average(self) -> float:
        values = self.stored_bytes[self.steady]
        return sum(values) / len(values) if values else 0.0


def storage_curve(policy: RetentionPolicy, sizing: Sizing, days: int, removal_lag: int = NONCURRENT_DAYS) -> Curve:
    """Stored bytes per day: each run adds its objects, the lifecycle removes each one L + lag days later.

    A full stores the whole source; an incremental the day's changes. Objects stay until the
    lifecycle age L and the noncurrent (or hide-to-delete) lag have passed; locks always end
    before that, by construction.
    """
    age = lifecycle_age_days(policy) + removal_lag
    full = sizing.source_bytes * sizing.compression
    per_run_change = sizing.source_bytes * sizing.daily_change * sizing.compression / max(sizing.runs_per_day, 1e-9)
    step = 1.0 / max(sizing.runs_per_day, 1e-9)
    uploads: list[tuple[float, int, float]] = []  # (time, generation, bytes)
    t, gen, gen_start = 0.0, 0, None
    while t < days:
        if gen_start is None or t >= gen_start + policy.generation_days:
            gen, gen_start = gen + 1, t
            uploads.append((t, gen, full))
        else:
            uploads.append((t, gen, per_run_change))
        t += step
    curve = Curve(policy.generation_days)
    for day in range(days):
        total, alive, by_gen = 0.0, set(), {}
        for when, g, size in uploads:
            if when <= day < when + age:
                total += size
                alive.add(g)
                by_gen[g] = by_gen.get(g, 0.0) + size
        curve.days.append(day)
        curve.stored_bytes.append(total)
        curve.alive_generations.append(len(alive))
        for g in by_gen:
            curve.per_generation.setdefault(g, [0.0] * day)
        for g, series in curve.per_generation.items():
            series.append(by_gen.get(g, 0.0))
    return curve


@dataclass
class Forecast:
    keep_days: int
    generation_days: int
    margin_days: int
    lock_days: int
    lifecycle_age_days: int
    alive_generations: float
    peak_bytes: float
    average_bytes: float
    uploaded_bytes_per_month: float
    requests_per_month: float
    repacked_share: float
    copy_requests_per_month: float
    monthly_cost: float
    longest_chain: int


def forecast(policy: RetentionPolicy, sizing: Sizing, days: int | None = None) -> tuple[Forecast, Curve]:
    days = days or max(120, 4 * lifecycle_age_days(policy) + 2 * policy.generation_days)
    curve = storage_curve(policy, sizing, days)
    steady = curve.alive_generations[curve.steady]
    runs_per_month = 30 * sizing.runs_per_day
    full = sizing.source_bytes * sizing.compression
    change = sizing.source_bytes * sizing.daily_change * sizing.compression
    # A synthetic full copies each volume whose live share is still at or above the threshold and
    # repacks the others. With changes spread evenly, a volume keeps (1 - d)^F of its bytes live.
    live_share = (1 - sizing.daily_change) ** policy.generation_days
    repacked = 0.0 if sizing.synthetic and live_share >= sizing.copy_threshold else 1.0
    generations_per_month = 30 / max(policy.generation_days, 1)
    uploaded = 30 * change + generations_per_month * full * repacked
    copies = generations_per_month * (full * (1 - repacked)) / sizing.volume_bytes
    volumes_per_month = uploaded / sizing.volume_bytes
    requests = volumes_per_month + runs_per_month * 5 + copies * 4  # a copy: 3 HEADs and the copy
    cost = curve.average / 1e9 * sizing.price_gb_month + requests / 1000 * sizing.price_per_1000_requests
    result = Forecast(
        policy.keep_days, policy.generation_days, policy.margin_days, policy.lock_days, lifecycle_age_days(policy),
        alive_generations=round(sum(steady) / len(steady), 2) if steady else 0.0,
        peak_bytes=curve.peak, average_bytes=curve.average, uploaded_bytes_per_month=uploaded,
        requests_per_month=requests, repacked_share=repacked, copy_requests_per_month=copies * 4, monthly_cost=cost,
        longest_chain=max(1, math.ceil(policy.generation_days * sizing.runs_per_day)),
    )
    return result, curve


@dataclass(frozen=True)
class ProtectionCost:
    """What one tripwire protection keeps, at most: the chain of the last clean point (a full and up to F days
    of changes), for up to ``protect_days`` past the day the lifecycle would otherwise have removed it."""

    protect_days: int
    bytes: float
    extra_cost: float


def protection_cost(policy: RetentionPolicy, sizing: Sizing, protect_days: int) -> ProtectionCost:
    full = sizing.source_bytes * sizing.compression
    change = sizing.source_bytes * sizing.daily_change * sizing.compression
    kept = full + policy.generation_days * change
    return ProtectionCost(protect_days, kept, kept / 1e9 * sizing.price_gb_month * protect_days / 30)


def suggest_generation_days(policy: RetentionPolicy, sizing: Sizing,
                            candidates: Iterable[int] | None = None) -> tuple[int, list[Forecast]]:
    """The F with the lowest monthly cost; a shorter restore chain breaks ties."""
    candidates = sorted(set(candidates or [1, 2, 3, 5, 7, 10, 14, 21, 30]))
    results = []
    for f in candidates:
        trial = RetentionPolicy(policy.keep_days, f, policy.margin_days, policy.day_seconds)
        results.append(forecast(trial, sizing)[0])
    best = min(results, key=lambda r: (round(r.monthly_cost, 4), r.longest_chain))
    return best.generation_days, results


# -- checking live rules ---------------------------------------------------------------------------
@dataclass
class Finding:
    level: str  # "error" | "warning" | "ok"
    message: str
    first_lost: dict[str, str] | None = None


def expiry_days(rules: Iterable[LifecycleRule], prefix: str) -> int | None:
    """The shortest current-version expiration that applies to any key under ``prefix`` (None: nothing expires).
    A rule on a narrower prefix counts: it expires some of the job's objects early."""
    days = [r.expire_days for r in rules if r.touches(prefix) and r.expire_days]
    return min(days) if days else None


def expiry_days_from_s3(rules: list[dict], prefix: str) -> int | None:
    return expiry_days(rules_from_s3(rules), prefix)


def expiry_days_from_b2(rules: list[dict], prefix: str) -> int | None:
    return expiry_days(rules_from_b2(rules), prefix)


def check_expiry(policy: RetentionPolicy, expiry_days: int | None, points: list[tuple[str, datetime, datetime]],
                 now: datetime) -> Finding:
    """Does an expiry after ``expiry_days`` keep the promise? ``points``: (name, point time, generation start).

    A point needs every object of its generation, the oldest uploaded at the generation start,
    until point time + R. Expiry earlier than that loses the point; the finding names the first.
    """
    need = lifecycle_age_days(policy)
    if expiry_days is None:
        return Finding("warning", "no lifecycle rule expires these objects: old generations are never removed, "
                                  f"and storage grows (expected: {need} days)")
    if expiry_days >= need:
        if expiry_days > need:
            return Finding("warning", f"objects expire after {expiry_days} days; {need} would keep the promise "
                                      "(storage is kept longer than needed)")
        return Finding("ok", f"objects expire after {expiry_days} days = F + R + m + 1: every restore point keeps "
                             f"its objects for its {policy.keep_days} days")
    candidates = list(points) or [("the last point of a generation opened now", now + policy.days(policy.generation_days) -
                                   policy.days(1 / 24), now)]
    losses = []
    for name, when, gen_start in candidates:
        lost_at = gen_start + policy.days(expiry_days)
        promised = when + policy.days(policy.keep_days)
        if lost_at < promised:
            losses.append((lost_at, name, when, promised))
    if not losses:
        return Finding("warning", f"objects expire after {expiry_days} days, shorter than the {need} days the plan needs, "
                                  "although no restore point listed now is affected yet")
    lost_at, name, when, promised = min(losses)
    return Finding("error", f"objects expire after {expiry_days} days, shorter than the {need} days the retention "
                            f"needs: restore point {name} ({format_time(when)}) would lose its objects on "
                            f"{format_time(lost_at)}, before {format_time(promised)}",
                   first_lost={"point": name, "time": format_time(when), "lost_at": format_time(lost_at),
                               "promised_until": format_time(promised)})


# -- charts ------------------------------------------------------------------------------------------
_BLOCKS = " ▁▂▃▄▅▆▇█"


def text_chart(curve: Curve, width: int = 72, height: int = 8) -> str:
    """A compact terminal chart of stored bytes over time."""
    if not curve.stored_bytes:
        return ""
    values = curve.stored_bytes
    columns = [values[min(len(values) - 1, int(i * len(values) / width))] for i in range(width)]
    top = max(columns) or 1.0
    rows = []
    for level in range(height, 0, -1):
        line = ""
        for v in columns:
            filled = v / top * height
            if filled >= level:
                line += _BLOCKS[-1]
            elif filled > level - 1:
                line += _BLOCKS[max(1, int((filled - level + 1) * 8))]
            else:
                line += " "
        label = human_bytes(top * level / height, si=True) if level in (height, 1) else ""
        rows.append(f"{label:>10} |{line}")
    rows.append(f"{'':>10} +{'-' * width}")
    rows.append(f"{'':>10}  day 0{'':>{width - 14}}day {curve.days[-1]}")
    return "\n".join(rows)


def svg_chart(curves: list[Curve], title: str, width: int = 900, height: int = 360) -> str:
    """Stored bytes over time: the first curve as stacked per-generation sawteeth, the others as lines."""
    pad_l, pad_r, pad_t, pad_b = 70, 20, 40, 40
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b
    days = max(len(c.days) for c in curves)
    top = max(max(c.stored_bytes) for c in curves) or 1.0

    def x(day: float) -> float:
        return pad_l + plot_w * day / max(days - 1, 1)

    def y(value: float) -> float:
        return pad_t + plot_h * (1 - value / top)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="12"><rect width="100%" height="100%" fill="white"/>',
             f'<text x="{pad_l}" y="22" font-size="15">{_escape(title)}</text>']
    main = curves[0]
    palette = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7"]
    base = [0.0] * len(main.days)
    for index, (gen, series) in enumerate(sorted(main.per_generation.items())):
        series = series + [0.0] * (len(main.days) - len(series))
        upper = [b + s for b, s in zip(base, series)]
        points = [f"{x(d):.1f},{y(u):.1f}" for d, u in zip(main.days, upper)]
        points += [f"{x(d):.1f},{y(b):.1f}" for d, b in reversed(list(zip(main.days, base)))]
        parts.append(f'<polygon points="{" ".join(points)}" fill="{palette[index % len(palette)]}" fill-opacity="0.55" '
                     f'stroke="none"><title>generation {gen}</title></polygon>')
        base = upper
    for index, curve in enumerate(curves):
        path = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in zip(curve.days, curve.stored_bytes))
        dash = "" if index == 0 else ' stroke-dasharray="6 3"'
        parts.append(f'<polyline points="{path}" fill="none" stroke="{"#222" if index == 0 else palette[index % 8]}" '
                     f'stroke-width="{2 if index == 0 else 1.5}"{dash}/>')
        parts.append(f'<text x="{width - pad_r - 260}" y="{pad_t + 16 * (index + 1)}" '
                     f'fill="{"#222" if index == 0 else palette[index % 8]}">F = {curve.generation_days} days'
                     f'{" (stacked by generation)" if index == 0 else ""}</text>')
    for i in range(5):
        value = top * i / 4
        parts.append(f'<line x1="{pad_l}" x2="{width - pad_r}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{pad_l - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{human_bytes(value, si=True)}</text>')
    for i in range(6):
        day = (days - 1) * i / 5
        parts.append(f'<text x="{x(day):.1f}" y="{height - pad_b + 18}" text-anchor="middle">day {day:.0f}</text>')
    parts.append(f'<text x="{pad_l}" y="{height - 6}" fill="#555">stored bytes over time; each colour is one '
                 'generation, removed whole by the lifecycle rule</text></svg>')
    return "\n".join(parts) + "\n"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def as_dict(value: Any) -> Any:
    return asdict(value)

