"""Pure generation arithmetic, with property tests over any R, F, m, run times and skew."""

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.generation import (GenerationRef, RetentionPolicy, decide_run, expires_from, generation_closes,
                                 lifecycle_age_days, lock_until, restorable_until)

T0 = datetime(2027, 1, 4, 2, 0, tzinfo=timezone.utc)
POLICY = RetentionPolicy(keep_days=30, generation_days=7, margin_days=1)


def test_lock_and_lifecycle_for_the_worked_example():
    assert lock_until(T0, POLICY) == T0 + timedelta(days=38)
    assert lifecycle_age_days(POLICY) == 39
    assert expires_from(T0, POLICY) == T0 + timedelta(days=39)


def test_first_run_is_a_full():
    decision = decide_run(T0, None, POLICY)
    assert (decision.kind, decision.generation) == ("full", GenerationRef(1, T0))


def test_rollover_exactly_at_start_plus_f():
    gen = GenerationRef(4, T0)
    assert decide_run(T0 + timedelta(days=7) - timedelta(seconds=1), gen, POLICY).kind == "incremental"
    rolled = decide_run(T0 + timedelta(days=7), gen, POLICY)
    assert rolled.kind == "full" and rolled.generation == GenerationRef(5, T0 + timedelta(days=7))


def test_forced_full_and_broken_chain_open_a_generation():
    gen = GenerationRef(2, T0)
    assert decide_run(T0 + timedelta(hours=1), gen, POLICY, force_full=True).generation.seq == 3
    broken = decide_run(T0 + timedelta(hours=1), gen, POLICY, chain_ok=False)
    assert broken.kind == "full" and "broken" in broken.reason


def test_day_seconds_scale_every_date():
    fast = RetentionPolicy(keep_days=30, generation_days=7, margin_days=1, day_seconds=10)
    assert lock_until(T0, fast) == T0 + timedelta(seconds=380)
    assert generation_closes(T0, fast) == T0 + timedelta(seconds=70)


@settings(max_examples=300, deadline=None)
@given(
    keep=st.integers(1, 400), span=st.integers(1, 60), margin=st.integers(0, 5),
    gaps=st.lists(st.floats(0.01, 3.0), min_size=1, max_size=60),
    run_hours=st.floats(0, 20), skew_frac=st.floats(-1, 1),
)
def test_no_point_within_retention_needs_an_expired_object(keep, span, margin, gaps, run_hours, skew_frac):
    """Simulate runs: every restore point younger than R only needs objects younger than L, and locks end by L."""
    policy = RetentionPolicy(keep_days=keep, generation_days=span, margin_days=margin)
    now = T0
    gen = None
    for gap in gaps:
        now = now + timedelta(days=gap)
        decision = decide_run(now, gen, policy)
        gen = decision.generation
        # Objects of the point are uploaded during the run, which may last some hours, and the
        # uploader's clock may be off by up to m days (bounded so it never precedes the generation start).
        skew = timedelta(days=margin * skew_frac)
        upload = max(gen.start, now + skew) + timedelta(hours=min(run_hours, 24 * margin if margin else 0))
        point_end = restorable_until(now, policy)
        # The oldest object a point needs was uploaded at the generation start.
        oldest_needed_upload = gen.start
        assert oldest_needed_upload + timedelta(days=lifecycle_age_days(policy)) > point_end
        # Every object is locked through the retention of each point needing it...
        assert lock_until(gen.start, policy) >= point_end
        # ...and no object is locked past the day the lifecycle may expire it.
        assert lock_until(gen.start, policy) <= upload + timedelta(days=lifecycle_age_days(policy))
