"""benchmarks/real_checkpoint.py and gpu_real.py: the published configs carried, the real-size
build (shrunken here so the CPU checks take seconds), fixed-length generation, and on a CUDA
machine the measurement."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from benchmarks import gpu_real, real_checkpoint
from qwen3tts_plugin.backends.qwen_tts.checkpoints.tokenizer import (
    special_token_ids,
    trained_tokenizer,
)

PUBLISHED_SHA256 = {
    "config.json": "81aca2b6fac304944d8acf345272d8a9a727d5fc2e2e66b222ab4729340c7455",
    "generation_config.json": "f1b90b4513f3b34c62851049e2492d7b4c5940daf1276f89c82b8ef04127f3aa",
    "preprocessor_config.json": "efdde1022ea9d76928bf7a9cd53139138f5ba2e466e837f08f6105ab1af1c119",
    "tokenizer_config.json": "dc3c31c3bdaedd5016382bb3cbe07323026775ad51f5a4fb564505992ae4a670",
    "speech_tokenizer/config.json": (
        "ee65bb901c876664ab8707c487157aa1a6ee57c65969b28fb5ec9dc211e68167"
    ),
    "speech_tokenizer/configuration.json": (
        "6bc26d64eb5024b4d1dab5a52371958b429256d6c9d59787f1f5294a54e0cebd"
    ),
    "speech_tokenizer/preprocessor_config.json": (
        "fcb3805e597e786d4067706e602f6688524640f8d3396790e2e09b5942fcbdfb"
    ),
}
"""sha256 of the published files (../shared/data/qwen3-tts-configs/SOURCES.md)."""

SHRINK = 16
FRAMES = 5
CODEC_EOS = 2150


@pytest.fixture
def one_thread():
    """One torch thread: the CPU machines running the suite are small and busy."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def shrunk(tmp_path_factory):
    """A shrunken build: widths, layer and head counts / 16; real codec vocabulary and ids."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        dest = tmp_path_factory.mktemp("real") / "shrunk"
        return real_checkpoint.build_real_size_checkpoint(dest, shrink=SHRINK)
    finally:
        torch.set_num_threads(before)


def test_published_configs_are_carried_byte_for_byte():
    for relative, digest in PUBLISHED_SHA256.items():
        data = (real_checkpoint.DATA_DIR / relative).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, relative


def test_real_sizes_with_the_local_tokenizers_special_ids():
    config = real_checkpoint.model_config()
    talker = config["talker_config"]
    predictor = talker["code_predictor_config"]
    assert (talker["num_hidden_layers"], talker["hidden_size"]) == (28, 1024)
    assert (talker["num_attention_heads"], talker["num_key_value_heads"]) == (16, 8)
    assert (talker["head_dim"], talker["vocab_size"], talker["text_vocab_size"]) == (
        128,
        3072,
        151936,
    )
    assert (predictor["num_hidden_layers"], predictor["hidden_size"]) == (5, 1024)
    assert (predictor["vocab_size"], talker["num_code_groups"]) == (2048, 16)
    assert talker["codec_eos_token_id"] == CODEC_EOS
    decoder = real_checkpoint.speech_tokenizer_config()["decoder_config"]
    assert (decoder["num_hidden_layers"], decoder["hidden_size"]) == (8, 512)
    ids = special_token_ids()
    assert config["im_start_token_id"] == ids["<|im_start|>"]
    assert config["im_end_token_id"] == ids["<|im_end|>"]
    assert config["tts_bos_token_id"] == ids["<tts_text_bos>"]
    assert config["tts_eos_token_id"] == ids["<tts_text_eod>"]
    assert config["tts_pad_token_id"] == ids["<tts_pad>"]
    assert config["assistant_token_id"] == dict(trained_tokenizer()[0])["assistant"]
    published = json.loads((real_checkpoint.DATA_DIR / "config.json").read_text())
    assert config["talker_config"] == published["talker_config"]


def test_shrunken_build_generates_exactly_the_frames_asked(shrunk, one_thread):
    import numpy as np
    import torch

    from qwen3tts_plugin.backends.qwen_tts.runtime import import_qwen_tts

    assert json.loads((shrunk / "config.json").read_text())["talker_config"]["vocab_size"] == 3072
    model = import_qwen_tts().from_pretrained(str(shrunk), device_map="cpu", dtype=torch.float32)
    assert not model.model.talker.codec_head.weight[CODEC_EOS].any()
    for seed in (0, 1):
        torch.manual_seed(seed)
        wavs, rate = model.generate_custom_voice(
            text=gpu_real.SEGMENTS[:2],
            speaker=gpu_real.SPEAKER,
            language=gpu_real.LANGUAGE,
            **gpu_real.sampling(FRAMES),
        )
        assert rate == 24_000
        assert [len(w) for w in wavs] == [FRAMES * 1920] * 2
        assert all(np.isfinite(w).all() and np.abs(w).max() > 0 for w in wavs)


def test_run_benchmark_measures_three_configurations_on_cpu(shrunk, one_thread):
    result = gpu_real.run_benchmark(shrunk, device="cpu", frames=3, repeats=1)
    configs = result["configs"]
    assert list(configs) == ["official", "policy", "batch", "graphs"]
    assert configs.pop("graphs")["skipped"] == "CUDA graphs need a CUDA device"
    for cfg in configs.values():
        assert "error" not in cfg, cfg
        assert cfg["frames_ok"], cfg["frames_produced"]
        assert cfg["audio_s_per_wall_s"]["median"] > 0
        assert cfg["time_to_first_audio_s"] == cfg["wall_s"]
        assert cfg["peak_mem_bytes"] is None  # only measured on CUDA
    assert configs["official"]["dtype"] == "float16"
    assert (configs["policy"]["dtype"], configs["policy"]["device"]) == ("float32", "cpu")
    assert configs["batch"]["items_per_call"] == len(gpu_real.SEGMENTS) == 8
    assert configs["batch"]["audio_s"] == pytest.approx(8 * 3 * 0.08)
    assert configs["batch"]["batch_size"] == 8
    assert result["batch_speedup"] == pytest.approx(
        configs["batch"]["audio_s_per_wall_s"]["median"]
        / configs["policy"]["audio_s_per_wall_s"]["median"]
    )
    json.dumps(result)  # the benchmark run writes every figure as JSON
    lines = gpu_real.rows(result)
    assert all(isinstance(line, str) for line in lines)
    assert "frames as asked: yes" in "\n".join(lines)


def test_a_failing_configuration_is_reported_not_raised(tmp_path, one_thread):
    result = gpu_real.run_benchmark(tmp_path, device="cpu", frames=2, repeats=1)
    configs = result["configs"]
    assert "skipped" in configs.pop("graphs")
    assert all("error" in cfg for cfg in configs.values()), configs
    assert "model_invalid" in configs["policy"]["error"]
    assert sum("FAILED" in line for line in gpu_real.rows(result)) == 3


def test_build_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        real_checkpoint.build_real_size_checkpoint(tmp_path / "x", dtype="int8")
    with pytest.raises(ValueError, match="shrink"):
        real_checkpoint.build_real_size_checkpoint(tmp_path / "x", shrink=0)


@pytest.mark.gpu
def test_measure_quick_on_cuda():
    import torch

    result = gpu_real.measure(quick=True)
    write_figures("gpu_real.json", result)
    print("\n".join(result["rows"]))
    assert result["card"] == torch.cuda.get_device_name(0)
    configs = {k: v for k, v in result["configs"].items() if "skipped" not in v}
    for cfg in configs.values():
        assert "error" not in cfg, cfg
        assert cfg["frames_ok"], cfg["frames_produced"]
        assert cfg["peak_mem_bytes"] >= cfg["weights_mem_bytes"] > 0
        assert cfg["audio_s_per_wall_s"]["median"] > 0
    assert (configs["official"]["dtype"], configs["official"]["attn"]) == ("float16", "sdpa")
    policy = configs["policy"]
    expected_attn = "flash_attention_2" if result["flash_attn_available"] else "sdpa"
    if torch.cuda.get_device_capability(0) >= (8, 0):
        assert (policy["dtype"], policy["attn"]) == ("bfloat16", expected_attn)
    assert policy["device"] == "cuda:0"
    assert result["batch_speedup"] > 1  # one generate call for 8 segments beats eight


def write_figures(name: str, result) -> None:
    """Keep a figures call's result in $GPU_CHECK_OUT (the device tool brings it back)."""
    out = os.environ.get("GPU_CHECK_OUT")
    if out:
        with open(os.path.join(out, name), "w") as f:
            json.dump(result, f, indent=2)


SWEEP = {"stepper": (1, 8, 16, 32), "qwen_tts": (8, 16, 32)}
"""What decides BatchSize=auto and Backend=auto for batches on CUDA: our loop from one slot to
32, qwen_tts's static batches at the sizes where they compete (one text a call is measured by
``test_measure_quick_on_cuda``)."""


@pytest.mark.gpu
def test_batch_size_sweep_on_cuda():
    """Texts per generate call on this card, each backend named: 32 segments of 12 frames on
    the real-size model, ``SWEEP``'s sizes."""
    from benchmarks import batch_sizes

    results = {
        backend: batch_sizes.run(
            real_checkpoint.real_size_checkpoint(),
            texts=32,
            frames=12,
            sizes=sizes,
            device="cuda:0",
            backend=backend,
        )
        for backend, sizes in SWEEP.items()
    }
    write_figures("batch_sizes.json", results)
    for result in results.values():
        print("\n".join(batch_sizes.rows(result)))
        assert (result["device"], result["backend"]) == ("cuda:0", result["backend"])
    assert results["stepper"]["speedup"][16] > 1


@pytest.mark.gpu
def test_first_streamed_chunk_on_cuda(tmp_path):
    """The stepper streaming one real-size text alone (48 frames, greedy) beside the same
    request whole: the time to its first chunk, to its end, and the whole request's."""
    from benchmarks import streaming
    from hookspecs import plugin_manager

    path = real_checkpoint.real_size_checkpoint()
    values = {"do_sample": False, "max_new_tokens": streaming.REAL_FRAMES + 1, "allow_cut": True}

    def make(name):
        return streaming.request(path, tmp_path / f"{name}.wav", device="cuda:0", **values)

    result = streaming.side_by_side(plugin_manager(), make, repeats=2)
    write_figures("streaming.json", result)
    print(result)
    assert result["first_chunk_s"] < result["whole_s"]
