#!/usr/bin/env bash
# Lint and run the test suite with model hubs offline (sets up .venv first if needed; PyPI is
# needed the first time). Extra args go to pytest. Then the contract tests again on the oldest
# supported pydantic (the editor's 2.5.0), in a light venv without torch. Chromium, for the
# settings page's browser tests, is installed first where the machine allows it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/install_browser.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
./scripts/test_contract_oldest.sh
