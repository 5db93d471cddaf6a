#!/bin/sh
# install.sh — the one way Agora gets installed into a virtualenv.
# The image's build stage runs it, and so does tests/deployments/test_image.py, so the test
# exercises exactly the steps the Dockerfile takes.
#
# Usage: install.sh <venv-dir> [source-dir]     (source-dir defaults to the current directory)
set -eu
VENV=${1:?usage: install.sh <venv-dir> [source-dir]}
SRC=${2:-.}
PYTHON=${PYTHON:-python3}

"$PYTHON" -m venv "$VENV"
# Both distributions in one resolver run: the root package depends on `agora-client`,
# which is the local clients/python (generated stubs + the `agora` command), not PyPI.
"$VENV/bin/pip" install --disable-pip-version-check --no-compile "$SRC/clients/python" "$SRC"
# Byte-code is compiled now because the container's root filesystem is read-only at run time.
"$VENV/bin/python" -m compileall -q "$VENV/lib"
