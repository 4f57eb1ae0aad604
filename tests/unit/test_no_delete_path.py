"""Invariant 1, at the module level: the backup path cannot reach the code that removes anything."""

import ast
import subprocess
import sys
from pathlib import Path

ARCHIVER = Path(__file__).resolve().parents[2] / "archiver"
ALLOWED = {"admin"}  # the admin package: lifecycle rules, their executor, and doctor's delete probe
DESTRUCTIVE = {"delete_object", "delete_objects", "delete_file_version", "hide_file", "put_bucket_lifecycle_configuration",
               "put_object_legal_hold"}


def test_the_backup_path_does_not_import_the_admin_package():
    code = ("import sys, archiver.cli, archiver.backup, archiver.restore, archiver.verify, archiver.synthetic, "
            "archiver.longterm; print(sorted(m for m in sys.modules if m.startswith('archiver.admin')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_no_destructive_sdk_call_outside_admin_and_doctor():
    offenders = []
    for path in ARCHIVER.rglob("*.py"):
        relative = path.relative_to(ARCHIVER)
        if relative.parts[0] in ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in DESTRUCTIVE:
                offenders.append(f"{relative}:{node.lineno} {node.attr}")
    assert offenders == []
