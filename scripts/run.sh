#!/usr/bin/env bash
# Run notifier on this machine: Redis (embedded if none answers), a worker for every queue, the
# gateway and Flower, plus a demo send. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/notifier dev "$@"
