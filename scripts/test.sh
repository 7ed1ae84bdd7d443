#!/usr/bin/env bash
# The test command: install, make sure Redis/RabbitMQ/Chromium are there, run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/services.sh
exec .venv/bin/python -m pytest -q "$@"
