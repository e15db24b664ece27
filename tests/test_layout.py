"""House rules a reader relies on: modules use each other's public names only."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]
OURS = ("hookspecs", "qwen3tts_plugin", "example_host", "benchmarks")
TREES = (*OURS, "tests")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_of(node: ast.ImportFrom, path: Path) -> str:
    """The absolute module an ``from ... import`` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def test_no_module_reaches_into_another_modules_private_names():
    """``from x import _y`` and ``x._y`` across modules of ours (benchmarks and tests too)."""
    found = []
    for tree in TREES:
        for path in (ROOT / tree).rglob("*.py"):
            module_here = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            parsed = ast.parse(path.read_text(encoding="utf-8"))
            aliases: set[str] = set()
            for node in ast.walk(parsed):
                if isinstance(node, ast.ImportFrom):
                    source = _module_of(node, path)
                    if source.split(".")[0] not in OURS or source == module_here:
                        continue
                    for alias in node.names:
                        if _private(alias.name):
                            found.append(
                                f"{path.relative_to(ROOT)}: from {source} import {alias.name}"
                            )
                        else:
                            aliases.add(alias.asname or alias.name)
                elif isinstance(node, ast.Import):
                    for alias in node.names:
                        if alias.name.split(".")[0] in OURS:
                            aliases.add(alias.asname or alias.name.split(".")[0])
            for node in ast.walk(parsed):
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name)
                    and node.value.id in aliases
                    and _private(node.attr)
                ):
                    found.append(
                        f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.id}.{node.attr}"
                    )
    assert not found, "\n".join(found)


MODEL_LIBRARIES = ("qwen_tts", "transformers", "faster_qwen3_tts")


def test_only_backends_import_the_model_libraries():
    """qwen_tts, transformers and faster-qwen3-tts belong to ``qwen3tts_plugin/backends/``:
    the engine around them (planning, residency, speaking) never names them."""
    package = ROOT / "qwen3tts_plugin"
    found = []
    for path in package.rglob("*.py"):
        if path.relative_to(package).parts[0] == "backends":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            found += [
                f"{path.relative_to(ROOT)}:{node.lineno}: {name}"
                for name in names
                if name.split(".")[0] in MODEL_LIBRARIES
            ]
    assert not found, "\n".join(found)
