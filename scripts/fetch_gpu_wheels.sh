#!/usr/bin/env bash
# Download the wheels the offline GPU machine lacks (CPython 3.12, manylinux x86_64) into .whl/;
# the device tool carries .whl/ over (see ../shared/gpu.md). Run here, where PyPI is reachable.
# Idempotent: a wheel already in .whl/ is not downloaded again, and a wheel not on the list
# (an older version) is removed, so that .whl/ holds one version of each.
# The list below is the one place the carried set is named: tests/test_gpu_wheels.py reads it
# and checks that it plus the image's packages (scripts/device_image.txt) cover every
# requirement of what the GPU calls install and import; scripts/gpu_dry_run.sh proves it.
set -euo pipefail
cd "$(dirname "$0")/.."
# BEGIN WHEELS: NAME==VERSION, one version each; why it is carried.
binary=(  # built for CPython 3.12, manylinux x86_64
    soundfile==0.14.0     # qwen_tts reads and writes WAVs with it; not on the image
    cffi==2.1.1           # soundfile's binding (_cffi_backend); not on the image
    soxr==1.1.0           # librosa.resample; not on the image
    pydantic-core==2.50.5 # pydantic's; not on the image
    onnxruntime==1.32.0   # qwen_tts' 25 Hz tokenizer; on the image too, carried pinned
    tokenizers==0.22.2    # transformers 4.57.3 needs <=0.23 (the image's is newer)
    regex==2026.12.2      # transformers; on the image too, carried pinned
)
pure=(  # py3-none-any
    qwen-tts==0.1.1          # the model code; not on the image
    faster-qwen3-tts==0.3.2  # the cuda_graphs backend ([fast] extra)
    transformers==4.57.3     # qwen-tts pins it (the image has 5.x)
    huggingface_hub==0.36.2  # transformers 4.57.3 needs <1.0 (the image has 1.33.0)
    accelerate==1.12.0       # qwen-tts pins it (the image has 1.15.0)
    librosa==0.11.0          # qwen_tts (mel filters, resampling, loading); not on the image
    decorator==5.3.2         # librosa imports it; not on the image
    audioread==3.1.0         # librosa's and ours; not on the image
    pooch==1.9.0             # librosa imports it; not on the image
    pycparser==3.12          # cffi's; not on the image
    sox==1.4.1               # qwen_tts' 25 Hz tokenizer; not on the image (1.5.0: no wheel)
    structlog==26.1.0        # ours; not on the image
    pydantic==2.14.4         # ours (hookspecs); not on the image
    annotated-types==0.8.0   # pydantic's; not on the image
    typing-inspection==0.4.5 # pydantic's; not on the image
    typing_extensions==4.16.0 # pydantic 2.14 needs >=4.16; the image's version is unknown
    platformdirs==4.14.9     # ours and pooch's; not on the image
    lazy_loader==0.6         # librosa; on the image too, carried pinned
    einops==0.8.2            # qwen_tts; on the image too, carried pinned
    pluggy==1.7.0            # hookspecs; on the image too, carried pinned
)
# END WHEELS
mkdir -p .whl
wheel_prefix() {  # soundfile==0.14.0 -> soundfile-0.14.0- (a wheel file name's start)
    local name=${1%%==*} version=${1##*==}
    name=${name,,}
    echo "${name//[-.]/_}-$version-"
}
have() {  # have SPEC FILE...: one of the files is the spec's wheel
    local prefix f
    prefix=$(wheel_prefix "$1")
    shift
    for f in "$@"; do
        f=${f##*/}
        [[ ${f,,} == "$prefix"* ]] && return 0
    done
    return 1
}
specs=("${binary[@]}" "${pure[@]}")
for f in .whl/*.whl; do  # first, one version of each: drop what the list no longer names
    [ -e "$f" ] || continue
    keep=no
    for spec in "${specs[@]}"; do
        if have "$spec" "$f"; then keep=yes; break; fi
    done
    if [ "$keep" = no ]; then
        echo "removing $f (not on the list)"
        rm -f "$f"
    fi
done
fetched=0
for spec in "${binary[@]}"; do
    have "$spec" .whl/*.whl && continue
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "$spec"
    fetched=$((fetched + 1))
done
for spec in "${pure[@]}"; do
    have "$spec" .whl/*.whl && continue
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .whl "$spec"
    fetched=$((fetched + 1))
done
count=$(ls .whl/*.whl | wc -l)
want=${#specs[@]}
[ "$count" = "$want" ] || { echo "fetch_gpu_wheels: $count wheels in .whl/, want $want" >&2; exit 1; }
echo "fetch_gpu_wheels: $count wheels in .whl/ ($fetched downloaded), $(du -sh .whl | cut -f1)"
