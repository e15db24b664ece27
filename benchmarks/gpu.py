"""6. GPU: real-size random 0.6B CustomVoice under the official path and under our policy.

Runs only where CUDA is available (see scripts/gpu_check.sh); elsewhere it reports "skipped".
"""

from __future__ import annotations

from typing import Any


def run(quick: bool) -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device here"}
    from .gpu_real import measure

    return measure(quick=quick)
