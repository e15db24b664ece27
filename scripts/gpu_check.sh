#!/usr/bin/env bash
# GPU call 1, correctness only, on the offline CUDA machine (../shared/gpu.md): install the
# carried wheels (.whl/, scripts/fetch_gpu_wheels.sh) once, import every module the calls need
# (scripts/gpu_imports.py), build the tiny checkpoints, run the doctor on one, then
# `pytest -m gpu tests/test_gpu.py`. Each step timed in OUTDIR/steps.json; stops at the first
# failing step. Ends with one line: verdict: PASS (...) | FAIL (<step>: ...) | SKIPPED (no CUDA: ...).
# Exit 0 PASS, 1 FAIL, 3 SKIPPED. Safe to rerun (the install and the checkpoints are reused).
# Usage: [PYTHON=python3] scripts/gpu_check.sh OUTDIR
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/gpu_check.sh OUTDIR}
source scripts/gpu_env.sh
gpu_begin "$out" check

gpu_install
gpu_step imports "$python" scripts/gpu_imports.py \
    || gpu_fail imports "$(grep -c '^FAIL' "$gpu_dir/last_step.log") modules or calls failed"
cuda=$(sed -n 's/^cuda: \([a-z]*\).*/\1/p' "$gpu_dir/last_step.log")

gpu_step tiny_checkpoints "$python" -c '
from qwen3tts_plugin.testing import VARIANTS, tiny_checkpoint
for variant in VARIANTS:
    print(variant, tiny_checkpoint(variant))
' || gpu_fail tiny_checkpoints "could not build the tiny checkpoints"
tiny=$(sed -n 's/^custom_voice //p' "$gpu_dir/last_step.log")

# The doctor on the tiny custom_voice model: exit 1 (not usable) is recorded, not fatal; a
# missing or unreadable report fails the call.
doctor() {
    "$python" -m qwen3tts_plugin doctor --json --model-path "$tiny" > "$gpu_out/doctor.json"
    local rc=$?
    "$python" -c '
import json, sys
r = json.load(open(sys.argv[1]))
d, reasons = r["decision"], r["acceleration"]["reasons"]
used = " ".join(str(d[k]) for k in ("device", "dtype", "attn_implementation", "backend"))
print("doctor: usable", r["usable"], "|", used, "| reasons", reasons)
' "$gpu_out/doctor.json" || return 2
    return "$rc"
}
gpu_step doctor doctor
[ $? -le 1 ] || gpu_fail doctor "no report (see check.log)"
grep '^doctor:' "$gpu_dir/last_step.log"

gpu_live=1 gpu_step pytest gpu_pytest tests/test_gpu.py
status=$?
gpu_verdict "$status" "$cuda"
