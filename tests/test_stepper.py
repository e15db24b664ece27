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
from qwen3tts_plugin.backends.stepper.codec import CodecDecoder, RowAudio
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
        assert not backend.stepper(3).layers.direct_predictor
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


def test_width_buckets_grow_by_halves_and_powers_of_two():
    from qwen3tts_plugin.backends.stepper.graphs import width_bucket

    assert [width_bucket(n) for n in (1, 64, 65, 96, 97, 128, 129, 193, 257, 385, 2049)] == [
        64,
        64,
        96,
        96,
        128,
        128,
        192,
        256,
        384,
        512,
        3072,
    ]
    assert all(n <= width_bucket(n) <= max(64, n * 3 // 2 + 1) for n in range(1, 5000))


def test_fixed_shape_steps_attend_over_the_rows_lengths_not_the_caches_capacity(tiny):
    """The talker's fixed-shape step attends over the longest row's length rounded up to a
    width bucket, not over the slot cache's whole capacity: texts that never end (the
    never-ending tiny checkpoint) grow through several widths, each with its own budget, so
    rows end one by one and the next text joins short beside long ones (3 slots, 5 texts),
    and every code is the eager loop's, greedy and seeded."""
    from qwen3tts_plugin.testing import tiny_checkpoint_without_eos

    eager = StepperBackend.load(tiny_checkpoint_without_eos("custom_voice"), PLAN)
    eager.static_steps = False
    static = StepperBackend(eager.model, PLAN)
    static.static_steps = True
    voice = VoicePlan("custom_voice", "auto", "vivian")
    texts = tuple(TEXTS[:5])
    budgets = (150, 40, 90, 120, 60)
    try:
        for values in (
            {"do_sample": False},
            {"do_sample": True, "seed": 5, "temperature": 1.2},
        ):
            each = tuple(GenerationParams(max_new_tokens=n, **values) for n in budgets)
            batch = Batch(texts, (voice,) * len(texts), each[0], each=each, slots=3)
            expected = spying(eager, lambda b=batch: eager.generate(b))
            assert [len(w) // 1920 for w in expected.waveforms] == [n - 1 for n in budgets]
            assert_same(spying(static, lambda b=batch: static.generate(b)), expected)
        loop = static.stepper(3)
        widths = sorted({width for _, width in loop.static.shapes()})
        assert widths == [64, 96, 128, 192], widths
        assert widths[0] < loop.cache.capacity  # the first steps attended over a quarter of it
        assert {rows for rows, _ in loop.static.shapes()} == {1, 2, 3}
    finally:
        eager.release()


def test_a_replaced_loop_and_its_steps_are_freed_at_once(backends, monkeypatch):
    """A larger BatchSize replaces the loop: the old one, its fixed-shape steps and its slot
    cache are gone before the device's cache is emptied, without waiting for a garbage
    collection (none runs here). On CUDA its graphs' memory pool would go with them; no GPU
    here, so the plan says cuda:0 over the CPU model and emptying the cache is recorded."""
    import gc
    import weakref

    from qwen3tts_plugin.backends.stepper import backend as backend_module

    shared = next(iter(backends.values()))
    backend = StepperBackend(shared.model, DevicePlan.named("cuda:0", "stepper", why="test"))
    backend.static_steps = True
    voice = VoicePlan("custom_voice", "auto", "vivian")
    emptied = []
    gc.collect()
    gc.disable()
    try:
        backend.generate(Batch(tuple(TEXTS[:2]), (voice,) * 2, GREEDY, slots=2))
        small = backend.stepper(2)
        assert small.static.shapes()  # replays made, each holding a closure over its steps
        refs = [weakref.ref(x) for x in (small, small.static, small.cache.keys[0])]
        del small
        monkeypatch.setattr(
            backend_module, "free_device_memory", lambda: emptied.append([r() for r in refs])
        )
        assert backend.stepper(4).slots == 4
    finally:
        gc.enable()
    assert emptied == [[None, None, None]]


def test_the_codec_decodes_holding_the_capture_lock_on_cuda(backends):
    """Every codec decode holds the backend's capture lock where graphs are captured (CUDA):
    a stream consumer's decode on another thread cannot run during a capture. The CPU
    captures nothing, so its decodes take no lock. (No GPU here: the CUDA plan is over the
    CPU model, and the lock records when it is held.)"""
    shared = next(iter(backends.values()))
    events = []

    class RecordingLock:
        def __enter__(self):
            events.append("locked")

        def __exit__(self, *exc):
            events.append("unlocked")

    cuda = StepperBackend(shared.model, DevicePlan.named("cuda:0", "stepper", why="test"))
    assert cuda.codec().lock is cuda.capture_lock
    assert StepperBackend(shared.model, PLAN).codec().lock is not cuda.capture_lock
    decoder = CodecDecoder(shared.model.model.speech_tokenizer, lock=RecordingLock())
    forward = decoder._chunked
    decoder._chunked = lambda codes: events.append("decode") or forward(codes)
    decoder.decode(torch.zeros((3, 16), dtype=torch.long))
    assert events == ["locked", "decode", "unlocked"]
    events.clear()  # a streamed window: its frames stacked on the device under the lock too
    frames = [torch.zeros(16, dtype=torch.long)] * 6
    RowAudio(decoder, None).window(frames, 2, 6)
    assert events == ["locked", "locked", "decode", "unlocked", "unlocked"]


def test_graphs_are_captured_on_the_loops_device_into_one_pool_under_the_lock(monkeypatch):
    """``GraphCapture`` with torch.cuda's stream, graph and device calls replaced by
    recorders (the one mock here: there is no GPU): warm-up and capture run with the loop's
    device current (cuda:1, not the current cuda:0), on a stream made on that device, with
    the lock held; every graph goes into the same pool, and replays run on that device too."""
    import contextlib
    import threading

    from qwen3tts_plugin.backends.stepper.graphs import GraphCapture, Replay

    lock = threading.Lock()
    state = {"device": 0}
    events = []

    @contextlib.contextmanager
    def device(which):
        before, state["device"] = state["device"], torch.device(which).index
        try:
            yield
        finally:
            state["device"] = before

    class Stream:
        def __init__(self):
            self.device = state["device"]

        def wait_stream(self, other):
            pass

    class Graph:
        def replay(self):
            events.append(("replay", state["device"]))

    @contextlib.contextmanager
    def graph(g, pool=None, stream=None, capture_error_mode=None):
        on = (stream.device, state["device"])  # the capture stream's device, the current one
        events.append(("capture", on, pool, lock.locked(), capture_error_mode))
        yield

    pools = iter(["pool-a", "pool-b"])
    fakes = {
        "device": device,
        "Stream": Stream,
        "stream": lambda s: contextlib.nullcontext(),
        "current_stream": Stream,
        "CUDAGraph": Graph,
        "graph": graph,
        "graph_pool_handle": lambda: next(pools),
    }
    for name, fake in fakes.items():
        monkeypatch.setattr(torch.cuda, name, fake)

    def function():
        events.append(("run", state["device"], lock.locked()))
        return "outputs"

    capture = GraphCapture(torch.device("cuda:1"), lock)
    replays = [Replay(function, capture), Replay(function, capture)]
    assert [replay() for replay in replays] == ["outputs", "outputs"]
    warm = ("run", 1, True)
    caught = ("capture", (1, 1), "pool-a", True, "thread_local")
    assert events == [warm, warm, caught, warm] * 2 + [("replay", 1)] * 2
    assert not lock.locked() and capture.captured == 2


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_gpu_checks_comparison_of_graphs_and_eager_steps_runs_here(dtype):
    """``loop_check.graphs_against_eager``, which the GPU check runs on the card, run here on
    the CPU (the fixed-shape steps eagerly): every text's frames, and in float32 the eager
    loop's codes exactly."""
    from loop_check import graphs_against_eager

    from qwen3tts_plugin.testing import tiny_checkpoint_without_eos

    figures = graphs_against_eager(tiny_checkpoint_without_eos("custom_voice"), "cpu", dtype)
    assert (figures["device"], figures["dtype"]) == ("cpu", dtype)
    assert {rows for rows, _ in figures["shapes"]} == {1, 2, 4}  # slots refilled, then padded
    assert figures["graphs_vs_fixed"] is None  # here both run eagerly: the check's own check
    if dtype == "float32":
        assert figures["graphs_vs_eager"] is None
