#!/usr/bin/env bash
# The test command: install, lint (ruff, then mypy; any finding fails the run), make sure Redis/RabbitMQ/
# Chromium are there, run the whole suite and then the end-to-end pipeline, fault (crash, poison, random
# kills) and workflow-run tests again with RabbitMQ as the broker (Redis stays the store).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff and mypy (configured in pyproject.toml)"
.venv/bin/ruff check notifier workers
.venv/bin/mypy notifier workers
bash scripts/services.sh
# The suite runs in two pytest-xdist processes, a test file at a time each (each process its own test
# session, with its own Redis databases): the suite waits on workers and timers more than it computes.
# Then the RabbitMQ re-run, the same way (each process with its own RabbitMQ vhost). It runs after the
# suite, not alongside it: three sessions at once on two cores starved the crash tests' workers (a
# kill's resend fell outside the window that explains it, 3,000 emails took over a minute).
suite=0
.venv/bin/python -m pytest -q -n 2 --dist loadfile "$@" || suite=$?
echo "== end-to-end tests with RabbitMQ as the broker"
rerun=0
NOTIFIER_TEST_BROKER=amqp .venv/bin/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile \
  tests/faults/test_faults_kill.py tests/pipeline/test_pipeline.py tests/pipeline/test_rules.py \
  tests/pipeline/test_failures.py tests/faults/test_crash.py tests/faults/test_faults_poison.py \
  tests/workflows/test_workflow_runs.py "$@" || rerun=$?
if [ "$suite" -ne 0 ] || [ "$rerun" -ne 0 ]; then
  echo "== failed: the suite exited $suite, the RabbitMQ re-run $rerun"
  exit 1
fi
