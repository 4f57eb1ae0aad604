"""The example job files in configs/ are valid."""

from pathlib import Path

import pytest

from archiver import config as config_mod

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_example_config_loads(path):
    cfg = config_mod.load(path)
    assert cfg.jobs and cfg.retention.lifecycle_age_days == 39
