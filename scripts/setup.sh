#!/usr/bin/env bash
# Create .venv with the pinned dev/CI stack (constraints.txt) and install this project into it.
# Idempotent: a rerun with unchanged pyproject.toml and constraints.txt returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
stamp=.venv/.setup-stamp
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e '.[dev,host,host-http,ray]'
echo "$want" > "$stamp"
