"""The layers of the package, enforced: a module imports only its own layer or lower.

    top    app, cli, serve, admin/*, consent_api,  wiring, HTTP routes, commands
           reports
    edge   pipeline, front, edges, upstream, beacons, store/*, decision_log, access_log,
           webhooks, reload, metrics, state, ratelimit, cors
                                                   I/O: requests, sockets, files, databases
    core   core, explain, examples                 the pure middle, run on plain values
    leaf   consent/*, ruleset/*, decide, transform*, identifiers, bodies, redact, csp,
           violations, schemas
    base   model, errors, config, yamlsrc, memo,   the types, the config schema, caches,
           grammar                                 string grammars

`tests/test_core.py` checks that the core loads no I/O library at run time; this
reads every import statement (function-level ones included) so a new dependency
pointing upwards fails here, with the line, before it can pull I/O into the core.
Not a mirror of a module: it is the contract between them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "gateway"
LAYERS = ["base", "leaf", "core", "edge", "top"]
_OF: dict[str, str] = {
    **dict.fromkeys(["model", "errors", "config", "yamlsrc", "memo", "grammar"], "base"),
    **dict.fromkeys(
        [
            "consent",
            "ruleset",
            "decide",
            "transform",
            "transform_query",
            "transform_body",
            "transform_headers",
            "identifiers",
            "bodies",
            "redact",
            "csp",
            "violations",
            # the JSON Schemas of rules and config, from ruleset/keys and config/json_schema
            "schemas",
        ],
        "leaf",
    ),
    **dict.fromkeys(["core", "explain", "examples"], "core"),
    **dict.fromkeys(
        [
            "pipeline",
            "front",
            "edges",
            "upstream",
            "beacons",
            "store",
            "decision_log",
            "access_log",
            "webhooks",
            "reload",
            "metrics",
            "state",
            "ratelimit",
            "cors",
        ],
        "edge",
    ),
    **dict.fromkeys(
        ["app", "cli", "serve", "admin", "consent_api", "reports", "router", "__main__"], "top"
    ),
    # the package itself: its version, nothing else
    "__init__": "base",
}


def _layer(module: str) -> str:
    """`gateway.consent.tcf` -> the layer of `consent`."""
    first = module.split(".")[1] if module.count(".") else "__init__"
    return _OF[first]


def _module_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 2:
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("gateway.")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "gateway":
                # `from gateway import edges` names a module; `__version__` the package
                out += [
                    (node.lineno, f"gateway.{a.name}" if a.name in _OF else "gateway")
                    for a in node.names
                ]
            elif node.module.startswith("gateway."):
                out.append((node.lineno, node.module))
    return out


FILES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(
        {
            _module_of(f)
            for f in FILES
            if _module_of(f).split(".")[1:2] and _module_of(f).split(".")[1] not in _OF
        }
    )
    assert unplaced == []


def _upward(path: Path, module: str) -> list[str]:
    mine = LAYERS.index(_layer(module))
    return [
        f"{path.relative_to(path.parents[1])}:{line}: {module} ({LAYERS[mine]}) imports "
        f"{target} ({_layer(target)})"
        for line, target in _imports(path)
        if LAYERS.index(_layer(target)) > mine
    ]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down_or_across(path: Path) -> None:
    assert _upward(path, _module_of(path)) == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    # control: how consent/resolve once reached the store (and through it asyncpg)
    leaf = tmp_path / "gateway" / "resolve.py"
    leaf.parent.mkdir()
    leaf.write_text("def f():\n    from gateway.store.base import CurrentConsent\n")
    [found] = _upward(leaf, "gateway.consent.resolve")
    assert "imports gateway.store.base (edge)" in found and ":2:" in found
