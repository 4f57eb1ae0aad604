#!/usr/bin/env bash
# Install `genarc daemon` as a systemd service.
#
#   scripts/install-daemon.sh [--dry-run] [--config FILE] [--user USER] [--metrics-file PATH]
#
# With --dry-run it prints the unit it would write and the commands it would run, and changes nothing.
set -euo pipefail

dry_run=0
config=/etc/genarc/genarc.toml
user=root
metrics=/var/lib/node_exporter/textfile_collector/genarc.prom
unit=/etc/systemd/system/genarc-daemon.service
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --config) config=$2; shift ;;
    --user) user=$2; shift ;;
    --metrics-file) metrics=$2; shift ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "install-daemon: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
genarc=$(command -v genarc || true)
if [ -z "$genarc" ]; then
  genarc=/usr/local/bin/genarc
  [ "$dry_run" = 1 ] || { echo "install-daemon: genarc is not on PATH; install it first" >&2; exit 1; }
fi

content="[Unit]
Description=genarc daemon: runs backup jobs on their schedules
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
User=$user
ExecStart=$genarc --config $config daemon --quiet --metrics-file $metrics
# SIGTERM stops a run at its next safe point; it commits nothing and leaves only orphans.
KillSignal=SIGTERM
TimeoutStopSec=120
Restart=on-failure
RestartSec=60
Nice=10
IOSchedulingClass=idle

[Install]
WantedBy=multi-user.target"

if [ "$dry_run" = 1 ]; then
  echo "# would write $unit:"
  echo "$content"
  echo "# would run: systemctl daemon-reload && systemctl enable --now genarc-daemon.service"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "install-daemon: writing $unit needs root" >&2; exit 1; }
printf '%s\n' "$content" > "$unit"
systemctl daemon-reload
systemctl enable --now genarc-daemon.service
echo "installed $unit; check it with: systemctl status genarc-daemon"
