#!/usr/bin/env bash
# Make this checkout runnable: a venv with the mesh and its dev tools, and the buf CLI from npm.
# Idempotent and quick on a second run (it only installs what changed).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.installed
want=$(cat pyproject.toml clients/python/pyproject.toml package.json | sha1sum | cut -c1-12)
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv 2>/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q python3-venv >/dev/null; "$PY" -m venv .venv; }
fi
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "bootstrap: installing the mesh and its dev tools into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e clients/python -e '.[dev]'
  if ! command -v npm >/dev/null; then apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends npm >/dev/null; fi
  npm install --no-audit --no-fund --silent
  echo "$want" >"$stamp"
fi
# google/api and google/rpc protos for buf, from the installed googleapis-common-protos package.
.venv/bin/python tools/protodeps.py
