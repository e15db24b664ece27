"""The device as torch sees it: one tensor proves it usable; dropped models hand memory back.

Cheap to import: torch is imported by the functions, which run only where a model is about to
load (or ``doctor`` probes).
"""

from __future__ import annotations

import gc

from .failures import device_unusable_error


def check_device(device: str) -> None:
    """Allocate one tensor on ``device``: the cheapest real proof that torch can use it
    (``model_to_device_failed`` when it cannot)."""
    if device == "cpu":
        return
    import torch

    try:
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError) as exc:
        raise device_unusable_error(device, exc) from exc


def free_device_memory() -> None:
    """Collect dropped models and hand cached GPU memory back to the driver."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
