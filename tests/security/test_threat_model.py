"""THREAT_MODEL.md names the test that holds each line: every one it names must exist.

A threat model whose tests were renamed or deleted is a list of claims again; this
keeps the document and the suite from drifting apart.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import ROOT

DOC = (ROOT / "THREAT_MODEL.md").read_text(encoding="utf-8")
#: `tests/x.py::test_name`, and `::test_other` continuing the same file
_REF = re.compile(r"`(tests/[\w/]+\.py)?(?:::(test_\w+))?[^`]*`")


def _references() -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for line in DOC.splitlines():
        current: str | None = None
        for m in _REF.finditer(line):
            path, test = m.group(1), m.group(2)
            if path:
                current = path
            if current and (path or test):
                out.append((current, test))
    return out


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        n.name
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("test_")
    }


def test_every_test_the_threat_model_names_exists() -> None:
    refs = _references()
    assert len({t for _, t in refs if t}) >= 60  # the parser found the table's tests
    missing = [
        f"{path}::{test}" if test else path
        for path, test in refs
        if not (ROOT / path).exists() or (test and test not in _tests_in(ROOT / path))
    ]
    assert missing == []


def test_every_section_has_a_user_line_or_says_why_not() -> None:
    sections = re.split(r"^## ", DOC, flags=re.M)[1:]
    defended = [s for s in sections if s[:1].isdigit()]
    assert len(defended) == 7
    # sections 1-6 each tell the operator what they must do; 7 is the gateway's alone
    for section in defended[:6]:
        assert "**User:**" in section, section.splitlines()[0]
