#!/usr/bin/env bash
# Install torchwire into .venv, build the bundled example models into model_store/,
# and serve them in the foreground on 127.0.0.1:8080 (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -e '.[examples]'
.venv/bin/python examples/build_all.py --out model_store
exec .venv/bin/torchwire start --foreground --model-store model_store --models all "$@"
