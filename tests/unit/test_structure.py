"""The package's shape, as docs/design.md describes it: backends stay behind archiver/store/, code stays readable."""

import ast
from pathlib import Path

ARCHIVER = Path(__file__).resolve().parents[2] / "archiver"
SDKS = ("boto3", "botocore", "b2sdk")
BEHIND_THE_STORE = {"store", "admin"}  # the only packages that may know a backend SDK or a store class


def modules():
    for path in sorted(ARCHIVER.rglob("*.py")):
        yield path.relative_to(ARCHIVER), ast.parse(path.read_text())


def test_only_store_and_admin_import_a_backend_sdk():
    offenders = []
    for relative, tree in modules():
        if relative.parts[0] in BEHIND_THE_STORE:
            continue
        for node in ast.walk(tree):  # every import, also those inside functions
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            offenders += [f"{relative}:{node.lineno} {n}" for n in names if n.split(".")[0] in SDKS]
    assert offenders == []


def test_only_store_and_admin_check_a_store_class():
    offenders = []
    for relative, tree in modules():
        if relative.parts[0] in BEHIND_THE_STORE:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance" and len(node.args) == 2:
                classes = ast.unparse(node.args[1])
                if "Store" in classes or "Inspector" in classes:
                    offenders.append(f"{relative}:{node.lineno} isinstance(..., {classes})")
    assert offenders == []


def test_no_function_over_80_lines_and_no_module_over_600():
    long_functions, long_modules = [], []
    for relative, tree in modules():
        if tree.body and tree.body[-1].end_lineno > 600:
            long_modules.append(f"{relative}: {tree.body[-1].end_lineno} lines")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 80:
                    long_functions.append(f"{relative}:{node.lineno} {node.name} ({length} lines)")
    assert long_functions == [] and long_modules == []
