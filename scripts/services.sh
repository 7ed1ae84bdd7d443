#!/usr/bin/env bash
# Make sure the services the tests talk to are there: Redis (required), RabbitMQ (second broker),
# PostgreSQL (the delivery log's production store), and Debian's Chromium for the browser test. Installs with apt-get and starts what does not answer.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then apt-get update -qq >/dev/null; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

answers() {  # host port
  .venv/bin/python - "$1" "$2" <<'PY'
import socket, sys
s = socket.socket(); s.settimeout(1)
sys.exit(0 if s.connect_ex((sys.argv[1], int(sys.argv[2]))) == 0 else 1)
PY
}

if ! answers 127.0.0.1 6379; then
  command -v redis-server >/dev/null || apt_install redis-server
  echo "starting redis-server on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 50); do answers 127.0.0.1 6379 && break; sleep 0.1; done
fi
command -v redis-server >/dev/null || apt_install redis-server   # the cluster test starts its own

if ! answers 127.0.0.1 5672; then
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  echo "starting rabbitmq-server"
  rabbitmq-server -detached || true
  for _ in $(seq 120); do answers 127.0.0.1 5672 && break; sleep 0.5; done
fi

if ! answers 127.0.0.1 5432; then
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  version=$(ls /etc/postgresql | sort -n | tail -1)
  hba=/etc/postgresql/$version/main/pg_hba.conf
  # The tests connect as postgres over loopback without a password (as on the session machine).
  grep -q "^host all all 127.0.0.1/32 trust" "$hba" || sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  echo "starting PostgreSQL $version"
  pg_ctlcluster "$version" main start || pg_ctlcluster "$version" main reload
  for _ in $(seq 60); do answers 127.0.0.1 5432 && break; sleep 0.5; done
fi

command -v chromium >/dev/null || apt_install chromium
# Validates docker-compose.yml when Docker's compose plugin is not there (no engine needed).
{ docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null; } || apt_install docker-compose
# The first-run test (tests/pipeline/test_first_run.py) runs scripts/run.sh in a private network namespace.
command -v unshare >/dev/null || apt_install util-linux
command -v mount >/dev/null || apt_install mount
command -v ip >/dev/null || apt_install iproute2
