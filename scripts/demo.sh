#!/usr/bin/env bash
# Install genarc, then show what it is for (scripts/demo.py): backups on a local S3 server with Object Lock
# that the backup key cannot delete, a synthetic full, a byte-exact restore. --local: on a local folder.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp "${TMPDIR:-/tmp}/genarc-setup.XXXXXX.log")
extra=--demo
for arg in "$@"; do [ "$arg" = "--local" ] && extra=; done
if ! bash scripts/setup.sh $extra > "$log" 2>&1; then
  cat "$log" >&2
  echo "demo: installing genarc failed (the output above is also in $log)" >&2
  exit 1
fi
rm -f "$log"
exec .venv/bin/python scripts/demo.py "$@"
