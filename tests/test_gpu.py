"""GPU checks: only a CUDA machine can show these. Skipped where CUDA is not usable.

Run on a GPU machine with ``scripts/gpu_check.sh OUTDIR``; each check records its figures in
``$GPU_CHECK_OUT/gpu_checks.json`` when that variable is set.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from hookspecs import EngineConfig, GenerationParams, SynthesisRequest, TtsError, Voice

pytestmark = pytest.mark.gpu

RECORDS: list[dict] = []


@pytest.fixture(scope="module", autouse=True)
def _write_records():
    yield
    out = os.environ.get("GPU_CHECK_OUT")
    if out:
        import torch

        report = {
            "card": torch.cuda.get_device_name(0),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "checks": RECORDS,
        }
        with open(os.path.join(out, "gpu_checks.json"), "w") as f:
            json.dump(report, f, indent=2)


def record(**fields):
    RECORDS.append(fields)


def config_for(path, **extra):
    """A config for ``path``; Backend=qwen_tts unless given: only the tests about a backend
    load another (each faster-qwen3-tts load captures graphs and builds 4096 masks)."""
    params = {"ModelPath": str(path), "Backend": "qwen_tts", **extra}
    return EngineConfig(provider="qwen3_tts", extra_params=params)


@pytest.mark.parametrize("device", ["auto", "cuda:0"])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_loads_on_cuda_with_every_component_there(pm, engine, tiny, device, precision):
    import torch

    from qwen3tts_plugin.backends.qwen_tts.placement import components

    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("card has no bf16")
    started = time.perf_counter()
    result = pm.hook.tts_load(
        config=config_for(tiny["custom_voice"], Device=device, Precision=precision)
    )
    seconds = time.perf_counter() - started
    assert result.device == "cuda:0"
    assert result.device_source == ("detected" if device == "auto" else "config")
    assert result.dtype == {"bf16": "bfloat16", "fp16": "float16"}[precision]
    model = engine.resident_backend().model
    for name, module in components(model).items():
        for tensor in [*module.parameters(), *module.buffers()]:
            assert tensor.device == torch.device("cuda:0"), name
    assert model.device == torch.device("cuda:0")
    assert model.model.speech_tokenizer.device == torch.device("cuda:0")
    codec = components(model)["speech_tokenizer.model"]
    assert result.codec_dtype == "float32"
    assert {p.dtype for p in codec.parameters()} == {torch.float32}  # never half: NaN, silence
    record(
        check="load",
        device=device,
        precision=precision,
        seconds=round(seconds, 3),
        dtype=result.dtype,
        attn=result.attn_implementation,
        backend=result.backend,
    )


def test_cuda_graphs_backend_loads_captures_and_speaks(pm, tiny, tmp_path):
    import numpy as np
    import soundfile as sf

    from qwen3tts_plugin.devices import cuda_graphs_facts

    if not cuda_graphs_facts()["available"]:
        pytest.skip("faster-qwen3-tts 0.3.x not installed (pip install qwen3tts-plugin[fast])")
    config = config_for(tiny["custom_voice"], Device="cuda:0", Backend="cuda_graphs")
    started = time.perf_counter()
    loaded = pm.hook.tts_load(config=config)
    load_s = time.perf_counter() - started
    assert (loaded.backend, loaded.codec_dtype) == ("cuda_graphs", "float32")
    out = tmp_path / "graphs.wav"
    started = time.perf_counter()
    result = pm.hook.tts_synthesize(
        request=SynthesisRequest(
            config=config,
            text="Hello world.",
            out_path=out,
            generation=GenerationParams(max_new_tokens=24, seed=1, allow_cut=True),
        )
    )
    first_call_s = time.perf_counter() - started  # the mask table was built at load
    audio, _ = sf.read(str(out))
    assert result.backend == "cuda_graphs" and np.isfinite(audio).all() and audio.size
    with pytest.raises(TtsError, match="invalid_settings"):  # the graphs cannot honour greedy
        pm.hook.tts_synthesize(
            request=SynthesisRequest(
                config=config,
                text="Hello world.",
                out_path=tmp_path / "greedy.wav",
                generation=GenerationParams(do_sample=False, max_new_tokens=24, allow_cut=True),
            )
        )
    record(
        check="cuda_graphs",
        load_s=round(load_s, 3),
        first_call_s=round(first_call_s, 3),
        rtf=round(result.rtf, 3),
    )


def test_auto_policy_on_this_card(pm, tiny):
    """Device, precision and attention detected (loaded with Backend=qwen_tts); the backend
    auto would choose is decided without loading it."""
    import torch

    from qwen3tts_plugin.devices import acceleration_status, cuda_graphs_facts, decide
    from qwen3tts_plugin.settings import parse_settings

    result = pm.hook.tts_load(config=config_for(tiny["custom_voice"]))
    major, _ = torch.cuda.get_device_capability(0)
    assert result.dtype == ("bfloat16" if major >= 8 else "float16")
    plan = decide(parse_settings({"ModelPath": str(tiny["custom_voice"])}), acceleration_status())
    assert plan.backend == ("cuda_graphs" if cuda_graphs_facts()["available"] else "qwen_tts")
    record(
        check="auto_policy",
        dtype=result.dtype,
        attn=result.attn_implementation,
        auto_backend=plan.backend,
        capability=list(torch.cuda.get_device_capability(0)),
    )


@pytest.mark.parametrize(
    ("backend", "precision"), [("qwen_tts", "auto"), ("qwen_tts", "fp16"), ("stepper", "auto")]
)
def test_three_modes_synthesise_on_cuda(pm, tiny, tmp_path, ref_wav, backend, precision):
    """Every voice mode on the card: qwen_tts's loop in both half precisions, and our loop
    (its steps captured as CUDA graphs) in the card's own."""
    import numpy as np
    import soundfile as sf

    cases = {
        "custom_voice": (tiny["custom_voice"], Voice()),
        "voice_design": (tiny["voice_design"], Voice(mode="voice_design", instruct="Calm.")),
        "voice_clone": (tiny["base"], Voice(mode="voice_clone", ref_audio=ref_wav)),
        "voice_clone_icl": (
            tiny["base"],
            Voice(mode="voice_clone", ref_audio=ref_wav, ref_text="Hello.", x_vector_only=False),
        ),
    }
    for mode, (path, voice) in cases.items():
        out = tmp_path / f"{mode}.wav"
        result = pm.hook.tts_synthesize(
            request=SynthesisRequest(
                config=config_for(path, Device="cuda:0", Precision=precision, Backend=backend),
                text="Hello world.",
                out_path=out,
                voice=voice,
                generation=GenerationParams(max_new_tokens=24, seed=1, allow_cut=True),
            )
        )
        audio, _ = sf.read(str(out))
        assert result.device == "cuda:0" and np.isfinite(audio).all() and audio.size
        assert result.backend == backend
        record(
            check="synthesize",
            mode=mode,
            backend=backend,
            precision=precision,
            dtype=result.dtype,
            audio_s=round(result.duration_s, 3),
            synth_s=round(result.synth_s, 3),
            rtf=round(result.rtf, 3),
        )


def test_missing_device_index_fails_without_fallback(pm, engine, tiny):
    import torch

    device = f"cuda:{torch.cuda.device_count()}"
    with pytest.raises(TtsError) as info:
        pm.hook.tts_load(config=config_for(tiny["custom_voice"], Device=device))
    assert info.value.code == "model_to_device_failed"
    assert not engine.status().loaded
    record(check="missing_index", device=device, detail=info.value.detail[:200])


def test_cpu_on_a_gpu_machine_is_float32_on_cpu_and_refuses_fp16(pm, engine, tiny):
    result = pm.hook.tts_load(config=config_for(tiny["custom_voice"], Device="cpu"))
    assert (result.device, result.dtype) == ("cpu", "float32")
    with pytest.raises(TtsError, match="invalid_settings"):  # half precision on a CPU: refused
        pm.hook.tts_load(config=config_for(tiny["custom_voice"], Device="cpu", Precision="fp16"))
    assert engine.status().device == "cpu"  # the refusal kept the working model
    record(check="cpu_on_gpu_machine", dtype=result.dtype)


def test_flash_attention_2_when_installed(pm, tiny, tmp_path):
    from qwen3tts_plugin.devices import flash_attn_available

    if not flash_attn_available():
        with pytest.raises(TtsError, match="invalid_settings"):
            pm.hook.tts_load(
                config=config_for(
                    tiny["custom_voice"], Device="cuda:0", Attention="flash_attention_2"
                )
            )
        record(check="flash_attention_2", installed=False, refused=True)
        return
    result = pm.hook.tts_synthesize(
        request=SynthesisRequest(
            config=config_for(tiny["custom_voice"], Device="cuda:0", Attention="flash_attention_2"),
            text="Hello.",
            out_path=tmp_path / "fa2.wav",
            generation=GenerationParams(max_new_tokens=24, allow_cut=True),
        )
    )
    assert result.attn_implementation == "flash_attention_2"
    record(check="flash_attention_2", installed=True, rtf=round(result.rtf, 3))


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_a_batch_on_cuda_matches_the_texts_run_alone(pm, tiny, tmp_path, precision):
    """Greedy: the batch hook's shared generate call on the GPU gives each text the audio it
    gets alone. In float32 to one 16-bit step, as on the CPU; in half precision the padded
    call's rounding may differ, so the difference is recorded, not asserted."""
    import numpy as np
    import soundfile as sf

    texts = ["Hi.", "The river bends twice before the mill.", "Nobody remembers.", "Go home."]
    greedy = GenerationParams(do_sample=False, max_new_tokens=24, allow_cut=True)

    def req(i, text):
        return SynthesisRequest(
            config=config_for(tiny["custom_voice"], Device="cuda:0", Precision=precision),
            text=text,
            out_path=tmp_path / f"{i}.wav",
            generation=greedy,
        )

    items = pm.hook.tts_synthesize_batch(requests=[req(f"b{i}", t) for i, t in enumerate(texts)])
    assert all(item.ok and item.result.batch_size == len(texts) for item in items)
    worst = 0
    for i, text in enumerate(texts):
        alone = pm.hook.tts_synthesize(request=req(f"a{i}", text))
        a = sf.read(str(alone.path), dtype="int16")[0].astype(np.int32)
        b = sf.read(str(items[i].result.path), dtype="int16")[0].astype(np.int32)
        assert a.shape == b.shape
        worst = max(worst, int(np.abs(a - b).max()))
    record(check="batch_vs_alone", dtype=items[0].result.dtype, max_lsb_diff=worst)
    if precision == "fp32":
        assert worst <= 1


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_stepper_cuda_graphs_give_the_eager_loops_codes_and_time_both(dtype):
    """Backend=stepper on CUDA replays its steps as CUDA graphs (``graphs.StaticSteps``),
    8 texts through 4 slots (rows padded up as they end, slots refilled, widths growing), on
    the tiny checkpoint that never ends a text: no text fails and each gets its frames, in
    both precisions, and the graphs give exactly the codes of the same fixed shapes run
    eagerly. Against the eager loop (exact shapes, other kernels: sdpa's math kernel without
    a mask, memory-efficient attention with one) the first differing text and frame is
    recorded, not asserted. ``loop_check`` runs the same comparison on the CPU in the suite."""
    import torch
    from loop_check import graphs_against_eager

    from qwen3tts_plugin.testing import tiny_checkpoint_without_eos

    if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        pytest.skip("card has no bf16")
    figures = graphs_against_eager(tiny_checkpoint_without_eos("custom_voice"), "cuda:0", dtype)
    record(check="stepper_cuda_graphs", **figures)
    assert figures["graphs_vs_fixed"] is None, figures["graphs_vs_fixed"]


def test_a_streamed_preview_on_cuda_is_the_files_audio_and_comes_early(pm, tiny, tmp_path):
    """tts_synthesize_stream with Backend=stepper on the card (graphs captured by the loop
    while the consumer decodes windows in its own thread): the file equals the non-streamed
    one; records the time to the first chunk and to the end."""
    import numpy as np
    import soundfile as sf

    def request(out):
        return SynthesisRequest(
            config=config_for(tiny["custom_voice"], Device="cuda:0", Backend="stepper"),
            text="The river bends twice before it reaches the old mill.",
            out_path=out,
            voice=Voice(speaker="vivian"),
            generation=GenerationParams(
                do_sample=True, seed=6, temperature=1.5, max_new_tokens=300
            ),
        )

    whole = pm.hook.tts_synthesize(request=request(tmp_path / "whole.wav"))
    started = time.perf_counter()
    first_s = None
    parts = []
    for chunk in pm.hook.tts_synthesize_stream(request=request(tmp_path / "stream.wav")):
        first_s = first_s if first_s is not None else time.perf_counter() - started
        parts.append(chunk.samples)
    total_s = time.perf_counter() - started
    assert (tmp_path / "stream.wav").read_bytes() == whole.path.read_bytes()
    expected = sf.read(str(whole.path), dtype="int16")[0].astype(float)
    got = np.frombuffer(b"".join(parts), dtype="<i2").astype(float)
    assert got.shape == expected.shape
    record(
        check="stream",
        first_chunk_s=round(first_s, 3),
        stream_s=round(total_s, 3),
        whole_s=round(whole.synth_s, 3),
        chunks=len(parts),
        max_abs_diff_lsb=int(np.abs(expected - got).max()),
    )
