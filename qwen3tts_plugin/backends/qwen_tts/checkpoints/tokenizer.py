"""The small byte-level BPE every random checkpoint carries as its text tokenizer.

The published text tokenizer files are not part of the published configs, so a random folder
carries this BPE (Qwen2Tokenizer format, trained locally in a second) and its config's special
text-token ids point into it. The chat-template words are frequent in its corpus so that each
is one token: qwen_tts slices prompts by token position.
"""

from __future__ import annotations

import functools
import json
from typing import Any

TOKENIZER_VOCAB = 512
"""Size of the BPE vocabulary (before the special tokens)."""

# Special tokens of the Qwen2 text tokenizer, in the order (and so with the id offsets) of the
# published tokenizer_config.json; True marks the ones flagged special there.
_SPECIAL_TOKENS = [
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
    ("<|audio_start|>", True),
    ("<|audio_end|>", True),
    ("<tts_pad>", True),
    ("<tts_text_bos>", True),
    ("<tts_text_eod>", True),
    ("<tts_text_bos_single>", True),
    ("<|audio_pad|>", True),
]
_ADDITIONAL_SPECIAL_TOKENS = [
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<|audio_start|>",
    "<|audio_end|>",
    "<tts_pad>",
    "<tts_text_bos>",
    "<tts_text_bos_single>",
    "<|audio_pad|>",
]
_EXTRA_SPECIAL_TOKENS = {
    "image_token": "<|image_pad|>",
    "audio_token": "<|audio_pad|>",
    "video_token": "<|video_pad|>",
    "vision_bos_token": "<|vision_start|>",
    "vision_eos_token": "<|vision_end|>",
    "audio_bos_token": "<|audio_start|>",
    "audio_eos_token": "<|audio_end|>",
}

# Qwen2's pre-tokenizer pattern (what its tokenizer.json splits words with).
_QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# The corpus the tiny BPE is trained on. The chat-template words ("assistant", "user") are
# frequent so that each becomes one token: qwen_tts slices prompts by token position.
_CORPUS = [
    "assistant\nHello world. Hello there. Hello again, world!",
    "user\nA calm low voice. A bright, cheerful voice. A slow, deep voice.",
    "assistant\nThe quick brown fox jumps over the lazy dog.",
    "user\nSpeak clearly, please; read the text slowly and warmly.",
    "assistant\nThis is a tiny test model. It says nothing useful, but it says it quickly.",
    "assistant\nNumbers: 0 1 2 3 4 5 6 7 8 9, 10, 42, 100, 2024, 3.14, 1,000,000.",
    "user\nWhat time is it? It is 12:30. Call 555-0100 or write to test@example.com.",
    "assistant\nGood morning! How are you today? I am fine, thank you.",
    "assistant\nThe weather is nice: sunny, warm, and bright (about 25 degrees).",
    "user\nPlease turn the video into short clips with subtitles and music.",
    "assistant\nOne, two, three... four - five; six: seven? eight! nine & ten.",
    "assistant\nShe said, \"Yes.\" He said, 'No.' They both laughed [quietly] {again}.",
    "assistant\n你好，世界。今天天气很好。",
    "user\n请用温柔的声音朗读这段文字。",
    "assistant\n我们一起去公园散步吧！你觉得怎么样？",
    "assistant\n这是一个很小的测试模型，它的声音只是噪声。",
    "user\n一二三四五六七八九十，百千万。",
    "assistant\nGuten Tag! Wie geht es dir? Danke, sehr gut.",
    "assistant\nassistant assistant user user system system",
]


@functools.lru_cache(maxsize=1)
def trained_tokenizer() -> tuple[tuple[tuple[str, int], ...], tuple[str, ...]]:
    """Train the tiny byte-level BPE once per process; return (vocab items by id, merges)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN2_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tokenizer.train_from_iterator(_CORPUS * 4, trainer=trainer)
    model = json.loads(tokenizer.to_str())["model"]
    vocab = tuple(sorted(model["vocab"].items(), key=lambda item: item[1]))
    merges = tuple(m if isinstance(m, str) else " ".join(m) for m in model["merges"])
    return vocab, merges


def special_token_ids() -> dict[str, int]:
    """Ids of the special text tokens: appended after the BPE vocabulary, as in Qwen2."""
    vocab, _ = trained_tokenizer()
    first = len(vocab)
    return {content: first + offset for offset, (content, _special) in enumerate(_SPECIAL_TOKENS)}


def text_vocab_size() -> int:
    """The text embedding rows: the whole vocabulary rounded up to a multiple of 128."""
    total = len(trained_tokenizer()[0]) + len(_SPECIAL_TOKENS)
    return -(-total // 128) * 128


def tokenizer_config() -> dict[str, Any]:
    """tokenizer_config.json, shaped like the published one."""
    ids = special_token_ids()
    added = {
        str(ids[content]): {
            "content": content,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": special,
        }
        for content, special in _SPECIAL_TOKENS
    }
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": list(_ADDITIONAL_SPECIAL_TOKENS),
        "extra_special_tokens": dict(_EXTRA_SPECIAL_TOKENS),
        "bos_token": None,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 131072,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
        **_EXTRA_SPECIAL_TOKENS,
    }


def text_token_ids() -> dict[str, int]:
    """config.json's special text-token ids, as the tiny tokenizer numbers them."""
    ids = special_token_ids()
    vocab = dict(trained_tokenizer()[0])
    return {
        "assistant_token_id": vocab["assistant"],
        "im_end_token_id": ids["<|im_end|>"],
        "im_start_token_id": ids["<|im_start|>"],
        "tts_bos_token_id": ids["<tts_text_bos>"],
        "tts_eos_token_id": ids["<tts_text_eod>"],
        "tts_pad_token_id": ids["<tts_pad>"],
    }


def tokenizer_files() -> dict[str, bytes]:
    """vocab.json and merges.txt of the BPE, as the published Qwen2 tokenizer lays them out."""
    vocab, merges = trained_tokenizer()
    return {
        "vocab.json": (json.dumps(dict(vocab), ensure_ascii=False) + "\n").encode("utf-8"),
        "merges.txt": ("#version: 0.2\n" + "\n".join(merges) + "\n").encode("utf-8"),
    }
