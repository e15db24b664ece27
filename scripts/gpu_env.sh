# Shared set-up of the two GPU calls (scripts/gpu_check.sh, scripts/gpu_figures.sh); sourced from
# the repo root. The offline machine (../shared/gpu.md) keeps git-ignored folders of the repo
# between calls while it stays warm, so everything lives in .gpu/: site/ (the carried wheels,
# installed once per set of wheels and interpreter: a stamp), tiny/ and real/ (checkpoint caches).
# PYTHON chooses the interpreter (default python3).
#
# Each call writes into OUTDIR at most 5 files (the device tool returns 8): <call>.log (every
# step's output), steps.json (name, seconds, exit status of each step), junit.xml and what the
# tests write (gpu_checks.json; gpu_real.json, batch_sizes.json), doctor.json for the first call.

python=${PYTHON:-python3}
gpu_dir=$PWD/.gpu
site=$gpu_dir/site
mkdir -p "$gpu_dir"
export PYTHONPATH="$site:$PWD" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
export QWEN3TTS_TINY_CACHE=$gpu_dir/tiny QWEN3TTS_REAL_CACHE=$gpu_dir/real

gpu_out=
gpu_log=
gpu_steps=()
gpu_started=$(date +%s.%N)

# gpu_begin OUTDIR NAME: start a call's log and steps.json in OUTDIR (emptied of both); the
# tests write their figures there too (GPU_CHECK_OUT).
gpu_begin() {
    gpu_out=$1
    mkdir -p "$gpu_out" || { echo "verdict: FAIL (setup: cannot create $gpu_out)"; exit 1; }
    gpu_out=$(cd "$gpu_out" && pwd)
    export GPU_CHECK_OUT=$gpu_out
    gpu_log=$gpu_out/$2.log
    : > "$gpu_log"
    gpu_steps=()
    gpu_write_steps
    echo "$2: python $("$python" -c 'import sys; print(sys.version.split()[0], sys.executable)' 2>&1)"
}

gpu_write_steps() {
    local IFS=,
    printf '[%s]\n' "${gpu_steps[*]}" > "$gpu_out/steps.json"
}

gpu_seconds() {  # seconds since $1 (date +%s.%N), one decimal
    awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'
}

# gpu_step NAME CMD...: run CMD with its output appended to the log as it comes (a call killed
# at its limit still returns it) and kept in $gpu_dir/last_step.log, shown on the terminal too
# when gpu_live=1; time it, record it in steps.json, print one line. Returns CMD's status.
gpu_live=0
gpu_step() {
    local name=$1 start rc secs
    shift
    printf '\n=== %s: %s\n' "$name" "$*" >> "$gpu_log"
    start=$(date +%s.%N)
    if [ "$gpu_live" = 1 ]; then
        "$@" 2>&1 | tee "$gpu_dir/last_step.log" | tee -a "$gpu_log"
    else
        "$@" 2>&1 | tee "$gpu_dir/last_step.log" >> "$gpu_log"
    fi
    rc=${PIPESTATUS[0]}
    secs=$(gpu_seconds "$start")
    printf '=== %s: exit %s after %s s\n' "$name" "$rc" "$secs" >> "$gpu_log"
    gpu_steps+=("{\"step\": \"$name\", \"seconds\": $secs, \"exit\": $rc}")
    gpu_write_steps
    printf 'step %-16s %7s s  exit %s\n' "$name" "$secs" "$rc"
    return "$rc"
}

# gpu_fail STEP WHY: show the step's last lines, print the verdict, exit 1.
gpu_fail() {
    echo "--- step $1 (whole log: $gpu_log)"
    if grep -q '^cause (' "$gpu_dir/last_step.log"; then
        grep '^cause (' "$gpu_dir/last_step.log" | head -n 15
    else
        tail -n 25 "$gpu_dir/last_step.log"
    fi
    echo "verdict: FAIL ($1: $2; $(gpu_seconds "$gpu_started") s in all)"
    exit 1
}

gpu_wheels_stamp() {
    { "$python" -c 'import sys; print(sys.executable, sys.version)'
      sha256sum .whl/*.whl; } | sha256sum | cut -d' ' -f1
}

gpu_install_wheels() {
    local stamp=$site/.installed want
    if ! ls .whl/*.whl > /dev/null 2>&1; then
        echo "no .whl/: nothing to install, the interpreter's own packages are used"
    else
        want=$(gpu_wheels_stamp)
        if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
            echo "already installed in $site (same wheels, same interpreter)"
        else
            rm -rf "$site"
            "$python" -m pip install -q --no-index --no-deps --no-compile --target "$site" \
                .whl/*.whl || return 1
            echo "$want" > "$stamp"
            echo "installed $(ls .whl/*.whl | wc -l) wheels into $site"
        fi
    fi
    # Entry points live in installed metadata: declare ours without building the package.
    local version info
    version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' qwen3tts_plugin/__init__.py)
    info=$site/qwen3tts_plugin-$version.dist-info
    mkdir -p "$info"
    printf 'Metadata-Version: 2.1\nName: qwen3tts-plugin\nVersion: %s\n' "$version" \
        > "$info/METADATA"
    printf '[autocut_tts]\nqwen3_tts = qwen3tts_plugin.hooks\n' > "$info/entry_points.txt"
}

# gpu_install: the install step (fails the call when it fails).
gpu_install() {
    gpu_step install gpu_install_wheels || gpu_fail install "pip could not install .whl/*.whl"
}

# gpu_cuda: "yes" or "no", from torch (after the install).
gpu_cuda() {
    "$python" -c 'import torch; print("yes" if torch.cuda.is_available() else "no")' 2>/dev/null \
        || echo "no"
}

# gpu_pytest TEST_FILE: pytest -m gpu on one file, output to the log and the terminal.
gpu_pytest() {
    "$python" -m pytest -m gpu -p no:cacheprovider -q -rs "$1" \
        --junitxml="$gpu_out/junit.xml" -o junit_family=xunit1
}

# gpu_verdict PYTEST_STATUS CUDA: the verdict line from junit.xml; exits 0 (PASS), 1 (FAIL) or
# 3 (SKIPPED: no CUDA, every test collected and skipped for that reason alone).
gpu_verdict() {
    local verdict rc
    verdict=$(GPU_RC=$1 GPU_CUDA=$2 GPU_SECONDS=$(gpu_seconds "$gpu_started") \
        "$python" - "$gpu_out/junit.xml" <<'EOF'
import collections, os, sys
import xml.etree.ElementTree as ET

rc, cuda, seconds = int(os.environ["GPU_RC"]), os.environ["GPU_CUDA"], os.environ["GPU_SECONDS"]
try:
    cases = list(ET.parse(sys.argv[1]).getroot().iter("testcase"))
except (OSError, ET.ParseError) as exc:
    print(f"verdict: FAIL (pytest: exit {rc}, no junit.xml: {exc})")
    sys.exit(1)
skipped, failed = collections.Counter(), []
for case in cases:
    name = case.get("name")
    for child in case:
        if child.tag == "skipped":
            skipped[child.get("message", "").strip()] += 1
        elif child.tag in ("failure", "error"):
            failed.append(f"{name} ({child.tag})")
n, passed = len(cases), len(cases) - sum(skipped.values()) - len(failed)
reasons = ", ".join(f"{k} x{v}" for k, v in skipped.items())
if failed or rc != 0 or n == 0:
    shown = "; ".join(failed[:4]) + (" ..." if len(failed) > 4 else "")
    print(f"verdict: FAIL (pytest: exit {rc}, {n} tests, {len(failed)} failed: {shown})")
    sys.exit(1)
if cuda != "yes":
    if set(skipped) == {"needs a CUDA device"} and skipped["needs a CUDA device"] == n:
        print(f"verdict: SKIPPED (no CUDA: {n} tests collected, all skipped for "
              f"'needs a CUDA device'; {seconds} s)")
        sys.exit(3)
    print(f"verdict: FAIL (no CUDA, yet not every test skipped for it: {passed} passed, "
          f"skipped: {reasons or 'none'})")
    sys.exit(1)
tail = f", {sum(skipped.values())} skipped: {reasons}" if skipped else ""
print(f"verdict: PASS ({passed} of {n} passed{tail}; {seconds} s)")
EOF
    )
    rc=$?
    echo "$verdict" >> "$gpu_log"
    echo "$verdict"
    exit "$rc"
}
