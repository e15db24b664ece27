"""Model folders checked before any load: files present, weights whole. No torch needed."""

from __future__ import annotations

import json
import struct

import pytest

from hookspecs import EngineConfig
from qwen3tts_plugin.registry import missing_files, safetensors_problem, weight_problems
from qwen3tts_plugin.settings import model_settings


def safetensors_bytes(tensors: dict[str, int], header: object | None = None) -> bytes:
    """A safetensors file by hand: 8-byte header length, JSON table, then the data."""
    table: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, size in tensors.items():
        table[name] = {"dtype": "U8", "shape": [size], "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(table if header is None else header).encode()
    return struct.pack("<Q", len(raw)) + raw + b"\0" * offset


def test_a_whole_file_passes_and_a_cut_one_says_how_much_is_missing(tmp_path):
    whole = tmp_path / "model.safetensors"
    whole.write_bytes(safetensors_bytes({"a": 100, "b": 50}))
    assert safetensors_problem(whole) is None
    data = whole.read_bytes()
    whole.write_bytes(data[:-30])
    assert safetensors_problem(whole) == f"truncated: {len(data) - 30} of {len(data)} bytes"
    whole.write_bytes(data + b"junk")
    assert safetensors_problem(whole).startswith("damaged: ")


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x05\x00",
        struct.pack("<Q", 10**12) + b"{}",  # a header length no real file has
        struct.pack("<Q", 4) + b"nope",
        safetensors_bytes({}, header=["not", "a", "table"]),
        safetensors_bytes({}, header={"a": {"data_offsets": ["0", "8"]}}),
        safetensors_bytes({}, header={"a": {"data_offsets": [8, 0]}}),
        safetensors_bytes({}, header={"a": {"shape": [1]}}),
        safetensors_bytes({}, header={"a": "x"}),
    ],
    ids=[
        "empty",
        "short",
        "huge header",
        "not json",
        "list",
        "text offsets",
        "backwards",
        "no offsets",
        "entry not a table",
    ],
)
def test_damaged_headers_are_reported_never_raised(tmp_path, content):
    file = tmp_path / "model.safetensors"
    file.write_bytes(content)
    problem = safetensors_problem(file)
    assert problem and problem.split(":")[0] in ("truncated", "damaged")


def test_sharded_weights_are_checked_shard_by_shard(tmp_path):
    (tmp_path / "model-1.safetensors").write_bytes(safetensors_bytes({"a": 10}))
    shard = safetensors_bytes({"b": 10})
    (tmp_path / "model-2.safetensors").write_bytes(shard[:-5])
    index = {
        "weight_map": {
            "a": "model-1.safetensors",
            "b": "model-2.safetensors",
            "c": "model-3.safetensors",
        }
    }
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    assert weight_problems(tmp_path) == [
        f"model-2.safetensors (truncated: {len(shard) - 5} of {len(shard)} bytes)",
        "model-3.safetensors (missing)",
    ]
    (tmp_path / "model.safetensors.index.json").write_text("{")
    assert weight_problems(tmp_path) == ["model.safetensors.index.json (unreadable)"]


def test_missing_files_names_the_speech_tokenizers_weights_too(tmp_path):
    import shutil

    pytest.importorskip("torch", reason="the tiny checkpoint is built with torch")
    from qwen3tts_plugin.testing import tiny_checkpoint

    tiny = {"custom_voice": tiny_checkpoint("custom_voice")}
    folder = tmp_path / "model"
    shutil.copytree(tiny["custom_voice"], folder)
    assert missing_files(folder) == []
    codec = folder / "speech_tokenizer" / "model.safetensors"
    codec.write_bytes(codec.read_bytes()[:100])
    [problem] = missing_files(folder)
    assert problem.startswith("speech_tokenizer/model.safetensors (truncated: ")


def test_model_settings_keep_what_validates_and_drop_the_rest():
    settings = model_settings({"ModelsDir": 3, "ModelKey": "base_0_6b", "Device": "gpu!"})
    assert settings.ModelKey == "base_0_6b" and settings.ModelsDir is None
    config = EngineConfig(provider="qwen3_tts", extra_params={"ModelPath": "~/m"})
    assert str(model_settings(config.extra_params).ModelPath) == "~/m"
