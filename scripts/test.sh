#!/usr/bin/env bash
# The test command: install, lint (ruff, then mypy; any finding fails the run), make sure Redis/RabbitMQ/
# Chromium are there, run the whole suite and, alongside it, the end-to-end pipeline, fault (crash, poison,
# random kills) and workflow-run tests again with RabbitMQ as the broker (Redis stays the store).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff and mypy (configured in pyproject.toml)"
.venv/bin/ruff check notifier workers
.venv/bin/mypy notifier workers
bash scripts/services.sh
# The RabbitMQ re-run goes alongside the whole suite, not after it: the suite waits on workers and
# timers more than it computes (about half a core on average), and the two sessions claim their own
# Redis databases and RabbitMQ vhost. Its output is shown once the suite is done. The suite itself runs in
# two pytest-xdist processes, a test file each at a time (each its own session, with its own Redis
# databases): 9:00 against 14:20 in one process on this machine.
amqp_log=$(mktemp)
NOTIFIER_TEST_BROKER=amqp .venv/bin/python -m pytest -q -p no:cacheprovider tests/faults/test_faults_kill.py \
  tests/pipeline/test_pipeline.py tests/pipeline/test_rules.py tests/pipeline/test_failures.py \
  tests/faults/test_crash.py tests/faults/test_faults_poison.py tests/workflows/test_workflow_runs.py "$@" \
  >"$amqp_log" 2>&1 &
amqp=$!
trap 'kill "$amqp" 2>/dev/null || true; rm -f "$amqp_log"' EXIT
suite=0
.venv/bin/python -m pytest -q -n 2 --dist loadfile "$@" || suite=$?
rerun=0
wait "$amqp" || rerun=$?
echo "== end-to-end tests with RabbitMQ as the broker (run alongside the suite)"
cat "$amqp_log"
if [ "$suite" -ne 0 ] || [ "$rerun" -ne 0 ]; then
  echo "== failed: the suite exited $suite, the RabbitMQ re-run $rerun"
  exit 1
fi
