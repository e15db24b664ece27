#!/usr/bin/env bash
# Dry run of both GPU calls on this CPU machine, in a Python 3.12 venv (.venv-gpu-dry/) that holds
# only packages of the device machine's image (scripts/device_image.txt, lines marked "dry"; PyPI's
# torch 2.11.0 stands in for the image's CUDA build, its nvidia-* and triton come along, as they
# are on the image too). Builds the venv once (a stamp), checks that every distribution in it is on
# the image's list, fetches the carried wheels (scripts/fetch_gpu_wheels.sh), then runs
# scripts/gpu_check.sh and scripts/gpu_figures.sh exactly as the card will: import check passed,
# doctor ran, tiny checkpoints built, every GPU test collected (as many as the dev venv .venv
# collects) and skipped for 'needs a CUDA device' alone. Step times in OUTDIR/dry_steps.json.
# Ends with one line: dry-run: PASS (...) | dry-run: FAIL (...).
# Usage: scripts/gpu_dry_run.sh [OUTDIR]   (default out/gpu-dry; PYTHON312 picks the python,
#        GPU_DRY_FETCH=0 skips the download and takes .whl/ as it is)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/gpu-dry}
mkdir -p "$out"
out=$(cd "$out" && pwd)
venv=.venv-gpu-dry
started=$(date +%s.%N)
steps=()
seconds() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
record() {  # record NAME START STATUS
    local IFS=,
    steps+=("{\"step\": \"$1\", \"seconds\": $(seconds "$2"), \"exit\": $3}")
    printf '[%s]\n' "${steps[*]}" > "$out/dry_steps.json"
    printf 'dry-run step %-14s %7s s  exit %s\n' "$1" "$(seconds "$2")" "$3"
}
fail() {
    echo "dry-run: FAIL ($1; $(seconds "$started") s)"
    exit 1
}

find_python312() {
    local candidate
    for candidate in "${PYTHON312:-}" "$(command -v python3.12 || true)" \
        ~/.pyenv/versions/3.12*/bin/python; do
        [ -n "$candidate" ] && [ -x "$candidate" ] || continue
        "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null \
            && { echo "$candidate"; return 0; }
    done
    return 1
}

# 1. The venv: the image's packages our stack may import, nothing else.
build_venv() {
    local py312 stamp=$venv/.dry-stamp want
    py312=$(find_python312) || { echo "no Python 3.12 (set PYTHON312)"; return 1; }
    want=$( { "$py312" --version; cat scripts/device_image.txt; } | sha256sum | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        echo "venv up to date ($venv)"
        verify_venv
        return
    fi
    rm -rf "$venv"
    "$py312" -m venv "$venv" || return 1
    awk '$1 !~ /^#/ && $2 == "dry" { print $1 }' scripts/device_image.txt > "$venv/image-dry.txt"
    "$venv/bin/python" -m pip install -q --upgrade pip || return 1
    "$venv/bin/python" -m pip install -q --only-binary=:all: -r "$venv/image-dry.txt" || return 1
    verify_venv || return 1
    echo "$want" > "$stamp"
}

# Every distribution in the venv must be on the image's list: what makes the dry run honest.
verify_venv() {
    "$venv/bin/python" -I - scripts/device_image.txt <<'PY'
import re, sys
from importlib import metadata

def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

image = set()
for line in open(sys.argv[1], encoding="utf-8"):
    if line.strip() and not line.startswith("#"):
        image.add(norm(re.split(r"[<>=!~ ]", line.strip(), maxsplit=1)[0]))
dists = sorted({norm(d.metadata["Name"]) for d in metadata.distributions()})
tools = {"pip", "setuptools", "wheel"}
cuda = [d for d in dists if d.startswith(("nvidia-", "cuda-")) or d == "triton"]
off = [d for d in dists if d not in image and d not in tools and d not in cuda]
print(f"venv: {len(dists)} distributions, all on the image's list: {not off}")
print(f"  of which CUDA runtime pieces (PyPI torch's; the image has its own): {', '.join(cuda)}")
if set(cuda) - image:
    print("  (allowed, though not on the image's list:", ", ".join(sorted(set(cuda) - image)), ")")
if off:
    print("NOT on the image's list:", ", ".join(off))
    sys.exit(1)
PY
}

t=$(date +%s.%N); build_venv 2>&1 | tee "$out/venv.log"; rc=${PIPESTATUS[0]}
record venv "$t" "$rc"
[ "$rc" = 0 ] || fail "venv: see $out/venv.log"
du -sh "$venv" | awk '{ print "dry-run venv size: " $1 }'

# 2. The carried wheels (GPU_DRY_FETCH=0: use .whl/ as it is).
t=$(date +%s.%N)
if [ "${GPU_DRY_FETCH:-1}" = 0 ]; then echo "wheels: .whl/ as it is"; rc=0
else scripts/fetch_gpu_wheels.sh; rc=$?; fi
record wheels "$t" "$rc"
[ "$rc" = 0 ] || fail "wheels: scripts/fetch_gpu_wheels.sh failed"

# 3. How many GPU tests the dev venv collects (what the dry venv must collect too).
t=$(date +%s.%N)
dev_count() {
    [ -x .venv/bin/python ] || { echo "?"; return; }
    .venv/bin/python -m pytest --collect-only -q -m gpu -p no:cacheprovider "$1" 2>/dev/null \
        | sed -n 's/^\([0-9]*\)\(\/[0-9]*\)\{0,1\} tests\{0,1\} collected.*/\1/p'
}
want_check=$(dev_count tests/test_gpu.py)
want_figures=$(dev_count tests/test_benchmarks_gpu_real.py)
record dev_collect "$t" 0
echo "dev venv collects: $want_check (test_gpu.py), $want_figures (test_benchmarks_gpu_real.py)"

# 4. The two calls, as the card runs them.
expect() {  # expect NAME WANT_COUNT: the call's verdict is SKIPPED with that many tests
    local verdict name=$1 want=$2
    verdict=$(tail -n 1 "$out/$name.out")
    case $verdict in
        "verdict: SKIPPED (no CUDA: "*) ;;
        *) fail "$name: $verdict" ;;
    esac
    collected=$(sed -n 's/^verdict: SKIPPED (no CUDA: \([0-9]*\) tests.*/\1/p' <<<"$verdict")
    [ "$want" = "?" ] || [ "$collected" = "$want" ] \
        || fail "$name: collected $collected GPU tests, the dev venv $want"
}
t=$(date +%s.%N)
PYTHON=$venv/bin/python scripts/gpu_check.sh "$out/check" | tee "$out/check.out"
record check "$t" "${PIPESTATUS[0]}"
expect check "$want_check"
check_n=$collected
python3 - "$out/check/steps.json" <<'PY' || fail "check: a step did not run"
import json, sys
steps = {s["step"]: s["exit"] for s in json.load(open(sys.argv[1]))}
need = {"install": 0, "imports": 0, "tiny_checkpoints": 0}
bad = {k: steps.get(k) for k, v in need.items() if steps.get(k) != v}
if "doctor" not in steps or steps["doctor"] not in (0, 1):
    bad["doctor"] = steps.get("doctor")
sys.exit(f"steps not as wanted: {bad}" if bad else 0)
PY
t=$(date +%s.%N)
PYTHON=$venv/bin/python scripts/gpu_figures.sh "$out/figures" | tee "$out/figures.out"
record figures "$t" "${PIPESTATUS[0]}"
expect figures "$want_figures"
figures_n=$collected

imports=$(sed -n 's/^imports: //p' "$out/check/check.log" | tail -n 1)
echo "dry-run: PASS (check: imports $imports; $check_n GPU tests collected, all skipped for" \
    "'needs a CUDA device'; figures: $figures_n collected, all skipped; $(seconds "$started") s)"
