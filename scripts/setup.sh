#!/usr/bin/env bash
# Install notifier and its test tools into .venv (idempotent; a fresh machine needs only python3).
# Installs again only when pyproject.toml changed since the last install (notifier itself is an
# editable install, so code changes need none), so a second run works offline.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
stamp=.venv/.installed
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
  touch "$stamp"
fi
