#!/usr/bin/env bash
# Set up everything the tests need, then run the whole test suite. Extra arguments go to pytest.
# Everything the tests write to temporary folders lands in one folder, removed afterwards
# (GENARC_KEEP_TEST_TMP=1 keeps it, to look at what a failing test left).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
scratch=$(mktemp -d "${TMPDIR:-/tmp}/genarc-tests.XXXXXX")
cleanup() {
    if [ -n "${GENARC_KEEP_TEST_TMP:-}" ]; then echo "test files kept in $scratch" >&2; else rm -rf "$scratch"; fi
}
trap cleanup EXIT
TMPDIR="$scratch" .venv/bin/python -m pytest -ra --durations=15 --basetemp "$scratch/pytest" "$@"
