#!/usr/bin/env bash
# Install torchwire with its test tools into .venv, then lint, type-check and test.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
.venv/bin/ruff check torchwire tests benchmarks examples
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
