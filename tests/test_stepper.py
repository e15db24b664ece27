"""Our own decode loop (``Backend=stepper``) against qwen_tts's, on the tiny checkpoints.

The reference is qwen_tts's own ``generate_*`` for each text alone (through the ``qwen_tts``
backend's call). Codes are compared exactly, as both hand them to the codec (a recording
wrapper around the loaded codec, which it calls through); waveforms to float rounding (the
stepper pads codes to a bucket length before decoding).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import soundfile as sf
import torch

from hookspecs import EngineConfig, GenerationParams, SynthesisRequest, Voice
from qwen3tts_plugin.backends import Batch
from qwen3tts_plugin.backends.qwen_tts.calls import generate as qwen_tts_generate
from qwen3tts_plugin.backends.stepper.backend import StepperBackend
from qwen3tts_plugin.backends.stepper.codec import CodecDecoder
from qwen3tts_plugin.backends.stepper.loop import Row
from qwen3tts_plugin.backends.stepper.prompts import build_prompts
from qwen3tts_plugin.devices import DevicePlan
from qwen3tts_plugin.voices import VoicePlan, with_reference

TEXTS = [
    "Hi.",
    "The river bends twice before it reaches the old mill.",
    "Go.",
    "Nobody remembers who built it, or why.",
    "Every spring the villagers carry their boats down the stone stairs to the water.",
    "Yes, of course.",
    "In the evening the light falls across the fields.",
    "Twelve.",
]
GREEDY = GenerationParams(do_sample=False, max_new_tokens=40)
SEEDED = GenerationParams(do_sample=True, seed=11, max_new_tokens=24)
PLAN = DevicePlan.named("cpu", "stepper", why="test")


@pytest.fixture(scope="module")
def voices(tiny, ref_wav):
    clone = VoicePlan(mode="voice_clone", language="auto", ref_audio=ref_wav, x_vector_only=True)
    icl = dataclasses.replace(clone, ref_text="Hello there.", x_vector_only=False)
    return {
        "custom_voice": (tiny["custom_voice"], VoicePlan("custom_voice", "auto", "vivian")),
        "custom_voice_dialect": (
            tiny["custom_voice"],
            VoicePlan("custom_voice", "chinese", "eric"),
        ),
        "voice_design": (tiny["voice_design"], VoicePlan("voice_design", "english", None, "Warm.")),
        "voice_clone_xvector": (tiny["base"], with_reference(clone)),
        "voice_clone_icl": (tiny["base"], with_reference(icl)),
    }


@pytest.fixture(scope="module")
def backends(tiny):
    """One stepper backend per tiny checkpoint (its qwen_tts model is the reference too)."""
    loaded = {variant: StepperBackend.load(tiny[variant], PLAN) for variant in tiny}
    yield {str(tiny[variant]): backend for variant, backend in loaded.items()}
    for backend in loaded.values():
        backend.release()


class CodecSpy:
    """Records the codes each codec call decodes (padding rows cut), then calls the codec."""

    def __init__(self, codec) -> None:
        self.codec = codec
        self.codes: list[torch.Tensor] = []

    def decode(self, items):
        for item in items:
            codes = item["audio_codes"]
            self.codes.append(codes[codes[:, 0] > -1].clone())
        return self.codec.decode(items)

    def __getattr__(self, name):
        return getattr(self.codec, name)


class RowCodecSpy:
    """The same for the stepper's own codec decode (one row's codes a call)."""

    def __init__(self, codec, codes: list) -> None:
        self.codec = codec
        self.codes = codes

    def decode(self, codes):
        self.codes.append(codes[codes[:, 0] > -1].clone())
        return self.codec.decode(codes)


@dataclasses.dataclass
class Spoken:
    """What a call gave: waveforms in text order, and the codes decoded (in decoding order)."""

    waveforms: list
    codes: list


def spying(backend, call) -> Spoken:
    model = backend.model.model
    spy = CodecSpy(model.speech_tokenizer)
    model.speech_tokenizer = spy
    own = getattr(backend, "codec", None)  # the stepper decodes through its own codec call
    if own is not None:
        row_spy = RowCodecSpy(own(), spy.codes)
        backend.codec = lambda: row_spy
    try:
        return Spoken(call(), spy.codes)
    finally:
        model.speech_tokenizer = spy.codec
        if own is not None:
            del backend.codec


def reference(backend, texts, voice, params) -> Spoken:
    """qwen_tts's own generate, one text per call."""
    spoken = [
        spying(backend, lambda t=t: qwen_tts_generate(backend.model, PLAN, one(t, voice, params)))
        for t in texts
    ]
    return Spoken([s.waveforms[0] for s in spoken], [s.codes[0] for s in spoken])


def one(text, voice, params):
    return Batch((text,), (voice,), params)


def stepped(backend, texts, voice, params, slots=None) -> Spoken:
    batch = Batch(tuple(texts), (voice,) * len(texts), params, slots=slots)
    return spying(backend, lambda: backend.generate(batch))


def stepped_alone(backend, texts, voice, params) -> Spoken:
    spoken = [stepped(backend, [t], voice, params) for t in texts]
    return Spoken([s.waveforms[0] for s in spoken], [s.codes[0] for s in spoken])


def assert_same(actual: Spoken, expected: Spoken):
    """The same codes (in any decoding order), and each text's audio to float rounding."""
    assert len(actual.waveforms) == len(expected.waveforms)
    key = lambda codes: (codes.shape[0], codes.flatten().tolist())  # noqa: E731
    assert sorted(map(key, actual.codes)) == sorted(map(key, expected.codes))
    for index, (a, e) in enumerate(zip(actual.waveforms, expected.waveforms, strict=True)):
        assert isinstance(a, np.ndarray), f"text {index}: {a}"
        assert a.shape == e.shape, f"text {index}: {a.shape} != {e.shape}"
        assert np.abs(a - e).max() <= 1e-6, f"text {index} differs"


@pytest.mark.parametrize(
    "case",
    [
        "custom_voice",
        "custom_voice_dialect",
        "voice_design",
        "voice_clone_xvector",
        "voice_clone_icl",
    ],
)
def test_greedy_codes_are_qwen_tts_codes_alone_in_a_batch_and_admitted_midway(
    voices, backends, case
):
    path, voice = voices[case]
    backend = backends[str(path)]
    expected = reference(backend, TEXTS, voice, GREEDY)
    if case == "custom_voice":  # random weights: here the texts end at different lengths
        assert len({len(wav) for wav in expected.waveforms}) > 3
    assert_same(stepped_alone(backend, TEXTS, voice, GREEDY), expected)
    assert_same(stepped(backend, TEXTS, voice, GREEDY), expected)
    # 3 slots for 8 texts: each text after the third takes the slot of one that ended
    assert_same(stepped(backend, TEXTS, voice, GREEDY, slots=3), expected)


def test_a_seeded_text_sounds_the_same_alone_in_a_batch_and_admitted_midway(voices, backends):
    path, voice = voices["custom_voice"]
    backend = backends[str(path)]
    alone = stepped_alone(backend, TEXTS, voice, SEEDED)
    assert_same(stepped(backend, TEXTS, voice, SEEDED), alone)
    assert_same(stepped(backend, TEXTS, voice, SEEDED, slots=3), alone)
    # and it is what qwen_tts gives for that text alone with that seed
    assert_same(alone, reference(backend, TEXTS, voice, SEEDED))
    other = stepped(backend, [TEXTS[1]], voice, SEEDED.model_copy(update={"seed": 12}))
    assert not torch.equal(other.codes[0], alone.codes[1]), "another seed must give other codes"


def test_unseeded_sampling_still_varies(voices, backends):
    path, voice = voices["custom_voice"]
    backend = backends[str(path)]
    params = SEEDED.model_copy(update={"seed": None})
    first, second = (stepped(backend, TEXTS[1:2] * 4, voice, params) for _ in range(2))
    assert len({(c.shape[0], tuple(c.flatten().tolist())) for c in first.codes + second.codes}) > 1


def test_a_row_whose_scores_break_fails_alone_and_the_others_finish(voices, backends):
    path, voice = voices["custom_voice"]
    backend = backends[str(path)]
    texts = TEXTS[:4]
    prompts = build_prompts(backend.model, texts, [voice] * 4)
    broken = dataclasses.replace(prompts[1], embeds=prompts[1].embeds * float("nan"))
    rows = [
        Row(prompt, backend.sampler(GREEDY), GREEDY.max_new_tokens)
        for prompt in (prompts[0], broken, *prompts[2:])
    ]
    ended = []
    with torch.inference_mode():
        backend.stepper(2).run(rows, ended.append, slots=2)  # the broken row's slot is reused
    assert {id(row) for row in ended} == {id(row) for row in rows}
    assert rows[1].error is not None and rows[1].error.code == "synthesis_failed"
    assert "non-finite" in rows[1].error.detail
    expected = reference(backend, [texts[i] for i in (0, 2, 3)], voice, GREEDY)
    assert_same(
        Spoken([backend.decode(rows[i]) for i in (0, 2, 3)], [rows[i].codes() for i in (0, 2, 3)]),
        expected,
    )


def test_a_withdrawn_text_leaves_its_slot_at_once_and_the_others_are_unchanged(voices, backends):
    """A caller that stops waiting (Ctrl-C, a closed stream): its text stops being decoded
    mid-way (nothing of it reaches the codec) and the next text takes its slot."""
    path, voice = voices["custom_voice"]
    backend = backends[str(path)]
    texts = TEXTS[:4]
    looked = {"at": 0}

    def withdrawn(index: int) -> bool:
        looked["at"] += index == 1
        return index == 1 and looked["at"] > 3  # gone after its third step

    batch = Batch(tuple(texts), (voice,) * 4, GREEDY, slots=2, withdrawn=withdrawn)
    got = spying(backend, lambda: backend.generate(batch))
    assert got.waveforms[1] is None and looked["at"] > 3
    assert len(got.codes) == 3  # never decoded
    kept = [0, 2, 3]
    assert_same(
        Spoken([got.waveforms[i] for i in kept], got.codes),
        reference(backend, [texts[i] for i in kept], voice, GREEDY),
    )


def test_newcomers_take_every_other_free_slot_so_the_calls_own_texts_still_get_theirs(
    voices, backends
):
    """Texts that arrive during a call jump ahead of its own waiting texts, but only for half
    of the slots that free up: with one slot, own and arrived texts alternate, and a stream
    of arrivals cannot starve the call."""
    path, voice = voices["custom_voice"]
    backend = backends[str(path)]
    params = GREEDY.model_copy(update={"max_new_tokens": 4})
    prompts = build_prompts(backend.model, TEXTS[:1] * 8, [voice] * 8)
    own = [Row(p, backend.sampler(params), 4, index=i) for i, p in enumerate(prompts[:4])]
    arrivals = [Row(p, backend.sampler(params), 4, index=10 + i) for i, p in enumerate(prompts[4:])]
    order = []

    def refill(free: int) -> list[Row]:
        taken, arrivals[:] = arrivals[:free], arrivals[free:]
        return taken

    with torch.inference_mode():
        backend.stepper(1).run(own, lambda row: order.append(row.index), 1, refill)
    assert order == [10, 0, 11, 1, 12, 2, 13, 3]  # a newcomer first, then turn about


# --- through the hooks ------------------------------------------------------------------------


def request(path, out, text, backend, **generation):
    return SynthesisRequest(
        config=EngineConfig(
            provider="qwen3_tts",
            extra_params={"ModelPath": str(path), "Device": "cpu", "Backend": backend},
        ),
        text=text,
        out_path=out,
        voice=Voice(speaker="vivian"),
        generation=GenerationParams(**{"do_sample": False, "max_new_tokens": 40, **generation}),
    )


def test_backend_stepper_speaks_through_the_hooks_and_says_so(pm, tiny, tmp_path):
    requests = [
        request(tiny["custom_voice"], tmp_path / f"{name}-{i}.wav", text, name)
        for name in ("qwen_tts", "stepper")
        for i, text in enumerate(TEXTS[:4])
    ]
    items = pm.hook.tts_synthesize_batch(requests=requests)
    assert all(item.error is None for item in items), [item.error for item in items]
    reference_items, stepper_items = items[:4], items[4:]
    assert {item.result.backend for item in stepper_items} == {"stepper"}
    for ours, theirs in zip(stepper_items, reference_items, strict=True):
        # the same codes; qwen_tts decodes its batch's codes together (padded): one LSB
        a, b = (sf.read(str(item.result.path), dtype="int16")[0] for item in (ours, theirs))
        assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).max() <= 1


@pytest.mark.parametrize(
    ("text", "generation", "code"),
    [
        ("   ", {}, "empty_text"),
        (TEXTS[1], {"max_new_tokens": 3}, "synthesis_truncated"),
    ],
)
def test_refusals_and_cut_pieces_are_the_same_as_qwen_tts(
    pm, tiny, tmp_path, text, generation, code
):
    """Bad input is refused before any model work; a piece that uses its budget is retried at
    twice the budget, then ``synthesis_truncated``, on either backend."""
    outcomes = {}
    for name in ("qwen_tts", "stepper"):
        [item] = pm.hook.tts_synthesize_batch(
            requests=[
                request(tiny["custom_voice"], tmp_path / f"{name}.wav", text, name, **generation)
            ]
        )
        outcomes[name] = item.error.code if item.error else None
    assert outcomes == {"qwen_tts": code, "stepper": code}


def test_seeded_requests_with_their_own_values_share_a_call_and_sound_as_alone(pm, tiny, tmp_path):
    requests = []
    for i, text in enumerate(TEXTS[:4]):
        one = request(tiny["custom_voice"], tmp_path / f"together-{i}.wav", text, "stepper")
        values = {"do_sample": True, "seed": 100 + i, "temperature": 0.7 + 0.1 * i}
        values |= {"max_new_tokens": 12 + 4 * i, "allow_cut": True}
        requests.append(one.model_copy(update={"generation": GenerationParams(**values)}))
    together = pm.hook.tts_synthesize_batch(requests=requests)
    assert [item.result.batch_size for item in together] == [4, 4, 4, 4]
    for i, item in enumerate(together):
        alone = pm.hook.tts_synthesize(
            request=requests[i].model_copy(update={"out_path": tmp_path / f"alone-{i}.wav"})
        )
        assert alone.batch_size == 1
        assert alone.path.read_bytes() == item.result.path.read_bytes()


def test_eager_attention_gives_qwen_tts_codes_too(tiny):
    """With eager attention nothing is causal by itself: the predictor goes through the
    model's own mask building, the talker's masked decode adds its mask."""
    plan = dataclasses.replace(PLAN, attn_implementation="eager")
    backend = StepperBackend.load(tiny["custom_voice"], plan)
    try:
        voice = VoicePlan("custom_voice", "auto", "vivian")
        assert not backend.stepper(3).direct_predictor
        expected = reference(backend, TEXTS, voice, GREEDY)
        assert_same(stepped(backend, TEXTS, voice, GREEDY, slots=3), expected)
    finally:
        backend.release()


def test_greedy_codes_on_the_published_configuration_shrunk(tmp_path_factory):
    """The published 0.6B CustomVoice configuration (its real vocabulary, ids, speakers,
    dialects and interleaved multimodal rope), widths and counts divided by 16."""
    from benchmarks import real_checkpoint

    dest = tmp_path_factory.mktemp("published") / "shrunk"
    backend = StepperBackend.load(real_checkpoint.build_real_size_checkpoint(dest, shrink=16), PLAN)
    try:
        for voice in (
            VoicePlan("custom_voice", "auto", "aiden"),
            VoicePlan("custom_voice", "chinese", "eric"),  # a dialect speaker
        ):
            texts = TEXTS[:4]
            expected = reference(
                backend, texts, voice, GREEDY.model_copy(update={"max_new_tokens": 10})
            )
            got = stepped(
                backend, texts, voice, GREEDY.model_copy(update={"max_new_tokens": 10}), 2
            )
            assert_same(got, expected)
    finally:
        backend.release()


def test_a_call_arriving_during_a_long_run_joins_it_and_returns_first(pm, tiny, tmp_path):
    """Continuous batching across callers: a preview that arrives while a dub's run decodes
    takes the first free slot of that run and returns when its own text is in."""
    import threading
    import time

    def one(name, text, budget):
        req = request(tiny["custom_voice"], tmp_path / f"{name}.wav", text, "stepper")
        generation = GenerationParams(do_sample=False, max_new_tokens=budget, allow_cut=True)
        return req.model_copy(update={"generation": generation})

    pm.hook.tts_load(config=one("warm", "Hi.", 8).config)
    dub = [one(f"dub{i}", TEXTS[i % 8], 64) for i in range(24)]
    preview = one("preview", "Go.", 64)
    alone = pm.hook.tts_synthesize(
        request=preview.model_copy(update={"out_path": tmp_path / "a.wav"})
    )
    finished = {}

    def run_dub():
        pm.hook.tts_synthesize_batch(requests=dub)
        finished["dub"] = time.monotonic()

    thread = threading.Thread(target=run_dub)
    thread.start()
    time.sleep(0.3)  # the dub's run is decoding (24 texts through 8 slots)
    joined = pm.hook.tts_synthesize(request=preview)
    finished["preview"] = time.monotonic()
    thread.join(60)
    assert finished["preview"] < finished["dub"], "the preview waited for the whole run"
    assert joined.batch_size > 1  # it shared the running call
    assert joined.path.read_bytes() == alone.path.read_bytes()


@pytest.mark.parametrize("frames", [3, 64, 333])
def test_the_own_codec_decode_gives_qwen_tts_samples(backends, frames):
    """Kept masks change nothing: through qwen_tts's modules, the same samples as its decode,
    bit for bit, padding and the chunks of long rows (300 frames, 25 of context) included;
    through our convolution stack (the CPU's), the same to float32 rounding."""
    backend = next(iter(backends.values()))
    codec = backend.model.model.speech_tokenizer
    generator = torch.Generator().manual_seed(frames)
    codes = torch.randint(0, 8, (frames, 16), generator=generator)
    padded = torch.cat([codes, torch.full((5, 16), -1)])
    expected = codec.decode([{"audio_codes": padded}])[0][0]
    modules, own = CodecDecoder(codec, own_layers=False), backend.codec()
    assert own.own_layers and not modules.own_layers
    for _ in range(2):  # the second call reads the kept masks
        actual = modules.decode(padded)
        assert actual.shape == expected.shape == (frames * 1920,)
        np.testing.assert_array_equal(actual, expected)
        fast = own.decode(padded)
        assert fast.shape == expected.shape
        np.testing.assert_allclose(fast, expected, rtol=0, atol=1e-6)


def test_fixed_shape_steps_give_qwen_tts_codes_too(voices, backends):
    """The CUDA-graph path's fixed shapes, run eagerly on the CPU (no GPU here to capture
    on): rows padded up to 1/2/4/8 as texts end, the talker attending over the whole cache
    capacity behind a mask, the predictor's fixed cache places; greedy and seeded."""
    path, voice = voices["custom_voice"]
    shared = backends[str(path)]
    backend = StepperBackend(shared.model, PLAN)
    backend.static_steps = True
    expected = reference(shared, TEXTS, voice, GREEDY)
    assert_same(stepped(backend, TEXTS, voice, GREEDY), expected)
    assert_same(stepped(backend, TEXTS, voice, GREEDY, slots=3), expected)
    seeded = stepped_alone(shared, TEXTS, voice, SEEDED)
    assert_same(stepped(backend, TEXTS, voice, SEEDED), seeded)
    assert backend.stepper(8).static is not None


def test_a_codec_laid_out_otherwise_keeps_its_own_modules(backends):
    from qwen3tts_plugin.backends.stepper import codec_layers

    codec = next(iter(backends.values())).model.model.speech_tokenizer
    assert codec_layers.supports(codec.model.decoder.decoder)
    assert not codec_layers.supports(torch.nn.ModuleList([torch.nn.Linear(2, 2)] * 4))
    assert not codec_layers.supports(codec.model.decoder.upsample)
