"""genarc plan: the lifecycle rule that keeps the promise, what it costs, and whether the bucket has it."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .. import plan as plan_mod
from ..config import parse_size
from ..errors import EXIT_OK, EXIT_UNSAFE, ConfigError, GenarcError, PermissionDenied, RepositoryNotFound
from ..generation import lifecycle_age_days
from ..history import History
from ..longterm import tier_job, tier_policy
from ..repository import Repository
from ..store import inspector_for, open_store, split_bucket_url
from ..units import human_bytes
from .common import add_json, context, emit_json, say

HELP = "print the lifecycle rule, lock length, storage forecast and cost for the retention settings"
EXAMPLE = ("genarc plan --source-size 200GB --change-rate 1 --chart plan.svg\n"
           "  genarc plan --check          # does the bucket's live lifecycle keep the promise?\n"
           "  genarc plan --apply --admin-profile admin   # write the rules, with admin credentials")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("plan", help=HELP, description=f"{HELP}.\n\nexample:\n  {EXAMPLE}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source-size", default="100GB", metavar="SIZE", help="bytes to back up (default 100GB)")
    p.add_argument("--change-rate", type=float, default=1.0, metavar="PCT", help="percent of the source's bytes changed per day (of a file larger than a volume, its "
                        "changed 8 MiB parts; files moved within a generation count nothing)")
    p.add_argument("--compression", type=float, default=0.6, metavar="RATIO", help="stored bytes per source byte")
    p.add_argument("--runs-per-day", type=float, default=1.0, metavar="N")
    p.add_argument("--price-gb-month", type=float, default=0.006, metavar="USD")
    p.add_argument("--price-per-1000-requests", type=float, default=0.005, metavar="USD")
    p.add_argument("--chart", metavar="FILE", help="write an SVG chart of stored bytes over time")
    p.add_argument("--check", action="store_true", help="read the bucket's live lifecycle and say if it keeps the promise")
    p.add_argument("--apply", action="store_true", help="write the lifecycle rules with ADMIN credentials")
    p.add_argument("--admin-profile", metavar="NAME",
                   help="AWS profile for --apply (else GENARC_ADMIN_AWS_ACCESS_KEY_ID/_SECRET_ACCESS_KEY; for B2, "
                        "GENARC_ADMIN_B2_APPLICATION_KEY_ID/_KEY)")
    p.add_argument("--simulate", type=int, metavar="DAYS", help="run the lifecycle over DAYS simulated days and report")
    add_json(p)
    p.set_defaults(func=run)


def _sizing(args: argparse.Namespace, volume_bytes: int, fulls) -> plan_mod.Sizing:
    if not 0 <= args.change_rate <= 100 or not 0 < args.compression <= 2 or args.runs_per_day <= 0:
        raise ConfigError("--change-rate is a percentage (0-100), --compression a ratio (0-2], --runs-per-day > 0.")
    return plan_mod.Sizing(parse_size(args.source_size, "--source-size"), args.change_rate / 100, args.compression,
                           args.runs_per_day, volume_bytes, args.price_gb_month, args.price_per_1000_requests,
                           fulls.synthetic, fulls.copy_threshold)


def run(args: argparse.Namespace) -> int:
    ctx = context(args)
    cfg, policy = ctx.config, ctx.config.retention
    sizing = _sizing(args, cfg.volumes.size, cfg.fulls)
    url = cfg.repository_url
    scheme = url.split("://", 1)[0] if "://" in url else "file"
    prefix = split_bucket_url(url)[1] if scheme in ("s3", "b2") else ""
    prefixes = plan_mod.job_prefixes(prefix, cfg.jobs)
    s3_rules = plan_mod.s3_lifecycle(policy, prefixes)
    b2_rules = plan_mod.b2_lifecycle(policy, prefixes)
    longterm = {}
    for tier, count in cfg.longterm.items():
        tier_retention = tier_policy(policy, tier, count)
        tier_prefixes = plan_mod.job_prefixes(prefix, [tier_job(j, tier) for j in cfg.jobs])
        s3_rules["Rules"] += plan_mod.s3_lifecycle(tier_retention, tier_prefixes)["Rules"]
        b2_rules += plan_mod.b2_lifecycle(tier_retention, tier_prefixes)
        longterm[tier] = {"keep": count, "lock_days": tier_retention.lock_days,
                          "lifecycle_age_days": lifecycle_age_days(tier_retention), "prefixes": tier_prefixes}
    if args.check:
        return _check(ctx, args, prefixes)
    if args.apply:
        return _apply(ctx, args, s3_rules, b2_rules)
    result, curve = plan_mod.forecast(policy, sizing)
    best, alternatives = plan_mod.suggest_generation_days(policy, sizing, [policy.generation_days, 1, 3, 7, 14, 30])
    out = {"retention": {"keep_days": policy.keep_days, "generation_days": policy.generation_days,
                         "margin_days": policy.margin_days, "lock_mode": cfg.lock_mode},
           "lock_days": policy.lock_days, "lifecycle_age_days": lifecycle_age_days(policy),
           "s3_lifecycle": s3_rules, "b2_lifecycle_rules": b2_rules, "forecast": plan_mod.as_dict(result),
           "suggested_generation_days": best, "longterm": longterm,
           "alternatives": [plan_mod.as_dict(a) for a in alternatives],
           "unlocked_recovery_window_days": {"s3": plan_mod.NONCURRENT_DAYS, "b2": plan_mod.DEFAULT_B2_HIDE_TO_DELETE},
           "unprotected": _unprotected(scheme)}
    if cfg.tripwire.enabled:
        out["tripwire_protection"] = plan_mod.as_dict(
            plan_mod.protection_cost(policy, sizing, cfg.tripwire.protect_days))
    if args.simulate:
        from ..admin.simulate import simulate

        sim = simulate(policy, sizing, args.simulate, ctx.clock.now())
        out["simulation"] = {"days": args.simulate, "points_checked": sim.points_checked,
                             "broken_points": sim.broken_points, "reclaimed_generations": sim.reclaimed_generations,
                             "peak_bytes": max(sim.stored_bytes), "final_bytes": sim.stored_bytes[-1],
                             "stored_bytes": sim.stored_bytes}
    if args.chart:
        others = [plan_mod.forecast(type(policy)(policy.keep_days, f, policy.margin_days, policy.day_seconds), sizing,
                                    len(curve.days))[1]
                  for f in sorted({best, max(1, policy.generation_days // 2), 2 * policy.generation_days}
                                  - {policy.generation_days})]
        Path(args.chart).write_text(plan_mod.svg_chart([curve, *others],
                                    f"R = {policy.keep_days}, F = {policy.generation_days}, m = {policy.margin_days}: "
                                    f"stored bytes for a {human_bytes(sizing.source_bytes, si=True)} source"))
        out["chart"] = args.chart
    if args.json:
        emit_json(out)
        return EXIT_OK
    _print(out, result, curve, alternatives, best, sizing, cfg)
    return EXIT_OK if not out.get("simulation", {}).get("broken_points") else EXIT_UNSAFE


def _unprotected(scheme: str) -> str | None:
    """The same sentence doctor and watch say, for a repository that is a local directory."""
    if scheme != "file":
        return None
    from ..store.local import LocalStore

    return LocalStore.capabilities.unprotected


def _print(out: dict, result: plan_mod.Forecast, curve: plan_mod.Curve, alternatives: list, best: int,
           sizing: plan_mod.Sizing, cfg) -> None:
    import json

    def h(n: float) -> str:
        return human_bytes(n, si=True)

    policy = cfg.retention
    if out["unprotected"]:
        say(f"this repository: {out['unprotected']}. What follows is what an S3 or B2 bucket with these "
            "settings would need and cost.\n")
    say(f"retention: every restore point stays restorable {policy.keep_days} days (R); a new generation every "
        f"{policy.generation_days} days (F); margin {policy.margin_days} day(s) (m)")
    say(f"lock: every object of a generation is locked ({cfg.lock_mode}) until its start + F + R + m = "
        f"{policy.lock_days} days")
    say(f"lifecycle age: objects expire L = F + R + m + 1 = {out['lifecycle_age_days']} days after upload")
    say("legal holds: a generation kept with `genarc hold` stays (and is billed) until released, whatever the "
        "lifecycle says; the figures below leave it out, and `genarc doctor` lists what is held")
    for tier, info in out["longterm"].items():
        say(f"long-term ({tier}): the first point of each {tier[:-2] if tier == 'monthly' else 'year'} is copied to "
            f"{', '.join(info['prefixes'])}, locked {info['lock_days']} days and expired after "
            f"{info['lifecycle_age_days']} (keep {info['keep']})")
    say("")
    say("S3 lifecycle (aws s3api put-bucket-lifecycle-configuration --bucket BUCKET --lifecycle-configuration file://rules.json):")
    say(json.dumps(out["s3_lifecycle"], indent=2))
    say("B2 lifecycleRules:")
    say(json.dumps(out["b2_lifecycle_rules"], indent=2))
    say("")
    say(f"for a {h(sizing.source_bytes)} source changing {sizing.daily_change * 100:g} % a day, stored at "
        f"{sizing.compression:g} of its size, {sizing.runs_per_day:g} run(s) a day:")
    say(f"  generations alive at once: {result.alive_generations:g} (about (R + 2F + m) / F)")
    say(f"  stored: peak {h(result.peak_bytes)}, average {h(result.average_bytes)}")
    say(f"  uploaded per month: {h(result.uploaded_bytes_per_month)}; about {result.requests_per_month:.0f} requests"
        + (f", {result.copy_requests_per_month:.0f} of them for server-side copies" if result.copy_requests_per_month else ""))
    if sizing.synthetic:
        say(f"  new generations open synthetic: {'everything live is copied server-side' if not result.repacked_share else 'volumes fall below the copy threshold by rollover, so they are repacked'}")
    say(f"  monthly cost: ${result.monthly_cost:.2f} (at ${sizing.price_gb_month}/GB-month, "
        f"${sizing.price_per_1000_requests} per 1,000 requests)")
    say(f"  longest restore chain: {result.longest_chain} points (a full plus its incrementals)")
    if "tripwire_protection" in out:
        cost = out["tripwire_protection"]
        say(f"  a tripwire protection keeps the last clean point's chain (at most {h(cost['bytes'])}: a full and F "
            f"days of changes) up to {cost['protect_days']} days longer: at most ${cost['extra_cost']:.2f} per trip")
    say(f"  without a lock, a delete-marked (S3) or hidden (B2) object can still be recovered for "
        f"{plan_mod.NONCURRENT_DAYS} day(s): notice an attack within that window")
    say("")
    say(f"suggested F: {best} days (lowest monthly cost; a shorter chain breaks ties)")
    say(f"  {'F':>4} {'alive':>6} {'peak':>10} {'average':>10} {'cost/month':>11} {'chain':>6}")
    for alt in alternatives:
        mark = " <" if alt.generation_days == policy.generation_days else ""
        say(f"  {alt.generation_days:>4} {alt.alive_generations:>6g} {h(alt.peak_bytes):>10} {h(alt.average_bytes):>10} "
            f"{'$%.2f' % alt.monthly_cost:>11} {alt.longest_chain:>6}{mark}")
    say("")
    say(plan_mod.text_chart(curve))
    if "simulation" in out:
        sim = out["simulation"]
        say("")
        say(f"simulated {sim['days']} days with the lifecycle applied daily: {sim['points_checked']} point-days checked, "
            f"{len(sim['broken_points'])} broken, {sim['reclaimed_generations']} generations reclaimed, "
            f"peak {h(sim['peak_bytes'])}")
    if "chart" in out:
        say(f"chart written to {out['chart']}")


def _check(ctx, args: argparse.Namespace, prefixes: list[str]) -> int:
    cfg = ctx.config
    store = open_store(cfg.repository_url, options=cfg.store_options, counts=ctx.counts)
    try:
        rules = inspector_for(store).lifecycle_rules()
    except GenarcError as exc:
        raise PermissionDenied(f"Cannot read the bucket's lifecycle rules with this key ({exc.message}).") from None
    if rules is None:
        say("a local repository has no lifecycle rule: nothing removes old generations (and nothing protects them).")
        return EXIT_UNSAFE
    try:
        repo: Repository | None = Repository.open(cfg, store=store)
    except RepositoryNotFound:
        repo = None  # no points yet: check against a generation opened now
    findings = []
    for job, prefix in zip(sorted(cfg.jobs), prefixes):
        kept = History.read(repo, job, ctx.clock).trusted() if repo is not None else []
        points = [(f"{job} {p.label()}", p.claimed, p.name.gstart) for p in kept]
        finding = plan_mod.check_expiry(cfg.retention, plan_mod.expiry_days(rules, prefix), points, ctx.clock.now())
        findings.append({"job": job, "prefix": prefix, "level": finding.level, "message": finding.message,
                         "first_lost": finding.first_lost})
    code = EXIT_UNSAFE if any(f["level"] == "error" for f in findings) else EXIT_OK
    if args.json:
        emit_json({"exit_code": code, "findings": findings})
    else:
        for f in findings:
            say(f"[{f['level']}] {f['job']} ({f['prefix']}): {f['message']}")
    return code


def _apply(ctx, args: argparse.Namespace, s3_rules: dict, b2_rules: list) -> int:
    from ..admin import lifecycle as admin  # admin rights only: the backup path never imports it

    cfg = ctx.config
    say(admin.apply_rules(cfg.repository_url, cfg.store_options, args.admin_profile, os.environ, s3_rules, b2_rules))
    return EXIT_OK
