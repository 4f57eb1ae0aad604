"""Docs stay true: the CLI reference is generated, and every exit code is documented."""

import subprocess
import sys
from pathlib import Path

from archiver.errors import EXIT_CODES

ROOT = Path(__file__).resolve().parents[2]


def test_cli_reference_is_current():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_cli_docs.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_every_exit_code_is_in_the_readme_and_design_tables():
    for doc in ("README.md", "docs/design.md"):
        text = (ROOT / doc).read_text()
        for code in EXIT_CODES:
            assert f"\n| {code} | " in text, (doc, code)


def test_readme_gives_the_two_setup_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/demo.sh" in readme and "bash scripts/test.sh" in readme
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
