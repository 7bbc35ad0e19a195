"""The package's import rules (DESIGN §1, STYLE 2-3), checked on the source with `ast`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "flexseg"
MAX_LINES = 300


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """Every module a file imports (absolute names; `from a import b` counts as `a` and `a.b`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


@pytest.mark.parametrize("path", _modules(), ids=_name)
def test_import_rules(path: Path) -> None:
    name, imports = _name(path), _imports(path)
    if not name.startswith("flexseg.tracking"):
        assert not {m for m in imports if m.split(".")[0] == "mlflow"}, f"{name}: only flexseg.tracking imports mlflow"
    if name.startswith("flexseg.modes."):
        others = {m for m in imports if m.startswith("flexseg.modes.") and m != "flexseg.modes.common"}
        assert not others, f"{name} imports another mode: {others}; shared code goes to flexseg/modes/common.py"
    elif name not in ("flexseg.cli", "flexseg.__main__"):
        assert not {m for m in imports if m.startswith(("flexseg.modes", "flexseg.cli"))}, f"{name} imports a mode"
    if name.startswith(("flexseg.config", "flexseg.cli", "flexseg.context", "flexseg.errors", "flexseg.scoring")):
        heavy = {m for m in imports if m.split(".")[0] in ("tensorflow", "keras", "mlflow")}
        assert not heavy, f"{name} must stay importable without TensorFlow/MLflow: {heavy}"


@pytest.mark.parametrize("path", _modules(), ids=_name)
def test_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{_name(path)} has {lines} lines; split it by responsibility (<= {MAX_LINES})"
