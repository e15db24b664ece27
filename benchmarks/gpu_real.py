"""6. GPU: a random model of the real 0.6B CustomVoice architecture, timed three ways.

The checkpoint: ``build_real_size_checkpoint`` writes a loadable folder with the published sizes
of ``Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice`` (configs in ``benchmarks/data/``) and seeded random
weights, so speed and memory are those of the real model; the audio is noise. Only the text
vocabulary differs: its files are not published with the configs, so the folder carries the
small byte-level BPE of ``qwen3tts_plugin.testing`` and the config's special text-token ids point
into it (``text_vocab_size`` stays 151936: the text embedding keeps its real size).

Fixed length: every call must produce exactly the frames asked for. qwen_tts 0.1.1's
``Qwen3TTSForConditionalGeneration.generate`` hard-codes ``min_new_tokens=2`` and
``suppress_tokens`` for the talker and drops every other generate keyword; the only handle a
call has is ``eos_token_id``, which the plugin's hook cannot pass. So the checkpoint never wants
to stop: the row of the talker's ``codec_head`` for the codec EOS id (2150) is zero, which makes
the EOS logit exactly 0 while the 2048 code logits are N(0, ~0.64) (real size); top-k 50
sampling (and greedy decoding) never picks a logit that sits at the median. The talker's first
step yields codes one step later, so ``max_new_tokens = frames + 1`` gives ``frames`` frames.
Each run records the frames it actually produced.

Time to first audio: qwen_tts 0.1.1 has no streaming output. ``non_streaming_mode`` only
chooses how the *text* enters the talker (all in the prompt, the default that the seed's host
and the plugin use, or one text token per generated frame, "simulated streaming input"); either
way ``generate_custom_voice`` returns after every frame is generated and the whole waveform is
decoded. So time to first audio equals the call's latency. As a floor for a streaming path with
the same kernels, each configuration also records the latency of a one-frame call.

``measure(quick)`` (CUDA only; called by ``benchmarks/gpu.py``):
(a) official: ``Qwen3TTSModel.from_pretrained(device_map="cuda:0", dtype=float16,
    attn_implementation="sdpa")`` and ``generate_custom_voice``, as the seed's host used it;
(b) policy: ``pm.hook.tts_load`` / ``tts_synthesize`` with ``Device=auto`` (bf16 on Ampere and
    newer, flash_attention_2 when flash_attn imports, else sdpa), WAV writing included;
(c) batch: the same resident model, eight narration segments through ``tts_synthesize_batch``
    with ``BatchSize=8`` (one generate call), WAV writing included; unseeded (a seeded sampled
    request always runs alone, by design). Against (b), one text per call with the same frames,
    it gives the batch speed-up (audio seconds per wall second, (c) over (b)).
Frames per segment: 48 quick (3.84 s of audio), 96 full (7.68 s); repeats after one warm-up:
2 quick, 5 full.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

from qwen3tts_plugin import testing

from .stats import Timing

__all__ = [
    "BUILDER_VERSION",
    "CACHE_ENV",
    "DATA_DIR",
    "build_real_size_checkpoint",
    "measure",
    "real_size_checkpoint",
    "rows",
    "run_benchmark",
]

DATA_DIR = pathlib.Path(__file__).resolve().parent / "data" / "Qwen3-TTS-12Hz-0.6B-CustomVoice"
"""The published configuration files (byte-for-byte copies; see ``data/README.md``)."""

BUILDER_VERSION = 1
"""Bump when the builder's output changes for the same inputs (it is part of the cache key)."""

CACHE_ENV = "QWEN3TTS_REAL_CACHE"
"""Environment variable naming the folder ``real_size_checkpoint`` caches into."""

SAMPLE_RATE = 24_000
SAMPLES_PER_FRAME = 1920  # 12.5 frames per second of 24 kHz audio
QUICK = {"frames": 48, "repeats": 2}
FULL = {"frames": 96, "repeats": 5}
SPEAKER = "ryan"
LANGUAGE = "English"

SEGMENTS = [
    "The river bends twice before it reaches the old mill, where the water turns slow and dark.",
    "Every spring the villagers carry their boats down the stone stairs and wait for the flood.",
    "Nobody remembers who built the mill, but everyone knows the sound of its broken wheel.",
    "In the evening the light falls across the fields, and the farmers walk home in silence.",
    "The children race along the bank, counting the herons that stand in the shallow water.",
    "At the end of the summer the market fills with apples, honey, bread and smoked fish.",
    "Travellers stop at the bridge to ask the way, and the answer is always the same: follow it.",
    "When winter comes the river freezes, and the whole valley listens to the ice at night.",
]
"""Eight narration segments for the batch; the first is the single-call text."""
TEXT = SEGMENTS[0]

# The published files the builder writes unchanged (bytes copied, never re-serialised).
_VERBATIM = (
    "generation_config.json",
    "preprocessor_config.json",
    "speech_tokenizer/configuration.json",
    "speech_tokenizer/preprocessor_config.json",
)
# Keys divided by ``shrink`` (a test-only option) in each config section.
_TALKER_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "text_hidden_size",
)
_PREDICTOR_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
)
_DECODER_KEYS = (
    "latent_dim",
    "codebook_dim",
    "decoder_dim",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "vector_quantization_hidden_dimension",
)
_ENCODER_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "num_filters",
    "codebook_dim",
    "vector_quantization_hidden_dimension",
    "upsample_groups",
)
_SAVE_DTYPES = ("bfloat16", "float16", "float32")


# --- the checkpoint ---------------------------------------------------------------------------


def _published(relative: str) -> dict[str, Any]:
    """A published JSON file from ``DATA_DIR``."""
    return json.loads((DATA_DIR / relative).read_text(encoding="utf-8"))


def _divide(section: dict[str, Any], keys: tuple[str, ...], shrink: int) -> None:
    """Divide each of ``keys`` in ``section`` by ``shrink`` (at least 1)."""
    for key in keys:
        section[key] = max(1, section[key] // shrink)


def model_config(shrink: int = 1) -> dict[str, Any]:
    """config.json: the published one with the local tokenizer's special ids (and, for a test,
    every size divided by ``shrink``; codec ids, speakers and head_dim never change)."""
    config = _published("config.json")
    config.update(testing.text_token_ids())
    talker = config["talker_config"]
    if shrink > 1:
        _divide(talker, _TALKER_KEYS, shrink)
        predictor = talker["code_predictor_config"]
        _divide(predictor, _PREDICTOR_KEYS, shrink)
        predictor["layer_types"] = ["full_attention"] * predictor["num_hidden_layers"]
        text_rows = -(-talker["text_vocab_size"] // shrink // 128) * 128
        talker["text_vocab_size"] = max(text_rows, testing.text_vocab_size())
    highest = max(testing.special_token_ids().values())
    if highest >= talker["text_vocab_size"]:
        raise ValueError(f"token id {highest} outside text_vocab_size {talker['text_vocab_size']}")
    return config


def speech_tokenizer_config(shrink: int = 1) -> dict[str, Any]:
    """speech_tokenizer/config.json: the published one (sizes divided by ``shrink`` for tests)."""
    config = _published("speech_tokenizer/config.json")
    if shrink > 1:
        _divide(config["decoder_config"], _DECODER_KEYS, shrink)
        _divide(config["encoder_config"], _ENCODER_KEYS, shrink)
    return config


def _json_files(shrink: int) -> dict[str, dict[str, Any]]:
    """The JSON files the builder generates (the others are copied verbatim), by path."""
    return {
        "config.json": model_config(shrink),
        "tokenizer_config.json": testing.tokenizer_config(),
        "speech_tokenizer/config.json": speech_tokenizer_config(shrink),
    }


def _write_text_files(folder: pathlib.Path, shrink: int) -> None:
    """Configs (generated and verbatim) and the local BPE's vocab.json / merges.txt."""
    (folder / "speech_tokenizer").mkdir(parents=True, exist_ok=True)
    for relative in _VERBATIM:
        shutil.copyfile(DATA_DIR / relative, folder / relative)
    for relative, data in _json_files(shrink).items():
        (folder / relative).write_text(testing.dump_json(data), encoding="utf-8")
    vocab, merges = testing.trained_tokenizer()
    (folder / "vocab.json").write_text(
        json.dumps(dict(vocab), ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8"
    )


def _talker_state_dict(config: dict[str, Any]) -> dict[str, Any]:
    """The talker with transformers' init (N(0, 0.02), fp16-safe) and EOS made unreachable."""
    with testing.banner_to_stderr():
        from qwen_tts.core.models import Qwen3TTSConfig, Qwen3TTSForConditionalGeneration

    model = Qwen3TTSForConditionalGeneration(Qwen3TTSConfig(**copy.deepcopy(config)))
    _never_stop(model, config["talker_config"]["codec_eos_token_id"])
    return model.state_dict()


def _never_stop(model: Any, eos_id: int) -> None:
    """Zero the codec head's EOS row: its logit is always exactly 0, the median of the others,
    so sampling with top-k (or greedy) never ends a take early (see the module docstring)."""
    import torch

    with torch.no_grad():
        model.talker.codec_head.weight[eos_id].zero_()


def _speech_tokenizer_state_dict(config: dict[str, Any]) -> dict[str, Any]:
    """The 12 Hz speech tokenizer with torch's default init and random codebooks.

    transformers' N(0, 0.02) init leaves the vocoder output near 1e-8 (underflow in fp16);
    ``testing.reset_weights`` gives the layers torch's defaults and the codebooks N(0, 1).
    """
    with testing.banner_to_stderr():
        from qwen_tts.core import Qwen3TTSTokenizerV2Config, Qwen3TTSTokenizerV2Model

    model = Qwen3TTSTokenizerV2Model(Qwen3TTSTokenizerV2Config(**copy.deepcopy(config)))
    testing.reset_weights(model)
    return model.state_dict()


def _save_weights(state_dict: dict[str, Any], path: pathlib.Path, dtype: str) -> None:
    """Write floating tensors in ``dtype`` (integers as they are) as safetensors."""
    import torch
    from safetensors.torch import save_file

    target = getattr(torch, dtype)
    tensors = {
        key: (value.to(target) if value.is_floating_point() else value).contiguous().clone()
        for key, value in state_dict.items()
    }
    save_file(tensors, str(path), metadata={"format": "pt"})


def _write_weights(folder: pathlib.Path, shrink: int, seed: int, dtype: str) -> None:
    """Both model.safetensors files from ``seed``, one model in memory at a time."""
    import torch

    with torch.random.fork_rng(devices=[]), torch.device("cpu"):
        torch.manual_seed(seed)
        state = _talker_state_dict(model_config(shrink))
        _save_weights(state, folder / "model.safetensors", dtype)
        del state
        torch.manual_seed(seed + 1)
        state = _speech_tokenizer_state_dict(speech_tokenizer_config(shrink))
        _save_weights(state, folder / "speech_tokenizer" / "model.safetensors", dtype)


def _check_build_args(dtype: str, shrink: int) -> None:
    """ValueError for an unknown save dtype or a shrink factor below 1."""
    if dtype not in _SAVE_DTYPES:
        raise ValueError(f"dtype {dtype!r}: expected one of {_SAVE_DTYPES}")
    if shrink < 1:
        raise ValueError(f"shrink must be >= 1, got {shrink}")


def build_real_size_checkpoint(
    dest: str | os.PathLike, dtype: str = "bfloat16", seed: int = 0, shrink: int = 1
) -> pathlib.Path:
    """Write a random checkpoint of the real 0.6B CustomVoice architecture at ``dest``.

    Weights are saved in ``dtype`` (``bfloat16``: a 2.15 GB folder); ``from_pretrained``
    casts them to whatever dtype it loads with. ``shrink`` > 1 divides every layer count, width
    and head count (tests only). Built on the CPU into a temp sibling, then renamed onto ``dest``.
    """
    _check_build_args(dtype, shrink)
    dest = pathlib.Path(dest)
    _build(dest, shrink, seed, dtype, publish=testing.replace_folder)
    return dest


def _build(target: pathlib.Path, shrink: int, seed: int, dtype: str, publish: Any) -> None:
    """Write the folder into a temp sibling of ``target``, then ``publish(staging, target)``."""
    staging = testing.temp_sibling(target)
    try:
        _write_text_files(staging, shrink)
        _write_weights(staging, shrink, seed, dtype)
        publish(staging, target)
    finally:
        testing.remove_if_left(staging)


def cache_key(dtype: str, seed: int, shrink: int) -> str:
    """Hash of everything that decides the folder's content."""
    recipe = {
        "builder_version": BUILDER_VERSION,
        "dtype": dtype,
        "seed": seed,
        "shrink": shrink,
        "files": _json_files(shrink),
        "verbatim": {name: (DATA_DIR / name).read_text(encoding="utf-8") for name in _VERBATIM},
        "tokenizer": testing.trained_tokenizer(),
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def _default_cache_dir() -> pathlib.Path:
    """$QWEN3TTS_REAL_CACHE, else ``qwen3tts-real`` in the temp folder (/tmp)."""
    configured = os.environ.get(CACHE_ENV)
    return pathlib.Path(configured or pathlib.Path(tempfile.gettempdir()) / "qwen3tts-real")


def real_size_checkpoint(
    dtype: str = "bfloat16",
    seed: int = 0,
    shrink: int = 1,
    cache_dir: str | os.PathLike | None = None,
) -> pathlib.Path:
    """A cached checkpoint folder, built once (safe when several processes build at once)."""
    _check_build_args(dtype, shrink)
    root = pathlib.Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    name = f"0.6B-CustomVoice-{dtype}-seed{seed}-shrink{shrink}-{cache_key(dtype, seed, shrink)}"
    target = root / name
    if not (target / "speech_tokenizer" / "model.safetensors").is_file():
        _build(target, shrink, seed, dtype, publish=testing.publish_once)
    return target


def folder_bytes(path: pathlib.Path) -> int:
    """Total size of the files under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# --- timing helpers ---------------------------------------------------------------------------


def _sync(device: str) -> None:
    """Wait for queued GPU work (no-op on the CPU)."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def _memory_start(device: str) -> int | None:
    """Reset the peak counter; return the bytes allocated now (the resident weights)."""
    import torch

    if not device.startswith("cuda"):
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    return int(torch.cuda.memory_allocated(device))


def _memory_peak(device: str) -> int | None:
    """Peak bytes allocated since ``_memory_start`` (None on the CPU)."""
    import torch

    return int(torch.cuda.max_memory_allocated(device)) if device.startswith("cuda") else None


Call = Callable[[int, int], list[float]]
"""``call(frames, seed)`` runs one synthesis and returns the frames produced per item."""


def _time(call: Call, frames: int, seed: int, device: str) -> tuple[float, list[float]]:
    """Seconds for one call (GPU work included) and the frames it produced."""
    _sync(device)
    started = time.perf_counter()
    produced = call(frames, seed)
    _sync(device)
    return time.perf_counter() - started, produced


def _run(call: Call, frames: int, repeats: int, device: str) -> dict[str, Any]:
    """One warm-up, ``repeats`` timed calls of ``frames`` frames, then ``repeats`` one-frame
    calls; peak memory over all of them."""
    weights = _memory_start(device)
    call(frames, 0)
    timed = [_time(call, frames, seed, device) for seed in range(1, repeats + 1)]
    one_frame = [_time(call, 1, seed, device)[0] for seed in range(1, repeats + 1)]
    return {
        "seconds": [seconds for seconds, _ in timed],
        "produced": [produced for _, produced in timed],
        "one_frame_s": one_frame,
        "weights_mem_bytes": weights,
        "peak_mem_bytes": _memory_peak(device),
    }


def _figures(run: dict[str, Any], frames: int, **facts: Any) -> dict[str, Any]:
    """The reported figures of one configuration from its raw run."""
    wall = Timing.of(run["seconds"])
    produced = run["produced"]
    items = len(produced[0])
    audio_s = sum(map(sum, produced)) / len(produced) * SAMPLES_PER_FRAME / SAMPLE_RATE
    return {
        **facts,
        "items_per_call": items,
        "frames": frames,
        "frames_produced": produced,
        "frames_ok": all(f == frames for call in produced for f in call),
        "audio_s": audio_s,
        "wall_s": wall.as_dict(),
        "audio_s_per_wall_s": {
            "median": audio_s / wall.median,
            "min": audio_s / wall.max,
            "max": audio_s / wall.min,
        },
        "time_to_first_audio_s": wall.as_dict(),
        "one_frame_call_s": Timing.of(run["one_frame_s"]).as_dict(),
        "weights_mem_bytes": run["weights_mem_bytes"],
        "peak_mem_bytes": run["peak_mem_bytes"],
    }


def _frames(samples: int) -> float:
    """Frames in ``samples`` samples (1920 per frame at 24 kHz); fractional if not whole."""
    whole, rest = divmod(samples, SAMPLES_PER_FRAME)
    return whole if rest == 0 else samples / SAMPLES_PER_FRAME


def _frames_of(wavs: list[Any]) -> list[float]:
    """Frames per waveform."""
    return [_frames(len(wav)) for wav in wavs]


def sampling(frames: int) -> dict[str, Any]:
    """The plugin's sampling kwargs for its default GenerationParams, for ``frames`` frames."""
    from hookspecs import GenerationParams
    from qwen3tts_plugin.generation import sampling_kwargs

    return sampling_kwargs(GenerationParams(max_new_tokens=frames + 1, allow_cut=True))


def _direct_call(model: Any, texts: list[str]) -> Call:
    """A raw ``generate_custom_voice`` call on ``texts`` (one text, or a batch as a list)."""
    import torch

    def call(frames: int, seed: int) -> list[float]:
        torch.manual_seed(seed)
        wavs, _rate = model.generate_custom_voice(
            text=texts if len(texts) > 1 else texts[0],
            speaker=SPEAKER,
            language=LANGUAGE,
            **sampling(frames),
        )
        return _frames_of(wavs)

    return call


# --- the three configurations -----------------------------------------------------------------


OFFICIAL = "(a) official qwen_tts"
POLICY = "(b) plugin policy"
BATCH = f"(c) plugin batch of {len(SEGMENTS)}"
GRAPHS = "(d) plugin cuda_graphs"


def _failed(label: str, exc: BaseException) -> dict[str, Any]:
    """The record of a configuration that failed (its traceback goes to stderr)."""
    traceback.print_exception(exc, file=sys.stderr)
    return {"label": label, "error": f"{type(exc).__name__}: {exc}"}


def _guard(label: str, measure_one: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one configuration; a failure is recorded so that the others still run."""
    try:
        return measure_one()
    except Exception as exc:  # noqa: BLE001 - any failure is reported in the results, not lost
        return _failed(label, exc)


def _official(path: pathlib.Path, device: str, frames: int, repeats: int, dtype: str) -> dict:
    """(a) qwen_tts loaded as the seed's host did (fp16 + sdpa), called directly."""
    import torch

    from qwen3tts_plugin.loading import free_device_memory, import_qwen_tts

    model_cls = import_qwen_tts()
    _sync(device)
    started = time.perf_counter()
    model = model_cls.from_pretrained(
        str(path), device_map=device, dtype=getattr(torch, dtype), attn_implementation="sdpa"
    )
    _sync(device)
    load_s = time.perf_counter() - started
    try:
        run = _run(_direct_call(model, [TEXT]), frames, repeats, device)
    finally:
        del model
        free_device_memory()
    return _figures(
        run,
        frames,
        label=OFFICIAL,
        how="Qwen3TTSModel.from_pretrained + generate_custom_voice (non-streaming)",
        dtype=dtype,
        attn="sdpa",
        load_s=load_s,
    )


def _hook_call(pm: Any, config: Any, folder: pathlib.Path, extra_frame: int = 1) -> Call:
    """One ``pm.hook.tts_synthesize`` call (generation and the WAV write). ``extra_frame``:
    qwen_tts's loop returns max_new_tokens - 1 frames of a text that never ends, the CUDA
    graphs max_new_tokens."""
    from hookspecs import GenerationParams, SynthesisRequest, Voice

    def call(frames: int, seed: int) -> list[float]:
        request = SynthesisRequest(
            config=config,
            text=TEXT,
            out_path=folder / "hook.wav",
            voice=Voice(speaker=SPEAKER, language=LANGUAGE),
            generation=GenerationParams(
                max_new_tokens=frames + extra_frame, seed=seed, allow_cut=True
            ),
        )
        result = pm.hook.tts_synthesize(request=request)
        return [_frames(round(result.duration_s * SAMPLE_RATE))]

    return call


def _batch_call(pm: Any, config: Any, folder: pathlib.Path, batch_size: int) -> Call:
    """The eight segments through one ``pm.hook.tts_synthesize_batch`` call, ``batch_size``
    texts per generate call (unseeded, so they may share calls)."""
    from hookspecs import EngineConfig, GenerationParams, SynthesisRequest, Voice

    config = EngineConfig(
        provider=config.provider, extra_params={**config.extra_params, "BatchSize": batch_size}
    )

    def call(frames: int, seed: int) -> list[float]:
        requests = [
            SynthesisRequest(
                config=config,
                text=text,
                out_path=folder / f"segment{index}.wav",
                voice=Voice(speaker=SPEAKER, language=LANGUAGE),
                generation=GenerationParams(max_new_tokens=frames + 1, allow_cut=True),
            )
            for index, text in enumerate(SEGMENTS)
        ]
        items = pm.hook.tts_synthesize_batch(requests=requests)
        failed = [item.error for item in items if item.error is not None]
        if failed:
            raise RuntimeError(f"{len(failed)} segments failed: {failed[0]}")
        return [_frames(round(item.result.duration_s * SAMPLE_RATE)) for item in items]

    return call


def _policy_and_batch(path: pathlib.Path, device: str, frames: int, repeats: int) -> list[dict]:
    """(b) the plugin's hooks with Device=auto, one text per call, then (c) the batch hook with
    the eight segments in one generate call, on the same resident model."""
    from hookspecs import EngineConfig, plugin_manager
    from qwen3tts_plugin.hooks import get_engine

    pm = plugin_manager()
    config = EngineConfig(
        provider="qwen3_tts",
        extra_params={"ModelPath": str(path), "Device": "auto", "Backend": "qwen_tts"},
    )
    folder = pathlib.Path(tempfile.mkdtemp(prefix="bench-gpu-real-"))
    engine = get_engine()
    try:
        loaded = pm.hook.tts_load(config=config)
        facts = {"dtype": loaded.dtype, "attn": loaded.attn_implementation}
        hook = _hook_call(pm, config, folder)

        def policy_figures() -> dict[str, Any]:
            how = "pm.hook.tts_load + tts_synthesize, Device=auto (includes the WAV write)"
            run = _run(hook, frames, repeats, device)
            return _figures(
                run,
                frames,
                label=POLICY,
                how=how,
                device=loaded.device,
                load_s=loaded.load_s,
                **facts,
            )

        def batch_figures() -> dict[str, Any]:
            size = len(SEGMENTS)
            how = (
                f"pm.hook.tts_synthesize_batch({size} segments), BatchSize={size}: one generate "
                "call (includes the WAV writes)"
            )
            run = _run(_batch_call(pm, config, folder, size), frames, repeats, device)
            return _figures(run, frames, label=BATCH, how=how, batch_size=size, **facts)

        return [_guard(POLICY, policy_figures), _guard(BATCH, batch_figures)]
    finally:
        engine.release()
        shutil.rmtree(folder, ignore_errors=True)


def _graphs(path: pathlib.Path, device: str, frames: int, repeats: int) -> dict[str, Any]:
    """(d) the plugin's hooks with Backend=cuda_graphs, one text per call; its load time
    includes the graph capture. Skipped where the graphs cannot run."""
    from hookspecs import EngineConfig, plugin_manager
    from qwen3tts_plugin.devices import cuda_graphs_available
    from qwen3tts_plugin.hooks import get_engine

    if not device.startswith("cuda"):
        return {"label": GRAPHS, "skipped": "CUDA graphs need a CUDA device"}
    if not cuda_graphs_available():
        return {"label": GRAPHS, "skipped": "faster-qwen3-tts 0.3.x not installed"}
    pm = plugin_manager()
    config = EngineConfig(
        provider="qwen3_tts",
        extra_params={"ModelPath": str(path), "Device": device, "Backend": "cuda_graphs"},
    )
    folder = pathlib.Path(tempfile.mkdtemp(prefix="bench-gpu-graphs-"))
    try:
        _sync(device)
        started = time.perf_counter()
        loaded = pm.hook.tts_load(config=config)
        _sync(device)
        load_s = time.perf_counter() - started
        run = _run(_hook_call(pm, config, folder, extra_frame=0), frames, repeats, device)
        return _figures(
            run,
            frames,
            label=GRAPHS,
            how="pm.hook.tts_synthesize, Backend=cuda_graphs (faster-qwen3-tts 0.3.2)",
            device=loaded.device,
            dtype=loaded.dtype,
            attn=loaded.attn_implementation,
            load_s=load_s,
            cold_start_includes="graph capture",
        )
    finally:
        get_engine().release()
        shutil.rmtree(folder, ignore_errors=True)


def run_benchmark(
    path: pathlib.Path,
    device: str = "cuda:0",
    frames: int = QUICK["frames"],
    repeats: int = QUICK["repeats"],
    official_dtype: str = "float16",
) -> dict[str, Any]:
    """Time (a), (b), (c) on ``path``; every figure, without the table rows."""
    official = _guard(OFFICIAL, lambda: _official(path, device, frames, repeats, official_dtype))
    try:
        policy, batch = _policy_and_batch(path, device, frames, repeats)
    except Exception as exc:  # noqa: BLE001 - a failed load is reported like a failed run
        policy, batch = _failed(POLICY, exc), _failed(BATCH, exc)
    graphs = _guard(GRAPHS, lambda: _graphs(path, device, frames, repeats))
    return {
        **_machine(device),
        "model": _describe(path),
        "device": device,
        "frames": frames,
        "repeats": repeats,
        "text": TEXT,
        "segments": list(SEGMENTS),
        "speaker": SPEAKER,
        "language": LANGUAGE,
        "configs": {"official": official, "policy": policy, "batch": batch, "graphs": graphs},
        "batch_speedup": _speedup(batch, policy),
        "graphs_speedup": _speedup(graphs, official),
        "eos_suppression": "the random checkpoint's codec_head row for codec EOS (2150) is zero, "
        "so EOS's logit is exactly 0, the median of the other candidates: top-k 50 sampling "
        "never draws it; max_new_tokens = frames + 1 gives exactly `frames` frames (qwen_tts "
        "0.1.1 hard-codes min_new_tokens/suppress_tokens and drops other generate kwargs)",
        "time_to_first_audio": "qwen_tts 0.1.1 has no streaming output (non_streaming_mode only "
        "changes how the text is fed): the first audio arrives with the last, so time to first "
        "audio = the call's latency; one_frame_call_s is a one-frame call, a floor for what a "
        "streaming path with the same kernels could reach",
    }


# --- the entry point ------------------------------------------------------------------------


def _speedup(batch: dict[str, Any], one_by_one: dict[str, Any]) -> float | None:
    """Audio per wall second of one configuration over another, e.g. (c) over (b): what
    sharing one generate call gains."""
    if any("error" in cfg or "skipped" in cfg for cfg in (batch, one_by_one)):
        return None
    return batch["audio_s_per_wall_s"]["median"] / one_by_one["audio_s_per_wall_s"]["median"]


def _gib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**30:.2f} GiB"


_SHORT_DTYPES = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}


def _row(cfg: dict[str, Any]) -> str:
    """One table line: throughput, latency, one-frame latency, memory."""
    if "error" in cfg:
        return f"{cfg['label']:<24} FAILED: {cfg['error']}"
    if "skipped" in cfg:
        return f"{cfg['label']:<24} skipped: {cfg['skipped']}"
    speed = cfg["audio_s_per_wall_s"]
    spread = f"{speed['median']:.3f}x ({speed['min']:.3f}-{speed['max']:.3f})"
    return (
        f"{cfg['label']:<24} {_SHORT_DTYPES.get(cfg['dtype'], cfg['dtype']):<5}"
        f"{cfg['attn']:<17} {spread:<22} {cfg['wall_s']['median']:7.2f} s"
        f" {cfg['one_frame_call_s']['median']:6.3f} s {_gib(cfg['peak_mem_bytes']):>9}"
    )


def _produced(cfg: dict[str, Any]) -> str:
    """The distinct frame counts a configuration produced, e.g. ``8x48``."""
    if "error" in cfg:
        return "failed"
    if "skipped" in cfg:
        return "skipped"
    counts = sorted({f for call in cfg["frames_produced"] for f in call})
    items = cfg["items_per_call"]
    return ("" if items == 1 else f"{items}x") + "/".join(map(str, counts))


def rows(result: dict[str, Any]) -> list[str]:
    """Human-readable lines for the benchmark table."""
    frames, configs = result["frames"], result["configs"]
    ok = all(cfg.get("frames_ok") for cfg in configs.values() if "skipped" not in cfg)
    produced = ", ".join(f"{name} {_produced(cfg)}" for name, cfg in configs.items())
    model = result["model"]
    return [
        f"random-weight 0.6B CustomVoice (talker: {model['talker_layers']} layers x "
        f"{model['talker_hidden']}, {model['weights_gib']:.2f} GiB on disk) on {result['card']}, "
        f"torch {result['torch']}",
        f"{frames} frames ({frames / 12.5:.2f} s of audio) per segment; median (min-max) of "
        f"{result['repeats']} runs after 1 warm-up",
        f"{'config':<24} {'type':<5}{'attn':<17} {'audio s per wall s':<22}"
        f" {'TTFA':>9} {'1 frame':>8} {'peak mem':>9}",
        *(_row(cfg) for cfg in configs.values()),
        f"frames as asked: {'yes' if ok else 'NO'} ({produced}); EOS never sampled (zeroed row)",
        "TTFA = the whole call: qwen_tts 0.1.1 cannot stream audio out; 1 frame = one-frame call",
        "(c) counts all 8 segments' audio in one generate call; over (b), one text a call: "
        + (
            "failed"
            if result.get("batch_speedup") is None
            else f"batch speed-up {result['batch_speedup']:.2f}x"
        ),
        "(d) over (a), the seed's path: "
        + (
            "n/a"
            if result.get("graphs_speedup") is None
            else f"{result['graphs_speedup']:.2f}x (load includes the graph capture)"
        ),
    ]


def measure(quick: bool) -> dict[str, Any]:
    """Build (or reuse) the real-size checkpoint and time (a), (b), (c) on cuda:0."""
    plan = QUICK if quick else FULL
    started = time.perf_counter()
    path = real_size_checkpoint()
    checkpoint_s = time.perf_counter() - started
    result = run_benchmark(path, "cuda:0", plan["frames"], plan["repeats"])
    result["checkpoint_ready_s"] = checkpoint_s
    result["wall_s"] = time.perf_counter() - started
    result["rows"] = rows(result)
    return result


def _describe(path: pathlib.Path) -> dict[str, Any]:
    """The checkpoint's talker size and bytes on disk (a shrunken test build shows as such)."""
    config = path / "config.json"
    talker = (
        json.loads(config.read_text(encoding="utf-8"))["talker_config"] if config.is_file() else {}
    )
    return {
        "path": str(path),
        "talker_layers": talker.get("num_hidden_layers"),
        "talker_hidden": talker.get("hidden_size"),
        "weights_gib": folder_bytes(path) / 2**30,
    }


def _machine(device: str) -> dict[str, Any]:
    """Card, torch, CUDA and whether flash_attn imports."""
    import torch

    from qwen3tts_plugin.devices import flash_attn_available

    cuda = device.startswith("cuda")
    return {
        "card": torch.cuda.get_device_name(device) if cuda else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "flash_attn_available": flash_attn_available(),
    }


def check(path: pathlib.Path, device: str, dtype: str, frames: int) -> dict[str, Any]:
    """Load ``path`` with unmodified qwen_tts and generate ``frames`` frames once."""
    import numpy as np
    import torch

    from qwen3tts_plugin.loading import import_qwen_tts

    started = time.perf_counter()
    model = import_qwen_tts().from_pretrained(
        str(path), device_map=device, dtype=getattr(torch, dtype)
    )
    load_s = time.perf_counter() - started
    torch.manual_seed(0)
    _sync(device)
    started = time.perf_counter()
    wavs, rate = model.generate_custom_voice(
        text=TEXT, speaker=SPEAKER, language=LANGUAGE, **sampling(frames)
    )
    _sync(device)
    seconds = time.perf_counter() - started
    wav = np.asarray(wavs[0])
    return {
        "path": str(path),
        "bytes": folder_bytes(path),
        "load_s": load_s,
        "generate_s": seconds,
        "frames_asked": frames,
        "frames_produced": _frames_of(wavs),
        "sample_rate": rate,
        "finite": bool(np.isfinite(wav).all()),
        "peak_abs": float(np.abs(wav).max()),
        "rms": float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.gpu_real [--shrink N] [--device D] [--dtype T] [--frames N]``:
    build (or reuse) the checkpoint, load it, generate once, print JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_real")
    parser.add_argument("--shrink", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", help="the dtype to load with")
    parser.add_argument("--frames", type=int, default=2)
    args = parser.parse_args(argv)
    with contextlib.redirect_stdout(sys.stderr):  # banners and log lines; stdout is the JSON
        started = time.perf_counter()
        path = real_size_checkpoint(shrink=args.shrink)
        built_s = time.perf_counter() - started
        report = {"checkpoint_s": built_s, **check(path, args.device, args.dtype, args.frames)}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
