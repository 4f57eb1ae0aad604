#!/usr/bin/env bash
# A throw-away, single-host Ceph cluster with a RADOS Gateway, for genarc's tests.
#
#   scripts/ceph-rgw.sh install        # Debian packages (root), pinned to bookworm's Ceph 16.2
#   scripts/ceph-rgw.sh start DIR      # mon + one memstore OSD + radosgw on loopback; writes DIR/env
#   scripts/ceph-rgw.sh stop DIR       # stops everything started from DIR and removes it
#
# DIR/env holds RGW_URL, RGW_ADMIN_ACCESS_KEY and RGW_ADMIN_SECRET_KEY. A lifecycle "day"
# lasts 10 seconds (rgw lc debug interval), so lifecycle rules really run during a test.
# Nothing here listens beyond 127.0.0.1.
set -euo pipefail

CEPH_VERSION_GLOB="16.2.*"
PACKAGES=(ceph-mon ceph-osd radosgw ceph-common)

die() { echo "ceph-rgw: $*" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)); local what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "timed out waiting for $what"
    sleep 0.5
  done
}

install() {
  if command -v radosgw >/dev/null 2>&1; then
    echo "radosgw is already installed: $(dpkg-query -W -f='${Version}' radosgw 2>/dev/null || echo unknown)"
    return
  fi
  [ "$(id -u)" = 0 ] || die "installing Ceph needs root (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  local version
  version=$(apt-cache madison radosgw | awk '{print $3}' | grep -E "^${CEPH_VERSION_GLOB//\*/.*}" | head -1 || true)
  [ -n "$version" ] || die "no radosgw ${CEPH_VERSION_GLOB} in the package lists"
  local pinned=()
  for p in "${PACKAGES[@]}"; do pinned+=("$p=$version"); done
  apt-get install -y -qq --no-install-recommends "${pinned[@]}" >/dev/null
  echo "installed Ceph $version"
}

start() {
  local dir=${1:?usage: start DIR}
  command -v radosgw >/dev/null 2>&1 || die "radosgw is not installed; run: $0 install"
  if [ -f "$dir/env" ] && [ -f "$dir/rgw.pid" ] && kill -0 "$(cat "$dir/rgw.pid")" 2>/dev/null; then
    echo "already running: $(cat "$dir/env")"
    return
  fi
  stop "$dir" >/dev/null 2>&1 || true
  mkdir -p "$dir"/{mon/a,osd/0,run,log,rgw}
  local fsid mon_port rgw_port conf
  fsid=$(python3 -c 'import uuid; print(uuid.uuid4())')
  mon_port=$(free_port)
  rgw_port=$(free_port)
  conf="$dir/ceph.conf"
  cat > "$conf" <<EOF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$mon_port]
mon initial members = a
public network = 127.0.0.0/8
auth cluster required = none
auth service required = none
auth client required = none
auth supported = none
ms mon client mode = crc secure
ms client mode = crc secure
osd objectstore = memstore
memstore device bytes = 4294967296
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon allow pool delete = true
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
mon warn on pool no redundancy = false
run dir = $dir/run
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
pid file = $dir/run/\$name.pid
osd max object name len = 460
osd max object namespace len = 64

[mon.a]
mon data = $dir/mon/a

[osd.0]
osd data = $dir/osd/0

[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw data = $dir/rgw
rgw lc debug interval = 10
rgw lifecycle work time = 00:00-23:59
rgw enable usage log = false
rgw dns name = localhost
EOF
  ceph-authtool --create-keyring "$dir/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  monmaptool --create --addv a "[v2:127.0.0.1:$mon_port]" --fsid "$fsid" "$dir/monmap" >/dev/null
  ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/mon.keyring"
  ceph-mon -c "$conf" -i a
  wait_for 30 "the monitor" ceph -c "$conf" --connect-timeout 5 mon stat
  local uuid
  uuid=$(python3 -c 'import uuid; print(uuid.uuid4())')
  ceph -c "$conf" osd new "$uuid" >/dev/null
  ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$uuid" >/dev/null 2>&1
  ceph-osd -c "$conf" -i 0 >> "$dir/log/osd-start.out" 2>&1
  wait_for 60 "the OSD" bash -c "ceph -c '$conf' osd stat | grep -q '1 up'"
  # radosgw stays in the foreground until it reaches the cluster: run it with -f, in its own session.
  setsid radosgw -c "$conf" -n client.rgw.a -f > "$dir/log/radosgw.out" 2>&1 < /dev/null &
  echo $! > "$dir/rgw.pid"
  wait_for 90 "the gateway" python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$rgw_port', timeout=2)"
  local access secret
  access=$(python3 -c 'import secrets; print(secrets.token_hex(10).upper())')
  secret=$(python3 -c 'import secrets; print(secrets.token_hex(20))')
  radosgw-admin -c "$conf" user create --uid=genarc-admin --display-name=genarc-admin \
      --access-key="$access" --secret-key="$secret" >/dev/null
  radosgw-admin -c "$conf" caps add --uid=genarc-admin \
      --caps="users=*;buckets=*;metadata=*;usage=*;zone=*;user-policy=*;roles=*" >/dev/null
  printf 'RGW_URL=http://127.0.0.1:%s\nRGW_ADMIN_ACCESS_KEY=%s\nRGW_ADMIN_SECRET_KEY=%s\n' \
      "$rgw_port" "$access" "$secret" > "$dir/env"
  echo "Ceph RGW is up: $(head -1 "$dir/env")"
}

stop() {
  local dir=${1:?usage: stop DIR}
  [ -d "$dir" ] || return 0
  if [ -f "$dir/rgw.pid" ]; then kill "$(cat "$dir/rgw.pid")" 2>/dev/null || true; fi
  for pidfile in "$dir"/run/*.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  sleep 1
  for pidfile in "$dir/rgw.pid" "$dir"/run/*.pid; do
    [ -f "$pidfile" ] && kill -9 "$(cat "$pidfile")" 2>/dev/null || true
  done
  rm -rf "$dir"
}

case "${1:-}" in
  install) install ;;
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: $0 install | start DIR | stop DIR" >&2; exit 2 ;;
esac
