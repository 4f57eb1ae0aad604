"""The planner's arithmetic (pure) and the lifecycle simulation that checks it."""

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.admin.simulate import simulate
from archiver.generation import RetentionPolicy
from archiver.plan import (Sizing, b2_lifecycle, check_expiry, expiry_days_from_b2, expiry_days_from_s3, forecast,
                           job_prefixes, s3_lifecycle, suggest_generation_days, svg_chart, text_chart)

T0 = datetime(2027, 1, 4, 2, 0, tzinfo=timezone.utc)
POLICY = RetentionPolicy(keep_days=30, generation_days=7, margin_days=1)
SIZING = Sizing(source_bytes=100e9, daily_change=0.01, compression=0.6)


def test_rules_expire_at_the_lifecycle_age_for_every_job_prefix_only():
    prefixes = job_prefixes("host1/genarc", ["home", "etc"])
    assert prefixes == ["host1/genarc/etc/", "host1/genarc/home/"]
    rules = s3_lifecycle(POLICY, prefixes)["Rules"]
    expire = [r for r in rules if r["Expiration"].get("Days")]
    assert [r["Filter"]["Prefix"] for r in expire] == prefixes  # never the repository config beside them
    assert all(r["Expiration"]["Days"] == 39 for r in expire)
    assert all(r["NoncurrentVersionExpiration"]["NoncurrentDays"] == 1 for r in expire)
    assert all(r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1 for r in expire)
    assert sum(1 for r in rules if r["Expiration"].get("ExpiredObjectDeleteMarker")) == 2
    assert expiry_days_from_s3(rules, "host1/genarc/home/") == 39
    b2 = b2_lifecycle(POLICY, prefixes)
    assert b2[0] == {"fileNamePrefix": "host1/genarc/etc/", "daysFromUploadingToHiding": 39, "daysFromHidingToDeleting": 1}
    assert expiry_days_from_b2(b2, "host1/genarc/etc/") == 39


def test_a_short_lifecycle_names_the_first_restore_point_lost():
    points = [(f"home 5.{p}", T0 + timedelta(days=p - 1), T0) for p in range(1, 8)]
    finding = check_expiry(POLICY, 20, points, T0 + timedelta(days=8))
    assert finding.level == "error"
    assert finding.first_lost["point"] == "home 5.1"
    assert finding.first_lost["lost_at"] == "2027-01-24T02:00:00Z"  # generation start + 20 days
    assert "home 5.1" in finding.message and "2027-01-24" in finding.message
    assert check_expiry(POLICY, 39, points, T0).level == "ok"
    assert check_expiry(POLICY, 60, points, T0).level == "warning"
    assert check_expiry(POLICY, None, points, T0).level == "warning"


def test_forecast_matches_the_rule_of_thumb_and_the_simulation():
    result, curve = forecast(POLICY, SIZING)
    assert abs(result.alive_generations - (30 + 2 * 7 + 1) / 7) < 0.8
    assert result.longest_chain == 7 and result.lifecycle_age_days == 39 and result.lock_days == 38
    sim = simulate(POLICY, SIZING, 160, T0)
    assert sim.broken_points == [] and sim.points_checked > 1000 and sim.reclaimed_generations >= 15
    steady = sim.stored_bytes[80:]
    assert abs(max(steady) - result.peak_bytes) / result.peak_bytes < 0.05
    assert abs(sum(steady) / len(steady) - result.average_bytes) / result.average_bytes < 0.05


def test_suggested_f_is_the_cheapest():
    best, results = suggest_generation_days(POLICY, SIZING, [3, 7, 14])
    assert best == min(results, key=lambda r: r.monthly_cost).generation_days
    assert [r.generation_days for r in results] == [3, 7, 14]


def test_charts_render():
    _, curve = forecast(POLICY, SIZING)
    text = text_chart(curve)
    assert "█" in text and "day 0" in text
    svg = svg_chart([curve], "example")
    assert svg.startswith("<svg") and svg.count("<polygon") >= 10 and svg.rstrip().endswith("</svg>")


@settings(max_examples=25, deadline=None)
@given(keep=st.integers(1, 20), span=st.integers(1, 10), margin=st.integers(0, 3),
       runs=st.sampled_from([0.5, 1.0, 3.0]))
def test_lifecycle_never_breaks_a_point_within_retention(keep, span, margin, runs):
    """Play the planned rules over months: no restore point younger than R ever misses an object."""
    policy = RetentionPolicy(keep_days=keep, generation_days=span, margin_days=margin)
    sizing = Sizing(source_bytes=1e6, daily_change=0.05, compression=1.0, runs_per_day=runs)
    sim = simulate(policy, sizing, 3 * (keep + span + margin) + 10, T0)
    assert sim.broken_points == []
    assert sim.objects_kept_by_lock == 0  # the local store has no locks; see the S3 scenario for locked runs
    assert sim.reclaimed_generations >= 1


def test_forecast_counts_synthetic_fulls_copies_and_repacks():
    import dataclasses

    synthetic, _ = forecast(POLICY, SIZING)
    active, _ = forecast(POLICY, dataclasses.replace(SIZING, synthetic=False))
    assert synthetic.repacked_share == 0.0 and synthetic.copy_requests_per_month > 0
    assert synthetic.uploaded_bytes_per_month < 0.2 * active.uploaded_bytes_per_month
    churn, _ = forecast(POLICY, dataclasses.replace(SIZING, daily_change=0.2))  # 0.8^7 = 21 % live by rollover
    assert churn.repacked_share == 1.0 and churn.copy_requests_per_month == 0


def test_choose_copies_volumes_at_or_above_the_threshold():
    from archiver.synthetic import choose

    live = {"a": 90, "b": 50, "c": 10, "d": 30}
    content = {"a": 100, "b": 100, "c": 100, "d": None}  # d: unknown size, so repacked
    assert choose(live, content, 0.5) == (["a", "b"], ["c", "d"])
    assert choose(live, content, 0.0) == (["a", "b", "c"], ["d"])


def test_a_protection_costs_one_chain_for_protect_days():
    from archiver.plan import protection_cost

    sizing = Sizing(source_bytes=100e9, daily_change=0.01, compression=0.5)
    cost = protection_cost(RetentionPolicy(keep_days=30, generation_days=7, margin_days=1), sizing, 30)
    assert cost.bytes == 50e9 + 7 * 0.5e9  # a full and F days of changes
    assert abs(cost.extra_cost - cost.bytes / 1e9 * sizing.price_gb_month) < 1e-9  # 30 days: one month
