#!/usr/bin/env bash
# Prints a PostgreSQL URL that answers: MOFA_TEST_DATABASE_URL if set, else the local server at
# 127.0.0.1:5432 (started with pg_ctlcluster if it is installed but down), else a throwaway cluster made
# with initdb (installing Debian's postgresql first when the binaries are missing). Logs go to stderr.
set -euo pipefail
log() { echo "ensure_postgres: $*" >&2; }

answers() { python3 - "$1" <<'PY' >/dev/null 2>&1
import socket, sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
s = socket.create_connection((u.hostname or "127.0.0.1", u.port or 5432), timeout=2)
s.close()
PY
}

if [ -n "${MOFA_TEST_DATABASE_URL:-}" ]; then echo "$MOFA_TEST_DATABASE_URL"; exit 0; fi
url="postgresql://postgres@127.0.0.1:5432/test"
if answers "$url"; then echo "$url"; exit 0; fi

if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql/*/main >/dev/null 2>&1; then
  ver=$(ls /etc/postgresql | sort -V | tail -n1)
  log "starting cluster $ver/main"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start >&2 || true
  for _ in $(seq 30); do answers "$url" && break; sleep 0.5; done
  if answers "$url"; then
    su postgres -c "psql -qc 'CREATE DATABASE test'" >&2 2>/dev/null || true
    echo "$url"; exit 0
  fi
fi

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
if [ -z "$bindir" ]; then
  log "installing postgresql from Debian's packages"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
  bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
fi
dir=${TMPDIR:-/tmp}/mofa-pg; port=55432
url="postgresql://postgres@127.0.0.1:$port/postgres"
if answers "$url"; then echo "$url"; exit 0; fi
log "initdb into $dir (port $port)"
rm -rf "$dir"; mkdir -p "$dir"; chown postgres "$dir" 2>/dev/null || true
run() { if [ "$(id -u)" = 0 ]; then su postgres -c "$*"; else sh -c "$*"; fi; }
run "$bindir/initdb -D $dir/data -U postgres -A trust" >&2
run "$bindir/pg_ctl -D $dir/data -l $dir/log -o '-p $port -k $dir -c listen_addresses=127.0.0.1' -w start" >&2
echo "$url"
