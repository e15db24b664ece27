"""Which device and precision the model runs with: detection, then one explicit decision.

Detection imports torch (on first use, never at import). The decision is pure: given settings
and an ``AccelerationStatus`` it returns a ``DevicePlan`` or raises ``TtsError``; nothing here
falls back from a GPU to the CPU.
"""

from __future__ import annotations

import contextlib
import importlib
import platform
import threading
from dataclasses import dataclass
from typing import Any

from hookspecs import AccelerationStatus, GpuInfo, TtsError

from .log import get_logger
from .settings import PRECISION_NAMES, EngineSettings

log = get_logger(__name__)

MIN_COMPUTE_CAPABILITY = (6, 0)
BF16_COMPUTE_CAPABILITY = (8, 0)

_status: AccelerationStatus | None = None
_status_lock = threading.Lock()


# --- detection -----------------------------------------------------------------------------


def acceleration_status(refresh: bool = False) -> AccelerationStatus:
    """This machine's acceleration status, probed once per process (``refresh`` probes again)."""
    global _status
    with _status_lock:
        if _status is None or refresh:
            _status = probe()
            log.info(
                "tts.device.detected",
                supported=_status.supported,
                preferred_device=_status.preferred_device,
                reasons=_status.reasons,
                gpus=[g.name for g in _status.gpus],
                torch_version=_status.torch_version,
                torch_cuda_version=_status.torch_cuda_version,
            )
        return _status


def probe(free_memory: bool = False) -> AccelerationStatus:
    """Ask torch what it can use. A failure becomes a reason, never an exception.

    ``free_memory`` also asks each GPU for its free memory; that creates a CUDA context (a few
    hundred MB) on every GPU, so only ``doctor`` asks, never a settings page.
    """
    facts: dict[str, Any] = {
        "os": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
            "python": platform.python_version(),
        },
        "min_compute_capability": MIN_COMPUTE_CAPABILITY,
    }
    reasons: list[str] = []
    try:
        import torch
    except (ImportError, OSError) as exc:
        log.warning("tts.device.torch_import_failed", error=repr(exc))
        return _status_from(facts, ["torch_import_failed"], [])
    facts["torch_version"] = torch.__version__
    facts["torch_cuda_version"] = torch.version.cuda
    facts["flash_attn_available"] = flash_attn_available()
    facts["extras"] = {"cuda_graphs": cuda_graphs_facts(), "cpu": cpu_facts(torch)}
    gpus: list[GpuInfo] = []
    try:
        facts["cuda_available"] = bool(torch.cuda.is_available())
        facts["device_count"] = int(torch.cuda.device_count()) if facts["cuda_available"] else 0
        if not facts["cuda_available"]:
            reasons.append("cuda_not_available")
        elif facts["device_count"] == 0:
            reasons.append("cuda_device_not_found")
        else:
            gpus = [_gpu_info(torch, index, free_memory) for index in range(facts["device_count"])]
    except (RuntimeError, AssertionError, OSError) as exc:
        log.warning("tts.device.query_failed", error=repr(exc))
        reasons.append("cuda_device_query_failed")
    if gpus and gpus[0].compute_capability < MIN_COMPUTE_CAPABILITY:
        reasons.append("cuda_compute_capability_too_low")
    return _status_from(facts, reasons, gpus)


def _gpu_info(torch: Any, index: int, free_memory: bool) -> GpuInfo:
    props = torch.cuda.get_device_properties(index)
    free = None
    if free_memory:
        try:
            free, _total = torch.cuda.mem_get_info(index)
        except RuntimeError as exc:
            log.warning("tts.device.free_memory_unknown", index=index, error=repr(exc))
    capability = tuple(torch.cuda.get_device_capability(index))
    return GpuInfo(
        index=index,
        name=props.name,
        total_memory_bytes=int(props.total_memory),
        free_memory_bytes=free,
        compute_capability=capability,
        bf16_supported=capability >= BF16_COMPUTE_CAPABILITY,
    )


def _status_from(
    facts: dict[str, Any], reasons: list[str], gpus: list[GpuInfo]
) -> AccelerationStatus:
    supported = not reasons and bool(gpus)
    return AccelerationStatus(
        supported=supported,
        preferred_device="cuda:0" if supported else "cpu",
        backend="pytorch-cuda" if supported else "cpu",
        reasons=reasons,
        gpus=gpus,
        **facts,
    )


def flash_attn_available() -> bool:
    """Whether FlashAttention 2 imports here (installed and loadable against this torch)."""
    try:
        importlib.import_module("flash_attn")
    except (ImportError, OSError, RuntimeError):
        return False
    return True


CPU_BF16_PROBES = {"amx": "_is_amx_tile_supported", "avx512_bf16": "_is_avx512_bf16_supported"}
"""x86 features with which the CPU computes bfloat16 natively (AMX: its tiles; every CPU with
AMX has AMX-BF16), and the ``torch.cpu`` function that detects each (torch's own cpuinfo
probes, the ones its oneDNN kernels go by; torch has no public query). A torch without them
reports none: bf16 is then refused, never guessed."""


CPU_INT8_PROBES = {"avx512_vnni": "_is_vnni_supported", "avx2": "_is_avx2_supported"}
"""x86 features torch's int8 matrix products use (AVX512-VNNI: int8 dot products in one
instruction, what int8 was measured on; AVX2: widening multiply-adds without it), and the
``torch.cpu`` function for each (torch has no probe for AVX-VNNI); shown, and VNNI decides
whether doctor advises int8 (``cpu_speed_advice``)."""
X86_MACHINES = ("x86_64", "amd64", "i386", "i686")


def cpu_facts(torch: Any) -> dict[str, Any]:
    """``AccelerationStatus.extras["cpu"]``: whether this CPU computes bfloat16 natively
    (``bf16``; AMX or AVX512-BF16 found, ``bf16_features``, and oneDNN in this torch), whether
    it runs int8 layers (``int8``, see ``cpu_int8_runs``; ``int8_features``), and the widest
    vector instructions torch uses here (``capability``, e.g. ``AVX512``)."""
    features = cpu_features(torch, CPU_BF16_PROBES)
    onednn = bool(torch.backends.mkldnn.is_available())
    capability = torch.backends.cpu.get_cpu_capability()
    return {
        "bf16": bool(features) and onednn,
        "bf16_features": features,
        "int8": onednn and cpu_int8_runs(torch, capability),
        "int8_features": cpu_features(torch, CPU_INT8_PROBES),
        "onednn": onednn,
        "capability": capability,
    }


def cpu_features(torch: Any, probes: dict[str, str]) -> list[str]:
    """The features of ``probes`` (name → ``torch.cpu`` function) this CPU has; a function
    this torch lacks counts as absent."""
    return [
        feature
        for feature, name in probes.items()
        if getattr(torch.cpu, name, None) is not None and getattr(torch.cpu, name)()
    ]


def cpu_int8_runs(torch: Any, capability: str) -> bool:
    """Whether ``Quantization=int8`` can run here: torch's int8 matrix product
    (``torch._int_mm``) goes through oneDNN (enabled: without it a scalar loop runs, 14x
    slower, measured) and gives exact sums at the full int8 range, one row and eight (where a
    CPU without VNNI widens through 16 bits, a kernel that saturates would show); and on x86
    torch uses at least AVX2."""
    if platform.machine().lower() in X86_MACHINES and capability not in ("AVX2", "AVX512"):
        return False
    int_mm = getattr(torch, "_int_mm", None)
    if int_mm is None or not torch.backends.mkldnn.enabled:
        return False
    left = torch.full((8, 256), 127, dtype=torch.int8)
    left[1] = -127
    left[2, ::2] = -127
    left[3] = torch.arange(256) % 255 - 127
    right = torch.full((16, 256), 127, dtype=torch.int8)  # [out, in], used transposed
    right[1] = -127
    right[2, 1::2] = -127
    right[3] = 127 - torch.arange(256) % 255
    expected = left.int() @ right.int().t()
    try:
        together = int_mm(left, right.t())
        alone = int_mm(left[:1], right.t())
    except (RuntimeError, NotImplementedError) as exc:
        log.debug("tts.device.int8_probe_failed", error=repr(exc))
        return False
    return bool(torch.equal(together, expected) and torch.equal(alone, expected[:1]))


def cpu_int8(status: AccelerationStatus) -> bool:
    """Whether ``status`` says this CPU runs int8 layers (Quantization=int8 honoured)."""
    return bool((status.extras.get("cpu") or {}).get("int8"))


def cpu_bf16_native(status: AccelerationStatus) -> bool:
    """Whether ``status`` says this CPU computes bfloat16 natively (Precision=bf16 honoured)."""
    return bool((status.extras.get("cpu") or {}).get("bf16"))


FAST_PACKAGE = "faster-qwen3-tts"
FAST_SERIES = "0.3."
"""faster-qwen3-tts 0.3.x is built on qwen-tts 0.1.1 and transformers < 5; 0.4 and later move
to a transformers-5 fork and are not used."""


def cuda_graphs_facts() -> dict[str, Any]:
    """``AccelerationStatus.extras["cuda_graphs"]``: whether faster-qwen3-tts 0.3.x (the
    ``cuda_graphs`` backend) is installed, and which version. Found, not imported: importing
    it imports qwen_tts (seconds)."""
    from importlib import metadata, util

    version = None
    if util.find_spec("faster_qwen3_tts") is not None:
        with contextlib.suppress(metadata.PackageNotFoundError):
            version = metadata.version(FAST_PACKAGE)
    available = version is not None and version.startswith(FAST_SERIES)
    return {"available": available, "package": FAST_PACKAGE, "version": version}


def cuda_graphs_available(status: AccelerationStatus) -> bool:
    """Whether ``status`` says the ``cuda_graphs`` backend can be used here."""
    return bool((status.extras.get("cuda_graphs") or {}).get("available"))


# --- the decision ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DevicePlan:
    """The decision: where, in which precision and with which attention, and why."""

    requested: str | None
    device: str
    source: str
    dtype: str
    attn_implementation: str
    why: str
    backend: str = "qwen_tts"
    backend_source: str = "auto"
    """'config' when the Backend setting named the backend, 'auto' when the engine chose."""
    quantization: str = "none"
    """``none``, or ``int8``: the talker's and code predictor's layers with int8 weights."""

    @classmethod
    def named(
        cls,
        device: str,
        backend: str,
        dtype: str = "float32",
        why: str = "named by the caller",
        backend_source: str = "config",
        quantization: str = "none",
    ) -> DevicePlan:
        """A plan whose every choice is given, nothing detected (tests, benchmarks, checks):
        ``device`` as asked, sdpa attention."""
        return cls(
            quantization=quantization,
            requested=device,
            device=device,
            source="config",
            dtype=dtype,
            attn_implementation="sdpa",
            why=why,
            backend=backend,
            backend_source=backend_source,
        )

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def exact_backend(self) -> bool:
        """The Backend setting named the backend: requests run on it as asked or are refused."""
        return self.backend_source == "config"


def decide(settings: EngineSettings, status: AccelerationStatus) -> DevicePlan:
    """Resolve device, dtype and attention from settings and the machine, or refuse."""
    requested = settings.Device
    device = requested or status.preferred_device
    source = "config" if requested else "detected"
    if requested:
        why = [f"Device={settings.Device!r} set in config"]
    elif status.supported:
        why = [f"Device not set; detected {status.gpus[0].name}"]
    else:
        why = [f"Device not set; no usable GPU ({', '.join(status.reasons)})"]
    want_dtype = settings.dtype_request
    want_attn = settings.Attention
    if want_attn == "flash_attention_2" and not status.flash_attn_available:
        raise TtsError(
            "invalid_settings",
            "Attention=flash_attention_2 but the flash_attn package is not importable here",
            "Install flash-attn for this torch and CUDA, or set Attention=auto (sdpa).",
        )
    if device.startswith("cuda"):
        dtype, attn = _cuda_choice(device, want_dtype, want_attn, status, why)
    else:
        dtype, attn = _cpu_choice(device, want_dtype, want_attn, status, why, source)
    backend = _backend_choice(settings.Backend, device, status, why)
    quantization = _quantization_choice(settings.Quantization, device, status, why, source)
    if backend == "stepper" and attn == "flash_attention_2":
        if want_attn == "flash_attention_2":
            raise TtsError(
                "invalid_settings",
                "Backend=stepper decodes rows of different lengths with an attention mask, "
                "which flash_attention_2 does not take here",
                "Set Attention=auto or sdpa, or Backend=auto.",
            )
        attn = "sdpa"
        why.append("attention sdpa (the stepper's masked decode)")
    backend_source = "auto" if settings.Backend == "auto" else "config"
    plan = DevicePlan(
        requested=settings.Device,
        device=device,
        source=source,
        dtype=dtype,
        attn_implementation=attn,
        why="; ".join(why),
        backend=backend,
        backend_source=backend_source,
        quantization=quantization,
    )
    log.info(
        "tts.device.resolved",
        requested=settings.Device,
        resolved=device,
        source=source,
        dtype=dtype,
        attn_implementation=attn,
        backend=backend,
        quantization=quantization,
        why=plan.why,
    )
    return plan


def _quantization_choice(
    setting: str, device: str, status: AccelerationStatus, why: list[str], source: str
) -> str:
    """``none``, or ``int8`` where asked for on a CPU that runs int8 layers; refused on any
    other device and on a CPU without the kernels (never dropped behind the caller's back)."""
    if setting in ("auto", "none"):
        return "none"
    if device != "cpu":
        why_not = (
            "; GPUs run the model in half precision, faster" if device.startswith("cuda") else ""
        )
        raise TtsError(
            "invalid_settings",
            f"Quantization={setting} runs only on the CPU, not on {device}: it uses the CPU's "
            f"int8 matrix kernels{why_not}",
            "Set Quantization=auto (none) for this device, or Device=cpu.",
        )
    if not cpu_int8(status):
        facts = status.extras.get("cpu") or {}
        chosen = ""
        if source == "detected":
            chosen = f" (Device not set and no usable GPU here: {', '.join(status.reasons)})"
        raise TtsError(
            "invalid_settings",
            f"Quantization={setting} on the CPU{chosen} needs torch's int8 matrix kernels, "
            f"which do not run on this CPU (vector instructions: "
            f"{facts.get('capability') or 'unknown'}; x86 needs AVX2 or later)",
            "Set Quantization=auto (none).",
        )
    features = ", ".join((status.extras.get("cpu") or {}).get("int8_features") or []) or "none"
    why.append(f"Quantization={setting} set in config (int8 kernels; features: {features})")
    return setting


def _backend_choice(setting: str, device: str, status: AccelerationStatus, why: list[str]) -> str:
    """qwen_tts, cuda_graphs or stepper: an explicit choice is honoured or refused; auto takes
    CUDA graphs on a CUDA device when they are installed, the stepper on the CPU (measured
    there: ``benchmarks/stepper.py``), else qwen_tts (the stepper is not yet measured on a
    GPU or MPS)."""
    on_cuda = device.startswith("cuda")
    if setting in ("qwen_tts", "stepper"):
        why.append(f"Backend={setting} set in config")
        return setting
    if setting == "cuda_graphs":
        if not on_cuda:
            raise TtsError(
                "invalid_settings",
                f"Backend=cuda_graphs runs only on CUDA GPUs, not on {device}",
                "Set Backend=auto or qwen_tts, or Device=cuda:0.",
            )
        if not cuda_graphs_available(status):
            raise TtsError(
                "invalid_settings",
                f"Backend=cuda_graphs needs {FAST_PACKAGE} {FAST_SERIES}x, which is not installed",
                "pip install 'qwen3tts-plugin[fast]' (faster-qwen3-tts==0.3.2), or set "
                "Backend=auto.",
            )
        why.append("Backend=cuda_graphs set in config")
        return "cuda_graphs"
    if on_cuda and cuda_graphs_available(status):
        why.append("backend cuda_graphs (installed, CUDA device)")
        return "cuda_graphs"
    if device == "cpu":
        why.append("backend stepper (our decode loop: measured faster on the CPU, same codes)")
        return "stepper"
    reason = f"{FAST_PACKAGE} not installed" if on_cuda else f"no CUDA graphs on {device}"
    why.append(f"backend qwen_tts ({reason})")
    return "qwen_tts"


def _cpu_choice(
    device: str,
    want_dtype: str,
    want_attn: str,
    status: AccelerationStatus,
    why: list[str],
    source: str,
) -> tuple[str, str]:
    """float32 unless bf16 is asked for on a CPU that computes it natively; any other half
    precision is refused (never turned into float32 behind the caller's back). ``source``
    'detected': the CPU was chosen because no GPU is usable, which a refusal says."""
    if want_attn == "flash_attention_2":
        raise TtsError(
            "invalid_settings",
            f"Attention=flash_attention_2 runs only on CUDA GPUs, not on {device}",
            "Set Attention=auto or sdpa for the CPU, or Device=cuda:0.",
        )
    attn = "sdpa" if want_attn == "auto" else want_attn
    if want_dtype in ("auto", "float32"):
        why.append(f"{device} runs float32" + (" (Precision=auto)" if want_dtype == "auto" else ""))
        return "float32", attn
    if device != "cpu":
        raise TtsError(
            "invalid_settings",
            f"Precision={PRECISION_NAMES[want_dtype]} on {device} is not supported: only float32 "
            f"is measured there",
            "Set Precision=auto or fp32.",
        )
    chosen = ""
    if source == "detected":
        chosen = f" (Device not set and no usable GPU here: {', '.join(status.reasons)})"
    if want_dtype == "float16":
        raise TtsError(
            "invalid_settings",
            f"Precision=fp16 on the CPU{chosen} is not supported: measured slower than float32 "
            f"(33 s against 23 s for 8 texts on an AVX512-BF16 CPU; README, The CPU path)",
            "Set Precision=auto (fp32 on the CPU), or bf16 where the CPU computes it natively "
            "(AMX or AVX512-BF16; `python -m qwen3tts_plugin doctor` says).",
        )
    facts = status.extras.get("cpu") or {}
    if not cpu_bf16_native(status):
        raise TtsError(
            "invalid_settings",
            f"Precision=bf16 on the CPU{chosen} needs a CPU that computes bfloat16 natively (AMX "
            f"or AVX512-BF16); this one does not (vector instructions: "
            f"{facts.get('capability') or 'unknown'}), so bf16 would run slower than float32",
            "Set Precision=auto (fp32 on the CPU), or Device=cuda:0 on a machine with a GPU.",
        )
    features = ", ".join(facts.get("bf16_features") or [])
    why.append(f"Precision=bf16 set in config (this CPU computes bfloat16 natively: {features})")
    return "bfloat16", attn


def _cuda_choice(
    device: str, want_dtype: str, want_attn: str, status: AccelerationStatus, why: list[str]
) -> tuple[str, str]:
    gpu = _gpu_for(device, status)
    if gpu is None:
        # The device is not usable; placement will fail with model_to_device_failed. Checks that
        # need the card are skipped so that error, the one that names the real problem, wins.
        dtype = "float16" if want_dtype == "auto" else want_dtype
        attn = "sdpa" if want_attn == "auto" else want_attn
        why.append(f"{device} is not usable here ({', '.join(status.reasons) or 'no such index'})")
        return dtype, attn
    cc = f"{gpu.compute_capability[0]}.{gpu.compute_capability[1]}"
    if want_dtype == "auto":
        dtype = "bfloat16" if gpu.bf16_supported else "float16"
        why.append(f"{gpu.name} (compute capability {cc}) → {dtype}")
    else:
        if want_dtype == "bfloat16" and not gpu.bf16_supported:
            raise TtsError(
                "invalid_settings",
                f"Precision=bf16 but {gpu.name} (compute capability {cc}) has no bfloat16 "
                f"support (needs >= 8.0)",
                "Set Precision=auto (fp16 on this card) or fp32.",
            )
        dtype = want_dtype
        why.append(f"Precision={dtype} set in config")
    if want_attn == "auto":
        attn = (
            "flash_attention_2"
            if status.flash_attn_available
            and dtype in ("bfloat16", "float16")
            and gpu.compute_capability >= BF16_COMPUTE_CAPABILITY
            else "sdpa"
        )
        note = "" if status.flash_attn_available else " (flash_attn not installed)"
        why.append(f"attention {attn}{note}")
    else:
        if want_attn == "flash_attention_2":
            if dtype == "float32":
                raise TtsError(
                    "invalid_settings",
                    "Attention=flash_attention_2 needs fp16 or bf16, not float32",
                    "Set Precision=auto or bf16, or Attention=sdpa.",
                )
            if gpu.compute_capability < BF16_COMPUTE_CAPABILITY:
                raise TtsError(
                    "invalid_settings",
                    f"Attention=flash_attention_2 needs compute capability >= 8.0; {gpu.name} "
                    f"has {cc}",
                    "Set Attention=auto (sdpa).",
                )
        attn = want_attn
        why.append(f"Attention={attn} set in config")
    return dtype, attn


AUTO_BATCH_SIZE = {"cpu": 8, "cuda": 16, "mps": 8}
"""BatchSize=auto, by device type (README, Benchmarks; ``benchmarks/batch_sizes.py``).

CPU: the real-size 0.6B model on a 2-core CPU speaks 16 texts 2.6x faster at 8 per call than
one by one, 3.0x at 16; 8 keeps memory in bounds (each text holds its own KV cache and hidden
states, about 0.35 MB per frame in float32, so 16 texts of 2048 frames would need ~11 GB).
CUDA: one decode step is bound by kernel launches, not arithmetic, so a wider call is nearly
free; half precision halves the per-text memory. MPS: unmeasured, the CPU's choice. The CPU
under the stepper (its default backend) takes ``AUTO_BATCH_SIZE_CPU_STEPPER``."""

AUTO_BATCH_SIZE_CPU_STEPPER = 16
"""BatchSize=auto on the CPU under the stepper: rows decoded together (README, int8 weights on
the CPU; ``benchmarks/cpu_precision.py``). A dub's mix (24 texts of 8-24 frames) on the
real-size 0.6B, 2-core AVX512 CPU: 16 rows against 8 gave 1.31x in fp32 and 1.21x in bf16,
and 1.19-1.33x with int8 weights in three interleaved runs (one run through the hooks gave
0.82x). The stepper keeps no frame's hidden states: a row holds its KV cache, 229 KB a frame
in float32 (28 layers x 8 heads x 128, keys and values), so 16 rows of a 200-character piece
(at most about 560 frames) hold about 2 GB."""


def batch_size_for(setting: int | str, plan: DevicePlan) -> int:
    """Most texts one generate call takes: ``BatchSize``, or the auto choice for the plan's
    device and backend."""
    if setting != "auto":
        return int(setting)
    if plan.device == "cpu" and plan.backend == "stepper":
        return AUTO_BATCH_SIZE_CPU_STEPPER
    return AUTO_BATCH_SIZE[plan.device.partition(":")[0]]


INT8_MEASURED = (
    "on a 2-core AVX512-VNNI CPU, one preview 3.8x fp32 and 2.0x bf16, a dub of 24 texts 3.2x "
    "fp32 and 1.3x bf16"
)
"""What Quantization=int8 measured (``benchmarks/cpu_precision.py``), as advice quotes it."""


def cpu_speed_advice(plan: DevicePlan, status: AccelerationStatus, batch_size: int) -> str | None:
    """A suggestion for a CPU plan without quantization, or None: Quantization=int8 where
    this CPU runs int8 layers with AVX512-VNNI, the kind it was measured on (faster than fp32
    and bf16, alone and batched: README, int8 weights on the CPU; honoured on other CPUs with
    int8 kernels, not advised there); else Precision=bf16 where the CPU computes bfloat16
    natively and the work is batched (dubbing, where a CPU user's time goes)."""
    if plan.device != "cpu" or plan.quantization != "none":
        return None
    cpu = status.extras.get("cpu") or {}
    if cpu_int8(status) and "avx512_vnni" in (cpu.get("int8_features") or []):
        return (
            "This CPU runs int8 layers with AVX512-VNNI: Quantization=int8 speaks faster than "
            f"{PRECISION_NAMES[plan.dtype]} ({INT8_MEASURED}; the codec stays fp32; README, "
            "int8 weights on the CPU). Experimental until heard on real weights: preview one "
            "text with one seed both ways to compare."
        )
    if plan.dtype != "float32" or batch_size < 2 or not cpu_bf16_native(status):
        return None
    features = ", ".join(cpu.get("bf16_features") or [])
    return (
        f"This CPU computes bfloat16 natively ({features}): Precision=bf16 runs batched work "
        f"faster than fp32 (1.7x for 8 texts on a 2-core AVX512-BF16 CPU; the codec stays "
        f"fp32; README, The CPU path). Experimental until heard on real weights: preview one "
        f"text with one seed in both precisions to compare."
    )


def _gpu_for(device: str, status: AccelerationStatus) -> GpuInfo | None:
    """The GpuInfo for ``cuda:N``, or None when that device is not usable here."""
    index = int(device.split(":")[1])
    if not status.cuda_available:
        return None
    return next((g for g in status.gpus if g.index == index), None)
