"""The policies genarc prints, checked line by line (pure)."""

import json

from archiver.generation import RetentionPolicy
from archiver.policy import (DENIED_TO_BACKUP, Location, b2_backup_capabilities, b2_key_command, max_retention_days,
                             s3_backup_policy, s3_watchdog_policy)

LOC = Location("backups-bucket", "host1/genarc")
POLICY = RetentionPolicy(keep_days=30, generation_days=7, margin_days=1)


def statements(doc):
    return {s["Sid"]: s for s in doc["Statement"]}


def test_backup_policy_allows_only_what_a_run_needs_and_denies_destruction():
    doc = statements(s3_backup_policy(LOC, POLICY))
    allowed = {a for s in doc.values() if s["Effect"] == "Allow" for a in s["Action"]}
    assert {"s3:PutObject", "s3:PutObjectRetention", "s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket",
            "s3:ListBucketVersions"} <= allowed
    assert not any("Delete" in a or "Bypass" in a or a.startswith("s3:PutBucket") or a == "s3:PutLifecycleConfiguration"
                   for a in allowed)
    deny = doc["NeverDestroy"]
    assert deny["Effect"] == "Deny"
    for action in ("s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutLifecycleConfiguration",
                   "s3:PutBucketObjectLockConfiguration", "s3:PutBucketVersioning", "s3:PutBucketPolicy",
                   "s3:BypassGovernanceRetention"):
        assert action in deny["Action"] and action in DENIED_TO_BACKUP
    assert doc["ListTheRepository"]["Condition"]["StringLike"]["s3:prefix"][0] == "host1/genarc/*"
    assert doc["WriteNewObjectsWithBoundedLocks"]["Resource"] == "arn:aws:s3:::backups-bucket/host1/genarc/*"


def test_retention_is_capped_against_century_locks():
    cap = max_retention_days(POLICY)
    assert cap == 39  # 38 days of lock, plus one of slack
    doc = statements(s3_backup_policy(LOC, POLICY))
    deny = doc["NoCenturyLocks"]
    assert deny["Effect"] == "Deny" and set(deny["Action"]) == {"s3:PutObject", "s3:PutObjectRetention"}
    assert deny["Condition"] == {"NumericGreaterThan": {"s3:object-lock-remaining-retention-days": "39"}}
    fast = RetentionPolicy(keep_days=30, generation_days=7, margin_days=1, day_seconds=10)
    assert max_retention_days(fast) == 2


def test_watchdog_policy_is_read_only():
    doc = s3_watchdog_policy(LOC)
    allowed = {a for s in doc["Statement"] if s["Effect"] == "Allow" for a in s["Action"]}
    assert allowed and all(a.startswith(("s3:Get", "s3:List")) for a in allowed)
    denied = {a for s in doc["Statement"] if s["Effect"] == "Deny" for a in s["Action"]}
    assert {"s3:PutObject", "s3:DeleteObject", "s3:PutObjectRetention"} <= denied
    json.dumps(doc)


def test_b2_key_command_has_minimal_capabilities_and_the_prefix():
    caps = b2_backup_capabilities(lock=True)
    command = b2_key_command(LOC, "genarc-backup", caps)
    assert command.startswith("b2 key create --bucket backups-bucket --name-prefix host1/genarc/ genarc-backup ")
    assert "deleteFiles" not in command and "bypassGovernance" not in command
    assert set(b2_backup_capabilities(lock=False)) == {"listBuckets", "listFiles", "readFiles", "writeFiles"}


def test_the_cap_lets_every_long_term_tier_lock_as_planned(workspace):
    """With keep_yearly = 3 the yearly copies are locked for 3 * 366 + 1 days: a cap at the daily lock (39 days)
    would make AWS refuse every long-term copy."""
    from archiver.config import load
    from archiver.longterm import job_names, policy_of

    ws = workspace
    ws.write_config(url="s3://backups-bucket/host1/genarc", endpoint_url="http://127.0.0.1:9")
    ws.config.write_text(ws.config.read_text().replace("margin_days = 1\n", "margin_days = 1\nkeep_yearly = 3\n"))
    config = load(ws.config)
    longest = max(max_retention_days(policy_of(config, job)) for job in job_names(config))
    assert longest == max_retention_days(policy_of(config, "data~yearly")) > 3 * 366
    doc = statements(ws.genarc("policy", "--json").json)
    assert doc["NoCenturyLocks"]["Condition"]["NumericGreaterThan"]["s3:object-lock-remaining-retention-days"] \
        == str(longest)
    assert doc["WriteNewObjectsWithBoundedLocks"]["Condition"]["NumericLessThanEqualsIfExists"][
        "s3:object-lock-remaining-retention-days"] == str(longest)


def test_the_cap_lets_the_tripwire_protect_for_protect_days(workspace):
    """A protection locks the clean point protect_days from the trip: the cap must allow it, and only that."""
    ws = workspace
    ws.write_config(url="s3://backups-bucket/host1/genarc", endpoint_url="http://127.0.0.1:9")
    ws.config.write_text(ws.config.read_text() + "\n[tripwire]\nprotect_days = 90\n")
    doc = statements(ws.genarc("policy", "--json").json)
    assert doc["NoCenturyLocks"]["Condition"]["NumericGreaterThan"]["s3:object-lock-remaining-retention-days"] == "91"
    ws.config.write_text(ws.config.read_text().replace("protect_days = 90", "protect_days = 10"))
    doc = statements(ws.genarc("policy", "--json").json)
    assert doc["NoCenturyLocks"]["Condition"]["NumericGreaterThan"]["s3:object-lock-remaining-retention-days"] \
        == str(max_retention_days(POLICY))  # the generations' lock (39 days) is the longer
