#!/usr/bin/env bash
# The contract tests (and the torch-free settings and model-folder tests) on the oldest stack
# the package metadata allows, in a light venv without torch: pydantic 2.5.0 is what the editor
# (superAIAutoCutVideo) pins. Needs PyPI the first time, like setup.sh; idempotent like it.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
venv=.venv-contract
oldest=(pydantic==2.5.0 pluggy==1.5.0 structlog==24.1.0 platformdirs==4.0.0)
stamp=$venv/.setup-stamp
want=$(printf '%s\n' "${oldest[@]}" | cat - pyproject.toml | sha256sum | cut -d' ' -f1)
if ! [ -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    [ -x $venv/bin/python ] || "$python" -m venv $venv
    $venv/bin/python -m pip install -q --upgrade pip
    $venv/bin/python -m pip install -q "${oldest[@]}" pytest "setuptools>=77"
    $venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
    echo "$want" > "$stamp"
fi
$venv/bin/python -c "import pydantic, sys; sys.exit(pydantic.VERSION != '2.5.0')"
exec $venv/bin/python -m pytest -q -p no:cacheprovider -W error tests/test_contract.py tests/test_registry.py "$@"
