"""A drop-in for superAIAutoCutVideo's in-tree Qwen3-TTS service, built on the hooks.

The editor's backend calls one singleton, ``qwen3_tts_service`` (its
``modules/qwen3_tts_service.py``), and its routes match error prefixes. ``Qwen3TTSService``
(service.py) keeps that service's method names, parameters, ``async``-ness and return dicts,
and raises ``RuntimeError("<prefix>:<detail>")`` with the prefixes the routes match
(``model_to_device_failed:``, ``unknown_model_key:``, ``model_invalid:<key>:...|path=...``,
``qwen_tts_import_failed:``), so the editor adopts the plugin by swapping one line::

    from qwen3tts_plugin.autocut import Qwen3TTSService
    qwen3_tts_service = Qwen3TTSService(models_dir=Qwen3TTSPathManager().base_dir)

and its acceleration badge by importing the two detector functions (acceleration.py) from
here.
"""

from .acceleration import (
    acceleration_dict,
    get_qwen3_tts_acceleration_status,
    get_qwen3_tts_preferred_device,
)
from .service import Qwen3TTSService

__all__ = [
    "Qwen3TTSService",
    "acceleration_dict",
    "get_qwen3_tts_acceleration_status",
    "get_qwen3_tts_preferred_device",
]
