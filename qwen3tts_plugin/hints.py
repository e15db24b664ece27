"""Troubleshooting hints attached to errors (the seed's list, in words a user can act on)."""

import errno

DEVICE_HINT = (
    "The model could not be placed on the GPU. Check that the NVIDIA driver is installed and "
    "loaded (nvidia-smi), that torch was built for a CUDA runtime the driver supports "
    "(python -m qwen3tts_plugin doctor shows both), that the device index exists and has enough "
    "free memory (prefer a 0.6B model below ~6 GB). To run on the CPU on purpose, set Device=cpu; "
    "the engine never falls back by itself."
)

MPS_HINT = (
    "The model could not be placed on the Apple GPU (mps). It needs macOS 12.3 or later on Apple "
    "silicon and a torch build with MPS (python -m qwen3tts_plugin doctor shows torch's view). "
    "To run on the CPU on purpose, set Device=cpu; the engine never falls back by itself."
)

RUNTIME_HINT = (
    "Install the engine's runtime in the host's environment: pip install 'qwen-tts>=0.1.1,<0.2' "
    "and a torch build for this machine (pytorch.org lists the CUDA builds). pip install "
    "qwen3tts-plugin pulls both; a broken torch/torchaudio pair (mismatched versions) fails the "
    "same way."
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

OUTPUT_PATH_HINT = (
    "Choose a writable output path: a .wav file, or a name that does not exist yet, in a folder "
    "you can write to."
)

NOT_A_FILE_HINT = (
    "The output path must be a regular file or a name that does not exist yet: the engine "
    "writes a new file beside it and renames it into place, so it never writes into a folder, "
    "a named pipe, a device or a socket, nor replaces one. Choose another .wav path."
)

NAME_TOO_LONG_HINT = "Use a shorter file name (and shorter folder names)."

OUTPUT_WRITE_HINTS = {
    "ENOSPC": "The disk is full: free some space on it, or choose an output folder on "
    "another disk.",
    "EDQUOT": "Your disk quota is used up: free some space, or choose an output folder on "
    "another disk.",
    "EFBIG": "The file is larger than this system allows for one file (the shell's "
    "'ulimit -f', or the filesystem's own limit such as FAT32's 4 GiB): send shorter texts, "
    "or write to another filesystem.",
    "ENAMETOOLONG": NAME_TOO_LONG_HINT,
    "EACCES": "Choose an output folder you are allowed to write to.",
    "EPERM": "Choose an output folder you are allowed to write to.",
    "EROFS": "That filesystem is read-only: choose an output folder on a writable disk.",
}
"""What to do about the operating system's reasons a WAV could not be written, by errno name
(names, not numbers: not every platform has every code)."""


def output_write_hint(code: int | None) -> str:
    """What to do when writing the WAV failed with the operating system's error ``code``."""
    name = errno.errorcode.get(code) if code is not None else None
    return OUTPUT_WRITE_HINTS.get(name or "", OUTPUT_PATH_HINT)


DEVICE_FORMS = "'auto' (or empty), 'cpu', 'cuda', 'cuda:N' (N = 0, 1, ...), 'mps'"


def download_hint(repo_id: str, folder: object) -> str:
    """How to fetch a published model into ``folder`` (the tests never download)."""
    return (
        f"Download it: huggingface-cli download "
        f"{repo_id} --local-dir {folder}  (or from ModelScope: modelscope download --model "
        f"{repo_id} --local_dir {folder}); or point ModelPath at a complete local folder."
    )
