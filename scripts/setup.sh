#!/usr/bin/env bash
# Install genarc into ./.venv from nothing. With --test, also what the test suite needs:
# the Python test packages and Debian's 7zip (stock-extraction tests). With --demo, moto's S3
# server for scripts/demo.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "genarc needs Python 3.11 or newer ($PYTHON is $("$PYTHON" --version 2>&1))." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip

if [ "${1:-}" = "--test" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
  # Debian packages the tests use: 7zip (stock extraction) and Ceph's RADOS Gateway (a real S3 server).
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    if ! command -v 7zz >/dev/null 2>&1; then
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends 7zip >/dev/null
    fi
    bash scripts/ceph-rgw.sh install
  else
    command -v 7zz >/dev/null 2>&1 || echo "note: 7zz is not installed; the stock 7-Zip tests will be skipped." >&2
    command -v radosgw >/dev/null 2>&1 || echo "note: radosgw is not installed; the Ceph tests will be skipped." >&2
  fi
elif [ "${1:-}" = "--demo" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[demo]'  # moto's S3 server
else
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
fi
