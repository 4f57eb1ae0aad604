from pathlib import Path

import pytest

from archiver import config as config_mod
from archiver.errors import ConfigError

GOOD = """
[repository]
url = "repo"
password_env = "PW"

[retention]
keep_days = 30
generation_days = 7
margin_days = 1

[volumes]
size = "32MiB"
compression = "lzma2"
level = 1

[jobs.home]
sources = ["src"]
exclude = ["**/.cache/**"]
one_file_system = true
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "genarc.toml"
    path.write_text(text)
    return path


def test_good_file_loads_with_paths_relative_to_it(tmp_path):
    cfg = config_mod.load(write(tmp_path, GOOD))
    assert cfg.repository_url == str(tmp_path / "repo")
    assert cfg.jobs["home"].sources == (str(tmp_path / "src"),)
    assert cfg.volumes.size == 32 * 1024**2 and cfg.volumes.compression == "lzma2" and cfg.volumes.level == 1
    assert cfg.retention.lifecycle_age_days == 39
    assert cfg.password.kind == "env"
    assert cfg.tripwire.enabled and cfg.tripwire.protect_days == 30 and cfg.tripwire.turned_dense == 0.10


@pytest.mark.parametrize("change, key, words", [
    (('keep_days = 30', 'keep_days = "thirty"'), "retention.keep_days", "expected int"),
    (('compression = "lzma2"', 'compression = "rar"'), "volumes.compression", "must be one of"),
    (('level = 1', 'level = 12'), "volumes.level", "from 0 to 9"),
    (('size = "32MiB"', 'size = "lots"'), "volumes.size", "is not a size"),
    (('one_file_system = true', 'one_file_system = true\nsourcse = []'), "jobs.home.sourcse", "unknown key"),
    (('password_env = "PW"', ''), "repository.password_file", "exactly one of"),
    (('sources = ["src"]', 'sources = []'), "jobs.home.sources", "at least one"),
    (('[volumes]', '[tripwire]\nprotect_days = 0\n\n[volumes]'), "tripwire.protect_days", "between 1 and"),
    (('[volumes]', '[tripwire]\nrenamed = 1.5\n\n[volumes]'), "tripwire.renamed", "at most 1"),
    (('[volumes]', '[tripwire]\nenabled = "yes"\n\n[volumes]'), "tripwire.enabled", "expected bool"),
    (('[volumes]', '[tripwire]\nprotect = 3\n\n[volumes]'), "tripwire.protect", "unknown key"),
])
def test_errors_name_file_key_and_problem(tmp_path, change, key, words):
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError) as info:
        config_mod.load(path)
    message = str(info.value)
    assert str(path) in message and key in message and words in message


def test_no_encryption_must_be_explicit(tmp_path):
    path = write(tmp_path, GOOD.replace('password_env = "PW"', 'encryption = "none"'))
    assert config_mod.load(path).password.kind == "none"


def test_invalid_toml_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        config_mod.load(write(tmp_path, "[repository\n"))


def test_discovery_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    xdg = tmp_path / "xdg"
    (xdg / "genarc").mkdir(parents=True)
    (xdg / "genarc" / "genarc.toml").write_text(GOOD)
    env = {"XDG_CONFIG_HOME": str(xdg)}
    assert config_mod.discover(None, env) == xdg / "genarc" / "genarc.toml"
    (tmp_path / "genarc.toml").write_text(GOOD)
    assert config_mod.discover(None, env) == Path("genarc.toml")
    assert config_mod.discover(None, {**env, "GENARC_CONFIG": "/x.toml"}) == Path("/x.toml")
    assert config_mod.discover("/y.toml", {**env, "GENARC_CONFIG": "/x.toml"}) == Path("/y.toml")
    (tmp_path / "genarc.toml").unlink()
    with pytest.raises(ConfigError, match="No job file found"):
        config_mod.discover(None, {"XDG_CONFIG_HOME": str(tmp_path / "none")})


def test_password_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("PW", "from-env")
    cfg = config_mod.load(write(tmp_path, GOOD))
    assert cfg.password.read() == "from-env"
    cmd = config_mod.load(write(tmp_path, GOOD.replace('password_env = "PW"', 'password_command = "echo from-cmd"')))
    assert cmd.password.read() == "from-cmd"
    (tmp_path / "pw").write_text("from-file\n")
    f = config_mod.load(write(tmp_path, GOOD.replace('password_env = "PW"', 'password_file = "pw"')))
    assert f.password.read() == "from-file"
    monkeypatch.delenv("PW")
    with pytest.raises(ConfigError, match="PW"):
        cfg.password.read()
