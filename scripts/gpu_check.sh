#!/usr/bin/env bash
# GPU checks on an offline CUDA machine (../shared/gpu.md): install the carried wheels, build
# the tiny checkpoints, run `pytest -m gpu`, write OUTDIR/gpu_checks.json and a verdict line.
# Usage: scripts/gpu_check.sh OUTDIR     (safe to rerun)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/gpu_check.sh OUTDIR}
mkdir -p "$out"
python=${PYTHON:-python3}
site=/tmp/qwen3tts-site
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    "$python" -m pip install -q --no-index --no-deps --upgrade --target "$site" .whl/*.whl \
        > "$out/pip.log" 2>&1 || { echo "verdict: FAIL (wheel install, see pip.log)"; exit 1; }
fi
# Entry points live in installed metadata: declare ours without building the package.
mkdir -p "$site/qwen3tts_plugin-0.0.0.dist-info"
printf 'Metadata-Version: 2.1\nName: qwen3tts-plugin\nVersion: 0.0.0\n' \
    > "$site/qwen3tts_plugin-0.0.0.dist-info/METADATA"
printf '[autocut_tts]\nqwen3_tts = qwen3tts_plugin.hooks\n' \
    > "$site/qwen3tts_plugin-0.0.0.dist-info/entry_points.txt"
export PYTHONPATH="$site:$PWD" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GPU_CHECK_OUT="$out"
export QWEN3TTS_TINY_CACHE=/tmp/qwen3tts-tiny
"$python" -m qwen3tts_plugin doctor --json > "$out/doctor.json" 2> "$out/doctor.log"
"$python" -m pytest -m gpu -p no:cacheprovider -q -rs tests/test_gpu.py tests/test_benchmarks_gpu_real.py \
    --junitxml="$out/junit.xml" 2>&1 | tee "$out/pytest.log"
status=${PIPESTATUS[0]}
summary=$(tail -n 1 "$out/pytest.log")
if [ "$status" = 0 ] && ! grep -q " skipped" <<<"$summary"; then
    echo "verdict: PASS ($summary)"
else
    echo "verdict: FAIL or SKIPPED (pytest exit $status: $summary)"
fi
exit "$status"
