"""``python -m benchmarks.ray_serve``: a dub through the Ray Serve application against the
in-process engine, on the real-size random 0.6B model on the CPU.

Three runs of the same script (``--segments`` lines, each a fixed ``--frames`` budget, seeded):

1. **in-process, one core**: ``dubbing.dub`` through the installed engine's batch hook, lists of
   8, torch on one thread: the baseline (a local dub as ``example_host dub`` runs it); and the
   same dub sent as the cluster client sends it (one segment per hook call, 8 calls at once,
   each settling as it ends), the baseline of the overhead below.
2. **service, one replica of one core**: the same dub through ``dub --cluster``'s client, 8 in
   flight (one segment per hook call, each settling as it ends, as ``dub --cluster`` sends).
   Its time over the in-process run sent the same way is the service's own overhead per segment
   (HTTP, Serve's proxy and router, ``@serve.batch``, WAV bytes over the wire): target ≤ 15 %.
3. **service, two replicas of one core each**, 16 in flight: target ≥ 1.6× the baseline.

Every run writes the same WAVs (checked: the seed gives the same audio in any batch). Builds the
2 GB checkpoint once; about 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from .real_checkpoint import real_size_checkpoint
from .stats import print_results

WORDS = ["narration", "for", "the", "video", "goes", "on", "while", "the", "picture", "changes"]


def script_lines(segments: int) -> list[str]:
    """``segments`` different lines of a few words each."""
    return [
        f"Segment {n}. " + " ".join(WORDS[(n + k) % len(WORDS)] for k in range(4 + n % 5)) + "."
        for n in range(segments)
    ]


def run(segments: int = 32, frames: int = 13) -> dict[str, Any]:
    import torch

    import hookspecs
    from example_host import cluster, dubbing
    from example_host.scripts import read_script
    from hookspecs import EngineConfig, GenerationParams, Voice
    from qwen3tts_plugin import ray_serve

    checkpoint = str(real_size_checkpoint())
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    script = work / "script.txt"
    script.write_text("\n".join(script_lines(segments)) + "\n", encoding="utf-8")
    generation = GenerationParams(seed=7, max_new_tokens=frames, allow_cut=True)
    warm = GenerationParams(seed=7, max_new_tokens=2, allow_cut=True)
    settings = {"ModelPath": checkpoint}

    def dub(pm, config, out: str, batch: int, voice: Voice, params=generation, lists=1):
        started = time.perf_counter()
        report = dubbing.dub(
            pm,
            config,
            read_script(script),
            work / out,
            params,
            voice,
            batch_size=batch,
            lists_in_flight=lists,
        )
        wall = time.perf_counter() - started
        if report.ok != segments:
            raise RuntimeError(f"{out}: {report.ok} of {segments} segments written")
        return wall, report.audio_s

    # 1. in-process on one core
    torch.set_num_threads(1)
    pm = hookspecs.plugin_manager()
    local = EngineConfig(provider="qwen3_tts", extra_params={**settings, "Device": "cpu"})
    dub(pm, local, "warm-local", 8, Voice(), warm)
    local_s, audio_s = dub(pm, local, "local", 8, Voice())
    sliding_s, _ = dub(pm, local, "local-sliding", 1, Voice(), lists=8)
    results: dict[str, Any] = {
        "segments": segments,
        "frames": frames,
        "audio_s": round(audio_s, 2),
        "cpu": os.cpu_count(),
        "in_process_1_core_s": round(local_s, 2),
        "in_process_1_core_8_in_flight_s": round(sliding_s, 2),
    }

    def through_service(replicas: int, in_flight: int) -> float:
        options = ray_serve.ServiceOptions(settings=settings, replicas=replicas, cpus_per_replica=1)
        url = ray_serve.start(options, port=8765)
        try:
            client = cluster.ClusterEngine(url, in_flight=in_flight)
            service = client.service()
            remote = hookspecs.plugin_manager(load_entrypoints=False)
            remote.register(client)
            config = EngineConfig(provider=service["provider"], extra_params=service["settings"])
            voice = Voice(mode=service["voice_modes"][0])
            dub(remote, config, f"warm-{replicas}", 1, voice, warm, in_flight)
            client.served.clear()
            wall, _ = dub(remote, config, f"service-{replicas}", 1, voice, lists=in_flight)
            results[f"served_by_replica_{replicas}"] = sorted(client.served.values())
            same = all(
                (work / f"service-{replicas}" / name).read_bytes()
                == (work / "local" / name).read_bytes()
                for name in (dubbing.wav_name(n) for n in range(1, segments + 1))
            )
            results[f"same_wavs_as_local_{replicas}"] = same
            return wall
        finally:
            ray_serve.stop()

    one_s = through_service(1, 8)
    results["service_1_replica_s"] = round(one_s, 2)
    results["overhead_per_segment"] = round(one_s / sliding_s - 1, 3)
    results["overhead_ms_per_segment"] = round((one_s - sliding_s) / segments * 1000, 1)
    two_s = through_service(2, 16)
    results["service_2_replicas_s"] = round(two_s, 2)
    results["speedup_2_replicas"] = round(local_s / two_s, 2)
    results["targets"] = {
        "speedup_2_replicas>=1.6": results["speedup_2_replicas"] >= 1.6,
        "overhead<=0.15": results["overhead_per_segment"] <= 0.15,
    }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ray_serve")
    parser.add_argument("--segments", type=int, default=32)
    parser.add_argument("--frames", type=int, default=13)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    print_results(run(args.segments, args.frames), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
