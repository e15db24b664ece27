#!/usr/bin/env bash
# Download the wheels the offline GPU machine lacks (CPython 3.12, manylinux x86_64) into .whl/.
# See ../shared/gpu.md. Run here, where PyPI is reachable; the device tool carries .whl/ over.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
binary=(soundfile==0.14.0 soxr==1.1.0 pydantic-core==2.50.5 onnxruntime==1.32.0
        tokenizers==0.22.2 regex==2026.11.19)
pure=(qwen-tts==0.1.1 transformers==4.57.3 accelerate==1.12.0 librosa==0.11.0 sox==1.4.1
      audioread==3.1.0 lazy_loader==0.6 pooch==1.9.0 structlog==26.1.0 pydantic==2.14.4
      einops==0.8.2 huggingface_hub==0.36.2 platformdirs==4.14.8 typing-inspection==0.4.5
      annotated-types==0.8.0 pluggy==1.7.0 faster-qwen3-tts==0.3.2)
for spec in "${binary[@]}"; do
    pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl "$spec"
done
for spec in "${pure[@]}"; do
    pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .whl "$spec"
done
ls .whl
