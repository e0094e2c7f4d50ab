"""Tests mirror the package: every module in gateway/ has its test module.

`gateway/x.py` -> `tests/test_x.py`; `gateway/pkg/x.py` -> `tests/pkg/test_x.py`.
Also checks that:
- no module is over 600 lines: past that a module holds more than one job, and is split
  by job (as decision_log/, admin/ and config/ were);
- every module declares `__all__` naming only what exists;
- no test module imports another: what tests share lives in a conftest.py or a helper
  module (tests/harness.py, tests/stores.py, tests/signal_values.py, `*_harness.py`),
  so that running, moving or deleting one test module never changes another.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(
    p for p in (ROOT / "gateway").rglob("*.py") if p.name not in ("__init__.py", "__main__.py")
)


@pytest.mark.parametrize("module", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_has_a_test_module(module: Path) -> None:
    rel = module.relative_to(ROOT / "gateway")
    expected = ROOT / "tests" / rel.parent / f"test_{rel.name}"
    assert expected.exists(), f"missing {expected.relative_to(ROOT)}"


@pytest.mark.parametrize("module", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_declares_all(module: Path) -> None:
    rel = module.relative_to(ROOT).with_suffix("")
    mod = importlib.import_module(".".join(rel.parts))
    names = getattr(mod, "__all__", None)
    assert names is not None, f"{rel} has no __all__"
    for name in names:
        assert hasattr(mod, name), f"{rel}.__all__ names missing {name}"


TEST_FILES = sorted((ROOT / "tests").rglob("*.py"))


def _is_test_module(module: str) -> bool:
    return module.rsplit(".", 1)[-1].startswith("test_")


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_test_module_imports_another(path: Path) -> None:
    imported = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        imported += [
            f"{path.name}:{node.lineno}: {name}"
            for name in names
            if name.startswith("tests.") and _is_test_module(name)
        ]
    assert imported == []


MAX_LINES = 600


@pytest.mark.parametrize("module", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_is_at_most_600_lines(module: Path) -> None:
    lines = len(module.read_text().splitlines())
    assert lines <= MAX_LINES, f"{module.relative_to(ROOT)}: {lines} lines"


def test_every_data_file_of_the_package_is_shipped() -> None:
    # A file the package reads at run time (a template, the router script) that no
    # package-data pattern names works in the editable checkout and is missing from the
    # image, which installs the package.
    import tomllib

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["gateway"]
    package = ROOT / "gateway"
    shipped = {p for pattern in patterns for p in package.glob(pattern) if p.is_file()}
    data = {
        p
        for p in package.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    }
    assert sorted(str(p.relative_to(package)) for p in data - shipped) == []
