#!/usr/bin/env bash
# The test command: install, lint (ruff, then mypy; any finding fails the run), make sure Redis/RabbitMQ/
# Chromium are there, run the whole suite, then the end-to-end pipeline, fault (crash, poison, random
# kills) and workflow-run tests again with RabbitMQ as the broker (Redis stays the store).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff and mypy (configured in pyproject.toml)"
.venv/bin/ruff check notifier workers
.venv/bin/mypy notifier workers
bash scripts/services.sh
.venv/bin/python -m pytest -q "$@"
echo "== end-to-end tests with RabbitMQ as the broker"
NOTIFIER_TEST_BROKER=amqp .venv/bin/python -m pytest -q tests/pipeline/test_pipeline.py tests/pipeline/test_rules.py \
  tests/pipeline/test_failures.py tests/faults/test_crash.py tests/faults/test_faults_poison.py \
  tests/faults/test_faults_kill.py tests/workflows/test_workflow_runs.py "$@"
