#!/usr/bin/env bash
# Contract checks CI runs: buf lint (STANDARD), buf breaking (FILE) against main, stubs in sync.
set -euo pipefail
cd "$(dirname "$0")/.."
BUF=node_modules/.bin/buf
$BUF lint protos
echo "buf lint: clean"
# Breaking-change check against the protos on the main branch (an image built the same way).
base=$(git rev-parse --verify -q main 2>/dev/null || git rev-parse --verify -q origin/main 2>/dev/null || true)
if [[ -n $base ]] && git cat-file -e "$base:protos" 2>/dev/null; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  git archive "$base" protos buf.yaml | tar -x -C "$tmp"
  mkdir -p "$tmp/.build" && cp -r .build/protodeps "$tmp/.build/"
  (cd "$tmp" && "$OLDPWD/$BUF" build protos -o "$tmp/main.binpb")
  $BUF breaking protos --against "$tmp/main.binpb"
  echo "buf breaking: no breaking change against main ($(git rev-parse --short "$base"))"
else
  echo "buf breaking: main has no protos yet; nothing to compare"
fi
.venv/bin/python tools/genproto.py --check
