"""Everything that talks to qwen_tts: its import, loading and placement verification, the
generate calls and their voice-mode dispatch, and the checkpoint builder for random weights.

Importing this package is cheap: its modules import torch and qwen_tts, and are imported only
when a model loads (``backend``) or a checkpoint is built (``checkpoints``).
"""
