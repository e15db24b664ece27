"""5. The first synthesis in a fresh process, by phase, from the engine's own timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from .stats import Timing

CHILD = """
import json, sys, tempfile, time
t0 = time.perf_counter()
import hookspecs
from hookspecs import EngineConfig, GenerationParams, SynthesisRequest
pm = hookspecs.plugin_manager()
t1 = time.perf_counter()
config = EngineConfig(provider="qwen3_tts", extra_params={"ModelPath": sys.argv[1]})
with tempfile.TemporaryDirectory(prefix="bench-cold-") as folder:
    result = pm.hook.tts_synthesize(request=SynthesisRequest(
        config=config, text="Cold start.", out_path=folder + "/cold.wav",
        generation=GenerationParams(max_new_tokens=int(sys.argv[2]), seed=0, allow_cut=True)))
    t2 = time.perf_counter()
print(json.dumps({"registration_s": t1 - t0, "first_call_s": t2 - t1,
                  "load_s": result.load_s, "synth_s": result.synth_s}))
"""


def run(model_dir: Path, repeats: int, max_new_tokens: int) -> dict[str, Any]:
    runs = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(model_dir), str(max_new_tokens)],
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    phases = {
        key: Timing.of([r[key] for r in runs]).as_dict()
        for key in ("registration_s", "first_call_s", "load_s", "synth_s")
    }
    imports = [r["first_call_s"] - r["load_s"] - r["synth_s"] for r in runs]
    phases["imports_and_probe_s"] = Timing.of(imports).as_dict()
    total = [r["registration_s"] + r["first_call_s"] for r in runs]
    phases["total_s"] = Timing.of(total).as_dict()
    return {"max_new_tokens": max_new_tokens, "phases": phases}
