"""The walls between the layers, read from the source of every project module.

Data flows one way: ``data`` -> ``engine`` -> ``explainers`` -> ``app``. The engine, the
explainers and the data layer never import the plotting stack; the explainers explain any model
through the model contract alone (no ``engine``); ``data`` imports nothing of the project; and no
module loads a project module by name (a broken module must fail at import, not vanish).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("app", "engine", "explainers", "data")
PLOTTING = {"panel", "holoviews", "bokeh", "datashader"}


def modules(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Top-level package names and full dotted names imported anywhere in ``path``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names | {name.split(".")[0] for name in names}


def test_every_layer_has_modules() -> None:
    for layer in LAYERS:
        assert modules(layer), f"no modules found under {layer}/"


@pytest.mark.parametrize("layer", ["engine", "explainers", "data"])
def test_compute_layers_never_import_the_plotting_stack(layer: str) -> None:
    bad = {str(p.relative_to(ROOT)): imported(p) & PLOTTING for p in modules(layer)}
    assert not {k: v for k, v in bad.items() if v}


def test_explainers_never_import_the_engine_or_the_app() -> None:
    bad = {str(p.relative_to(ROOT)): imported(p) & {"engine", "app"} for p in modules("explainers")}
    assert not {k: v for k, v in bad.items() if v}


def test_data_imports_nothing_of_the_project() -> None:
    project = {"engine", "explainers", "app"}
    bad = {str(p.relative_to(ROOT)): imported(p) & project for p in modules("data")}
    assert not {k: v for k, v in bad.items() if v}


def test_engine_never_imports_the_app() -> None:
    bad = {str(p.relative_to(ROOT)): imported(p) & {"app"} for p in modules("engine")}
    assert not {k: v for k, v in bad.items() if v}


def test_no_project_module_is_loaded_by_name() -> None:
    found = []
    for layer in LAYERS:
        for path in modules(layer):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Call):
                    func = node.func
                    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                    if name in ("import_module", "__import__"):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, f"modules loaded by name: {found}"


def test_no_class_is_over_350_lines() -> None:
    long = []
    for layer in LAYERS:
        for path in modules(layer):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                    lines = node.end_lineno - node.lineno + 1
                    if lines > 350:
                        long.append(f"{path.relative_to(ROOT)}:{node.name} ({lines} lines)")
    assert not long, long


def test_the_dashboard_service_stays_a_thin_facade() -> None:
    lines = (ROOT / "app" / "dashboard" / "engine_service.py").read_text().count("\n")
    assert lines < 400, f"engine_service.py has {lines} lines"
