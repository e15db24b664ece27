#!/usr/bin/env bash
# GPU call 2, the figures, after scripts/gpu_check.sh passed on the same (warm) machine: the same
# set-up (the install reused), the real-size checkpoint built once into .gpu/real (2.15 GB;
# without CUDA a 16x shrunken one in a temp folder, to exercise the builder), then
# `pytest -m gpu tests/test_benchmarks_gpu_real.py` writing gpu_real.json and batch_sizes.json
# into OUTDIR. Steps timed in OUTDIR/steps.json; one verdict line at the end, as gpu_check.sh.
# Usage: [PYTHON=python3] scripts/gpu_figures.sh OUTDIR
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/gpu_figures.sh OUTDIR}
source scripts/gpu_env.sh
gpu_begin "$out" figures

gpu_install
gpu_step probe "$python" -c '
import torch
cuda = torch.cuda.is_available()
print("cuda:", "yes" if cuda else "no", torch.__version__, torch.cuda.get_device_name(0) if cuda else "")
' || gpu_fail probe "torch does not import"
cuda=$(sed -n 's/^cuda: \([a-z]*\).*/\1/p' "$gpu_dir/last_step.log")

if [ "$cuda" = yes ]; then
    gpu_step real_checkpoint "$python" -c '
from benchmarks.real_checkpoint import folder_bytes, real_size_checkpoint
path = real_size_checkpoint()
print(path, folder_bytes(path) / 1e9, "GB")
' || gpu_fail real_checkpoint "could not build the real-size checkpoint"
else
    gpu_step real_shrunk "$python" -c '
import tempfile
from benchmarks.real_checkpoint import build_real_size_checkpoint, folder_bytes
with tempfile.TemporaryDirectory() as tmp:
    path = build_real_size_checkpoint(tmp + "/shrunk", shrink=16)
    print("no CUDA: built a 16x shrunken one,", folder_bytes(path) / 1e6, "MB")
' || gpu_fail real_shrunk "could not build the (shrunken) real-size checkpoint"
fi

gpu_live=1 gpu_step pytest gpu_pytest tests/test_benchmarks_gpu_real.py
status=$?
gpu_verdict "$status" "$cuda"
