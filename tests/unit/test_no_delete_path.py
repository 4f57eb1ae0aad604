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


def _imports_of_admin(tree: ast.AST, relative: Path) -> set[str]:
    """Every import of the admin package in a module, at any depth (inside functions too)."""
    found = set()
    package = ".".join(("archiver", *relative.parent.parts))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            if module.startswith("archiver.admin."):
                found.add(module)
            elif module in ("archiver", "archiver.admin"):
                found.update(f"{module}.{a.name}" for a in node.names
                             if f"{module}.{a.name}".startswith("archiver.admin"))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("archiver.admin"))
    return found


# Who may reach the admin package, and why: nothing on the backup path.
ADMIN_IMPORTERS = {
    ("cli/plan.py", "archiver.admin.lifecycle"),  # plan --apply, with admin credentials
    ("cli/plan.py", "archiver.admin.simulate"),  # plan --simulate, a local simulation
    ("cli/hold.py", "archiver.admin.hold"),  # genarc hold, with admin credentials
    ("store/s3_inspect.py", "archiver.admin.probe"),  # doctor's delete probe, on a key that was never written
}


def test_the_admin_package_is_imported_only_where_admin_rights_are_meant_at_any_depth():
    found = set()
    for path in ARCHIVER.rglob("*.py"):
        relative = path.relative_to(ARCHIVER)
        if relative.parts[0] in ALLOWED:
            continue
        found |= {(str(relative), module) for module in _imports_of_admin(ast.parse(path.read_text()), relative)}
    assert found == ADMIN_IMPORTERS


def test_no_call_can_lower_a_lock_outside_admin():
    """Bypassing governance is never asked; every retention request outside admin goes through raised_to()."""
    setters = []
    for path in ARCHIVER.rglob("*.py"):
        relative = path.relative_to(ARCHIVER)
        if relative.parts[0] in ALLOWED:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg in ("BypassGovernanceRetention", "bypass_governance"):
                raise AssertionError(f"{relative}:{node.value.lineno} asks to bypass a governance lock")
        for function in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
            names = {n.attr for n in ast.walk(function) if isinstance(n, ast.Attribute)}
            if names & {"put_object_retention", "update_file_retention"}:
                setters.append(f"{relative}:{function.name}")
                assert "raised_to" in names, f"{relative}:{function.name} sets a retention without raised_to()"
    assert sorted(setters) == ["store/b2.py:ensure_lock", "store/s3.py:_raise_retention"]
