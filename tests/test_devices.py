"""The device and precision policy: every row, decided from settings and a machine status.

The decision is pure, so GPU machines are described with ``AccelerationStatus`` values (a GPU
cannot exist here); detection itself runs for real against this CPU-only torch.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from hookspecs import AccelerationStatus, GpuInfo, TtsError
from qwen3tts_plugin.backends.failures import device_unusable_error
from qwen3tts_plugin.devices import acceleration_status, decide, probe
from qwen3tts_plugin.settings import DEVICE_PATTERN, parse_device, parse_settings, settings_schema

CPU_ONLY = AccelerationStatus(
    supported=False, preferred_device="cpu", backend="cpu", reasons=["cuda_not_available"]
)


def gpu_machine(cc=(9, 0), flash_attn=False, count=1, name="NVIDIA H100"):
    gpus = [
        GpuInfo(
            index=i,
            name=name,
            total_memory_bytes=80 << 30,
            free_memory_bytes=79 << 30,
            compute_capability=cc,
            bf16_supported=cc >= (8, 0),
        )
        for i in range(count)
    ]
    supported = cc >= (6, 0)
    return AccelerationStatus(
        supported=supported,
        preferred_device="cuda:0" if supported else "cpu",
        backend="pytorch-cuda" if supported else "cpu",
        reasons=[] if supported else ["cuda_compute_capability_too_low"],
        cuda_available=True,
        device_count=count,
        gpus=gpus,
        flash_attn_available=flash_attn,
    )


def plan_for(status, **extra):
    return decide(parse_settings(extra), status)


# --- device strings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("auto", None),
        ("AUTO", None),
        ("default", None),
        ("cpu", "cpu"),
        (" CPU ", "cpu"),
        ("cuda", "cuda:0"),
        ("Cuda", "cuda:0"),
        ("cuda:0", "cuda:0"),
        ("CUDA:1", "cuda:1"),
        (" cuda:12 ", "cuda:12"),
        ("mps", "mps"),
        ("MPS", "mps"),
    ],
)
def test_accepted_device_forms(value, expected):
    """Parsed once, into the settings: the rest of the engine reads the normal form."""
    assert parse_device(value) == expected
    assert parse_settings({"Device": value}).Device == expected


@pytest.mark.parametrize(
    "value",
    [
        "gpu",
        "cuda:x",
        "cuda:-1",
        "tpu",
        "cuda:",
        "cuda0",
        0,
        1.5,
        "cuda:0,1",
        "cpu:0",
        "cuda:１",
        "cuda:99999999999999999999",
    ],
)
def test_malformed_devices_are_invalid_device_not_invalid_settings(value):
    with pytest.raises(TtsError) as info:
        parse_settings({"Device": value})
    assert info.value.code == "invalid_device"
    assert "'cuda:N'" in info.value.detail and "'cpu'" in info.value.detail
    if isinstance(value, str):
        assert not re.match(DEVICE_PATTERN, value)  # the schema refuses it too


def test_settings_schema_publishes_the_device_pattern():
    import re

    prop = settings_schema()["properties"]["Device"]
    assert prop["pattern"] == DEVICE_PATTERN
    assert re.match(prop["pattern"], "CUDA:3") and not re.match(prop["pattern"], "gpu")


# --- where: explicit wins, else detected ------------------------------------------------------


def test_unset_device_on_a_cpu_machine_is_detected_cpu_float32():
    plan = plan_for(CPU_ONLY)
    assert (plan.device, plan.source, plan.dtype, plan.attn_implementation) == (
        "cpu",
        "detected",
        "float32",
        "sdpa",
    )
    assert "cuda_not_available" in plan.why


def test_unset_device_on_a_gpu_machine_is_detected_cuda0():
    plan = plan_for(gpu_machine())
    assert (plan.device, plan.source) == ("cuda:0", "detected")


def test_explicit_device_wins_over_detection():
    assert plan_for(gpu_machine(), Device="cpu").device == "cpu"
    assert plan_for(gpu_machine(), Device="cpu").source == "config"
    assert plan_for(CPU_ONLY, Device="cuda").device == "cuda:0"
    assert plan_for(gpu_machine(count=2), Device="cuda:1").device == "cuda:1"


def test_too_old_gpu_is_not_preferred_but_honoured_when_asked_for():
    old = gpu_machine(cc=(5, 2))
    assert plan_for(old).device == "cpu"
    plan = plan_for(old, Device="cuda:0")
    assert (plan.device, plan.dtype) == ("cuda:0", "float16")


# --- precision and attention per device -------------------------------------------------------


@pytest.mark.parametrize(
    ("cc", "flash_attn", "dtype", "attn"),
    [
        ((9, 0), True, "bfloat16", "flash_attention_2"),
        ((8, 0), True, "bfloat16", "flash_attention_2"),
        ((8, 6), False, "bfloat16", "sdpa"),
        ((7, 5), False, "float16", "sdpa"),
        ((7, 5), True, "float16", "sdpa"),
        ((6, 1), False, "float16", "sdpa"),
    ],
)
def test_cuda_auto_policy(cc, flash_attn, dtype, attn):
    plan = plan_for(gpu_machine(cc=cc, flash_attn=flash_attn))
    assert (plan.dtype, plan.attn_implementation) == (dtype, attn)


def cpu_machine(bf16: bool, int8: bool = True, capability: str = "AVX512") -> AccelerationStatus:
    """A CPU-only machine whose CPU does or does not compute bfloat16 natively, and does or
    does not run int8 layers."""
    cpu = {
        "bf16": bf16,
        "bf16_features": ["avx512_bf16"] if bf16 else [],
        "int8": int8,
        "int8_features": ["avx512_vnni", "avx2"] if int8 else [],
        "onednn": True,
        "capability": capability,
    }
    return CPU_ONLY.model_copy(update={"extras": {"cpu": cpu}})


@pytest.mark.parametrize("precision", ["bf16", "BF16", "bfloat16"])
def test_bf16_on_a_cpu_that_computes_it_is_honoured(precision):
    with capture_logs() as logs:
        plan = plan_for(cpu_machine(bf16=True), Device="cpu", Precision=precision)
    assert (plan.device, plan.dtype) == ("cpu", "bfloat16")
    assert "avx512_bf16" in plan.why
    assert not [e for e in logs if e["log_level"] == "warning"]


@pytest.mark.parametrize("status", [CPU_ONLY, cpu_machine(bf16=False)])
def test_bf16_on_a_cpu_without_it_is_refused_never_coerced(status):
    with pytest.raises(TtsError) as info:
        plan_for(status, Precision="bf16")
    assert info.value.code == "invalid_settings"
    assert "AVX512-BF16" in info.value.detail and "Precision=auto" in info.value.hint
    # Device was not set: the refusal says why the CPU was chosen
    assert "no usable GPU here: cuda_not_available" in info.value.detail


@pytest.mark.parametrize("bf16", [True, False])
@pytest.mark.parametrize("precision", ["fp16", "float16"])
def test_fp16_on_the_cpu_is_refused(precision, bf16):
    with pytest.raises(TtsError) as info:
        plan_for(cpu_machine(bf16), Device="cpu", Precision=precision)
    assert info.value.code == "invalid_settings" and "fp16" in info.value.detail


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_on_mps_is_refused(precision):
    with pytest.raises(TtsError) as info:
        plan_for(cpu_machine(bf16=True), Device="mps", Precision=precision)
    assert info.value.code == "invalid_settings" and "mps" in info.value.detail


@pytest.mark.parametrize("bf16", [True, False])
@pytest.mark.parametrize("precision", ["auto", "fp32"])
def test_the_cpu_runs_float32_unless_bf16_is_asked_for(precision, bf16):
    assert plan_for(cpu_machine(bf16), Precision=precision).dtype == "float32"


# --- int8 weights (Quantization) ---------------------------------------------------------------


@pytest.mark.parametrize("setting", ["int8", "INT8", " Int8 "])
@pytest.mark.parametrize(("precision", "dtype"), [("auto", "float32"), ("bf16", "bfloat16")])
def test_int8_on_a_cpu_that_runs_it_is_honoured_beside_the_precision(setting, precision, dtype):
    with capture_logs() as logs:
        plan = plan_for(cpu_machine(bf16=True), Quantization=setting, Precision=precision)
    assert (plan.device, plan.dtype, plan.quantization) == ("cpu", dtype, "int8")
    assert "Quantization=int8" in plan.why and "avx512_vnni" in plan.why
    assert [e["quantization"] for e in logs if e["event"] == "tts.device.resolved"] == ["int8"]


@pytest.mark.parametrize("setting", ["auto", "none", "", None])
def test_without_quantization_asked_for_the_weights_stay_in_the_plans_dtype(setting):
    assert plan_for(cpu_machine(bf16=True), Quantization=setting).quantization == "none"
    assert plan_for(gpu_machine(), Quantization=setting).quantization == "none"


@pytest.mark.parametrize(
    ("status", "device", "words"),
    [
        (gpu_machine(), None, "not on cuda:0"),  # detected GPU: int8 is not swapped for it
        (gpu_machine(), "cuda:0", "not on cuda:0"),
        (CPU_ONLY, "cuda:0", "not on cuda:0"),  # an unusable GPU is still not the CPU
        (cpu_machine(bf16=True), "mps", "not on mps"),
        (cpu_machine(bf16=True, int8=False), "cpu", "do not run on this CPU"),
        (cpu_machine(bf16=False, int8=False, capability="DEFAULT"), None, "no usable GPU here"),
    ],
)
def test_int8_where_it_cannot_run_is_refused_never_dropped(status, device, words):
    with pytest.raises(TtsError) as info:
        plan_for(status, Device=device, Quantization="int8")
    assert info.value.code == "invalid_settings"
    assert words in info.value.detail and "Quantization=auto" in info.value.hint


def test_bad_quantization_values_are_invalid_settings_naming_the_key():
    with pytest.raises(TtsError) as info:
        parse_settings({"Quantization": "int4"})
    assert info.value.code == "invalid_settings" and "Quantization" in info.value.hint


def test_the_cpu_probe_finds_int8_kernels_on_this_x86_cpu():
    """A real probe: torch's int8 product runs here (this x86 CPU has AVX2)."""
    cpu = probe().extras["cpu"]
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if " avx2" not in flags:
        pytest.skip("not an x86 CPU with AVX2")
    assert cpu["int8"] is True
    # torch probes AVX512-VNNI only (not AVX-VNNI)
    assert ("avx512_vnni" in cpu["int8_features"]) == (" avx512_vnni" in flags)


def test_the_cpu_probe_agrees_with_the_kernels_flags():
    """torch's own probe (what its oneDNN kernels go by) against the flags Linux reports."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo to compare with (not Linux)")
    line = re.search(r"^flags\s*:(.*)$", cpuinfo.read_text(), re.M)
    if line is None:
        pytest.skip("/proc/cpuinfo lists no x86 flags (not an x86 CPU)")
    flags = set(line.group(1).split())
    cpu = probe().extras["cpu"]
    assert ("avx512_bf16" in cpu["bf16_features"]) == ("avx512_bf16" in flags)
    assert ("amx" in cpu["bf16_features"]) == ("amx_tile" in flags)
    assert cpu["bf16"] == bool(cpu["bf16_features"] and cpu["onednn"])


@pytest.mark.parametrize(
    ("attention", "expected"), [("auto", "sdpa"), ("sdpa", "sdpa"), ("eager", "eager")]
)
def test_cpu_attention(attention, expected):
    assert plan_for(CPU_ONLY, Attention=attention).attn_implementation == expected


@pytest.mark.parametrize(
    ("precision", "attention", "dtype", "attn"),
    [
        ("fp32", "auto", "float32", "sdpa"),
        ("fp16", "auto", "float16", "sdpa"),
        ("bf16", "eager", "bfloat16", "eager"),
        ("fp16", "sdpa", "float16", "sdpa"),
        ("auto", "eager", "bfloat16", "eager"),
    ],
)
def test_explicit_cuda_choices_are_honoured(precision, attention, dtype, attn):
    plan = plan_for(gpu_machine(), Precision=precision, Attention=attention)
    assert (plan.dtype, plan.attn_implementation) == (dtype, attn)


def test_flash_attention_is_honoured_when_installed():
    plan = plan_for(gpu_machine(flash_attn=True), Attention="flash_attention_2", Precision="fp16")
    assert (plan.dtype, plan.attn_implementation) == ("float16", "flash_attention_2")


@pytest.mark.parametrize(
    ("status", "settings", "needle"),
    [
        (gpu_machine(flash_attn=False), {"Attention": "flash_attention_2"}, "not importable"),
        (CPU_ONLY, {"Device": "cpu", "Attention": "flash_attention_2"}, "not importable"),
        (gpu_machine(cc=(7, 5)), {"Precision": "bf16"}, "bfloat16"),
        (
            gpu_machine(flash_attn=True),
            {"Device": "cpu", "Attention": "flash_attention_2"},
            "only on CUDA",
        ),
        (
            gpu_machine(flash_attn=True),
            {"Attention": "flash_attention_2", "Precision": "fp32"},
            "fp16 or bf16",
        ),
        (gpu_machine(cc=(7, 5), flash_attn=True), {"Attention": "flash_attention_2"}, ">= 8.0"),
    ],
)
def test_unhonourable_choices_are_refused_not_swapped(status, settings, needle):
    with pytest.raises(TtsError) as info:
        plan_for(status, **settings)
    assert info.value.code == "invalid_settings"
    assert needle in info.value.detail


def test_bad_precision_and_attention_values_are_invalid_settings_naming_the_key():
    for key, value in (("Precision", "fp8"), ("Attention", "flash"), ("XVectorOnly", "maybe")):
        with pytest.raises(TtsError) as info:
            parse_settings({key: value})
        assert info.value.code == "invalid_settings" and info.value.detail.startswith(key)


def test_malformed_device_is_reported_before_other_bad_settings():
    with pytest.raises(TtsError) as info:
        parse_settings({"Device": "gpu", "Precision": "fp8"})
    assert info.value.code == "invalid_device"


def test_unusable_device_skips_card_checks_so_placement_reports_it():
    # bf16 needs the card to check; the card is absent, so the decision stands and placement
    # will raise model_to_device_failed (tested for real in test_loading).
    plan = plan_for(CPU_ONLY, Device="cuda:0", Precision="bf16")
    assert (plan.device, plan.dtype) == ("cuda:0", "bfloat16")
    assert "not usable" in plan.why
    plan = plan_for(gpu_machine(count=1), Device="cuda:3")
    assert plan.device == "cuda:3" and "not usable" in plan.why


def test_resolution_is_logged_with_the_decision():
    with capture_logs() as logs:
        plan_for(CPU_ONLY, Device=" CPU ")
    [event] = [e for e in logs if e["event"] == "tts.device.resolved"]
    assert event == {
        "event": "tts.device.resolved",
        "log_level": "info",
        "provider": "qwen3_tts",
        "requested": "cpu",
        "resolved": "cpu",
        "source": "config",
        "dtype": "float32",
        "attn_implementation": "sdpa",
        "backend": "stepper",
        "quantization": "none",
        "why": event["why"],
    }


# --- detection on this machine ----------------------------------------------------------------


def test_the_settings_schema_marks_what_a_host_may_act_on():
    from hookspecs import settings_with_role

    schema = settings_schema()
    assert settings_with_role(schema, "device") == ["Device"]
    assert settings_with_role(schema, "model") == ["ModelKey", "ModelPath", "ModelsDir"]
    assert settings_with_role(schema, "model_folder") == ["ModelPath"]
    assert settings_with_role(schema, "batch_size") == ["BatchSize"]
    assert settings_with_role(schema, "speed_only") == ["BatchSize"]
    assert settings_with_role(schema, "resident") == [
        "Device", "Precision", "Quantization", "Attention", "ModelKey", "ModelPath",
        "ModelsDir", "Backend",
    ]  # fmt: skip
    assert settings_with_role(schema, "reference_audio") == ["RefAudio"]
    assert settings_with_role(schema, "voice") == [
        "Language", "Speaker", "Instruct", "RefText", "XVectorOnly",
    ]  # fmt: skip


def test_detection_on_this_cpu_machine():
    status = probe()
    graphs = {"available": False, "package": "faster-qwen3-tts", "version": None}
    assert status.extras["cuda_graphs"] == graphs  # not installed here
    assert set(status.extras) == {"cuda_graphs", "cpu"}
    assert status.cuda_available is False
    assert status.supported is False and status.preferred_device == "cpu"
    assert status.backend == "cpu"
    assert "cuda_not_available" in status.reasons
    assert status.torch_version and status.min_compute_capability == (6, 0)
    assert status.os["system"]


def test_detection_is_cached_and_refreshable():
    first = acceleration_status()
    assert acceleration_status() is first
    with capture_logs() as logs:
        again = acceleration_status(refresh=True)
    assert again is not first and again == first
    assert [e["event"] for e in logs] == ["tts.device.detected"]


def test_a_device_failure_hint_speaks_of_the_right_kind_of_gpu():
    cuda = device_unusable_error("cuda:0", RuntimeError("Found no NVIDIA driver"))
    mps = device_unusable_error("mps", RuntimeError("MPS backend out of memory"))
    assert cuda.code == mps.code == "model_to_device_failed"
    assert "nvidia-smi" in cuda.hint and "Apple" not in cuda.hint
    assert "Apple" in mps.hint and "NVIDIA" not in mps.hint and "Device=cpu" in mps.hint


# --- the backend -------------------------------------------------------------------------------


def with_graphs(status, available=True):
    graphs = {"available": available, "package": "faster-qwen3-tts", "version": "0.3.2"}
    return status.model_copy(update={"extras": {"cuda_graphs": graphs}})


def test_backend_auto_takes_cuda_graphs_on_cuda_with_the_extra_and_the_stepper_on_the_cpu():
    gpu = gpu_machine()
    assert plan_for(CPU_ONLY).backend == "stepper"
    assert plan_for(with_graphs(CPU_ONLY)).backend == "stepper"  # the CPU has no graphs
    plan = plan_for(with_graphs(gpu))
    assert (plan.backend, plan.backend_source) == ("cuda_graphs", "auto")
    assert "backend cuda_graphs" in plan.why
    plan = plan_for(gpu)
    assert plan.backend == "qwen_tts" and "faster-qwen3-tts not installed" in plan.why
    plan = plan_for(with_graphs(gpu), Backend="qwen_tts")
    assert (plan.backend, plan.backend_source) == ("qwen_tts", "config")


def test_the_stepper_decodes_with_sdpa_and_refuses_an_explicit_flash_attention():
    """Its rows have different lengths: a masked decode, which flash_attention_2 does not
    take here. A GPU machine with flash-attn stands in (decide() only reads the status)."""
    gpu = gpu_machine(flash_attn=True)
    assert plan_for(gpu).attn_implementation == "flash_attention_2"  # auto, qwen_tts
    plan = plan_for(gpu, Backend="stepper")
    assert (plan.backend, plan.attn_implementation) == ("stepper", "sdpa")
    assert "the stepper's masked decode" in plan.why
    with pytest.raises(TtsError) as refused:
        plan_for(gpu, Backend="stepper", Attention="flash_attention_2")
    assert refused.value.code == "invalid_settings" and "Backend=stepper" in str(refused.value)


@pytest.mark.parametrize(
    ("status", "device", "words"),
    [
        (with_graphs(CPU_ONLY), "cpu", "only on CUDA GPUs, not on cpu"),
        (with_graphs(CPU_ONLY), "mps", "only on CUDA GPUs, not on mps"),
        (gpu_machine(), "cuda:0", "faster-qwen3-tts 0.3.x, which is not installed"),
    ],
)
def test_an_explicit_cuda_graphs_that_cannot_run_is_refused_never_swapped(status, device, words):
    with pytest.raises(TtsError) as info:
        plan_for(status, Device=device, Backend="cuda_graphs")
    assert info.value.code == "invalid_settings" and words in info.value.detail
    assert "Backend=auto" in info.value.hint


def test_an_explicit_cuda_graphs_where_it_can_run_is_taken_in_any_case():
    plan = plan_for(with_graphs(gpu_machine()), Device="cuda:0", Backend=" CUDA_Graphs ")
    assert (plan.backend, plan.backend_source) == ("cuda_graphs", "config")


def test_one_list_of_backends():
    from qwen3tts_plugin.backends import BACKENDS
    from qwen3tts_plugin.settings import BACKEND_NAMES

    assert tuple(BACKENDS) == BACKEND_NAMES
    schema = settings_schema()["properties"]["Backend"]
    assert schema["enum"] == ["auto", *BACKEND_NAMES] and schema["default"] == "auto"
