"""The package's shape: layers that import one way only, and no function too long to read."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "gpt_classifier"

# Lower layers never import higher ones; packages on the same layer never import each other.
# The top-level modules (config, model, tokenizer, weights, generation, distributed...) are the
# core every layer stands on.
LAYERS = {
    "": 0,
    "data": 1,
    "classifier": 2,
    "evaluation": 3,
    "runs": 4,
    "training": 5,
    "inference": 5,
    "serving": 6,
    "experiments": 6,
    "export": 6,
    "cli": 7,
}
MAX_FUNCTION_LINES = 80


def _package_of(module: str) -> str:
    """``gpt_classifier.training.loop`` -> ``training``; a top-level module -> ``""``."""
    parts = module.split(".")[1:]
    if len(parts) >= 2 and parts[0] in LAYERS:
        return parts[0]
    if len(parts) == 1 and (PACKAGE / parts[0]).is_dir():
        return parts[0]
    return ""


def _module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(source: str, name: str, is_package: bool) -> list[tuple[int, str]]:
    """Every module of the package that module ``name`` imports (function-local ones too)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [target]
            if node.module is None:  # `from .. import distributed`: the names are modules
                targets = [f"{target}.{alias.name}" for alias in node.names]
            found += [(node.lineno, t) for t in targets]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, t) for line, t in found if t.split(".")[0] == "gpt_classifier"]


def test_every_package_has_a_layer():
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages <= set(LAYERS), f"packages without a layer: {packages - set(LAYERS)}"


def _against_layers(source: str, name: str, is_package: bool = False) -> list[str]:
    """``line: target`` for each import of module ``name`` that goes up or sideways."""
    layer = _package_of(name if is_package else name + ".x")
    wrong = []
    for line, target in _imports(source, name, is_package):
        imported = _package_of(target)
        sideways_or_up = imported != layer and LAYERS[imported] >= LAYERS[layer]
        if target != "gpt_classifier" and sideways_or_up:  # the root gives __version__
            wrong.append(f"{line}: {target}")
    return wrong


def test_imports_go_one_way():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in (PACKAGE / "__init__.py", PACKAGE / "__main__.py"):
            continue  # the package's front doors may name anything
        name, is_package = _module_name(path), path.name == "__init__.py"
        for wrong in _against_layers(path.read_text(), name, is_package):
            upward.append(f"{path.relative_to(PACKAGE)}:{wrong}")
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_the_checker_sees_upward_and_sideways_imports():
    assert _against_layers("from ..training.loop import x", "gpt_classifier.data.fake") == [
        "1: gpt_classifier.training.loop"
    ]
    local = "def f():\n    from ..inference import predict\n"
    assert _against_layers(local, "gpt_classifier.training.fake") == ["2: gpt_classifier.inference"]
    assert _against_layers("from .classifier import x", "gpt_classifier.weights") == [
        "1: gpt_classifier.classifier"
    ]
    assert _against_layers("from ..model import GPTModel", "gpt_classifier.data.fake") == []


def test_no_function_is_too_long():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.name} ({length} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {', '.join(long)}"
