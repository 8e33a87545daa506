"""The import structure keeps its floors: a bottom floor that imports nothing above it, and packages that
reach down to it only.

Imports are read from the source (ast), lazy ones inside functions and module names passed to
`import_module` / `register_lazy` included, so a rule cannot be dodged by importing late.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "reid", "detectors", "samples")
PROJECT = (*PACKAGES, "benchmarks")

# The bottom floor: messages, errors, typed config, the registry, atomic writes, file formats. Every
# package may import these; they import none of the rest. `pipeline` is its package's (empty) __init__.
FLOOR = frozenset(
    {
        "pipeline",
        "pipeline.atomic",
        "pipeline.errors",
        "pipeline.messages",
        "pipeline.motchallenge",
        "pipeline.ort_options",
        "pipeline.registry",
        "pipeline.typed_config",
    }
)


@dataclass(frozen=True)
class Import:
    importer: str  # module name
    line: int
    target: str  # the module named by the import


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


MODULES = _modules()


def _resolve(importer: str, path: Path, node: ast.ImportFrom) -> list[str]:
    """Modules an `from X import a, b` loads: X, and X.a where that is a module."""
    base = node.module or ""
    if node.level:
        package = importer.split(".") if path.name == "__init__.py" else importer.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    return [base] + [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES]


def _named_in_calls(node: ast.Call) -> list[str]:
    """Module names given as constants to import_module(...) or Registry.register_lazy(name, module)."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if name not in ("import_module", "register_lazy", "__import__"):
        return []
    return [
        a.value
        for a in node.args
        if isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value.split(".")[0] in PROJECT
    ]


def _imports(module: str, path: Path) -> list[Import]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            targets = _resolve(module, path, node)
        elif isinstance(node, ast.Call):
            targets = _named_in_calls(node)
        else:
            continue
        for target in targets:
            # importing a.b.c runs a/__init__ and a/b/__init__ too
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                loaded = ".".join(parts[:i])
                if parts[0] in PROJECT and loaded != module:
                    found.append(Import(module, node.lineno, loaded))
    return found


IMPORTS = [imp for module, path in MODULES.items() for imp in _imports(module, path)]


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _report(bad: list[Import]) -> str:
    return "\n".join(f"{MODULES[b.importer].relative_to(ROOT)}:{b.line} imports {b.target}" for b in bad)


def test_the_floor_modules_exist():
    missing = sorted(FLOOR - MODULES.keys())
    assert not missing, missing


def test_the_floor_imports_nothing_above_it():
    bad = [i for i in IMPORTS if i.importer in FLOOR and i.target not in FLOOR]
    assert not bad, _report(bad)


@pytest.mark.parametrize("package", ["reid", "detectors"])
def test_reid_and_detectors_reach_into_pipeline_only_for_the_floor(package: str):
    bad = [
        i
        for i in IMPORTS
        if _in(i.importer, package) and not _in(i.target, package) and i.target not in FLOOR
    ]
    assert not bad, _report(bad)


@pytest.mark.parametrize("package", ["pipeline", "reid", "detectors"])
def test_no_library_package_imports_samples_or_benchmarks(package: str):
    bad = [
        i
        for i in IMPORTS
        if _in(i.importer, package) and (_in(i.target, "samples") or _in(i.target, "benchmarks"))
    ]
    assert not bad, _report(bad)


def test_only_the_command_line_reaches_the_tools():
    allowed = ("pipeline.cli", "pipeline.tools", "samples")
    bad = [
        i for i in IMPORTS if _in(i.target, "pipeline.tools") and not any(_in(i.importer, a) for a in allowed)
    ]
    assert not bad, _report(bad)


def test_the_reader_sees_lazy_and_relative_imports():
    """The rules above are only as good as the import reader: check it on the project's own lazy imports."""
    targets = {(i.importer, i.target) for i in IMPORTS}
    assert ("pipeline.cli", "pipeline.tools.multicam") in targets  # inside a function
    assert ("pipeline.embedders", "pipeline.embedders.onnx") in targets  # register_lazy(name, "module")
    assert ("reid.models.weights", "pipeline.atomic") in targets
