"""Troubleshooting hints attached to errors (the seed's list, in words a user can act on)."""

DEVICE_HINT = (
    "The model could not be placed on the GPU. Check that the NVIDIA driver is installed and "
    "loaded (nvidia-smi), that torch was built for a CUDA runtime the driver supports "
    "(python -m qwen3tts_plugin doctor shows both), that the device index exists and has enough "
    "free memory (prefer a 0.6B model below ~6 GB). To run on the CPU on purpose, set Device=cpu; "
    "the engine never falls back by itself."
)

MEMORY_HINT = (
    "The device ran out of memory during generation. Lower BatchSize (how many texts share one "
    "generate call; each holds its own cache), send shorter texts, or choose a 0.6B model. The "
    "engine never moves to the CPU by itself; set Device=cpu to do so on purpose."
)

FP32_HINT = (
    "Half precision overflowed (fp16 does on some cards in the code predictor). Set "
    "Precision=fp32, or Precision=bf16 on a GPU that supports it (compute capability >= 8.0)."
)

MODELS_DIR_HINT = (
    "Download the model folder (including speech_tokenizer/) into ModelsDir, or point ModelPath "
    "at a complete local folder."
)

DEVICE_FORMS = "'auto' (or empty), 'cpu', 'cuda', 'cuda:N' (N = 0, 1, ...), 'mps'"
