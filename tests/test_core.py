"""gateway.core: the pure middle, and the import contract that keeps it pure.

The contract: importing any core module loads none of aiohttp, asyncpg, sqlite3 or
prometheus_client. Each module is imported in a fresh interpreter (an import already
made by this test process would hide a leak).
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gateway.config import DEFAULT_PURPOSES
from gateway.core import address_in, evaluate
from gateway.model import Action, Facts
from gateway.ruleset.load import load_rules
from tests.conftest import ROOT, RULES_DIR, make_config

#: the modules that must stay free of I/O libraries (README "Layout")
CORE = [
    "gateway.core",
    "gateway.consent",
    "gateway.consent.choice",
    "gateway.consent.cmp",
    "gateway.consent.cmp_base",
    "gateway.consent.cmp_lists",
    "gateway.consent.cmp_objects",
    "gateway.consent.cookie",
    "gateway.consent.detect",
    "gateway.consent.gcm",
    "gateway.consent.gpc",
    "gateway.consent.gpp",
    "gateway.consent.gpp_bits",
    "gateway.consent.gpp_tcf",
    "gateway.consent.gpp_us",
    "gateway.consent.regimes",
    "gateway.consent.resolve",
    "gateway.consent.signals",
    "gateway.consent.tcf",
    "gateway.consent.tcf_bits",
    "gateway.consent.usp",
    "gateway.ruleset",
    "gateway.ruleset.draft",
    "gateway.ruleset.declare",
    "gateway.ruleset.drop_answer",
    "gateway.ruleset.grammars",
    "gateway.ruleset.keys",
    "gateway.ruleset.lint",
    "gateway.ruleset.load",
    "gateway.ruleset.parse",
    "gateway.ruleset.match",
    "gateway.ruleset.schema",
    "gateway.decide",
    "gateway.transform",
    "gateway.transform_query",
    "gateway.transform_body",
    "gateway.transform_headers",
    "gateway.identifiers",
    "gateway.bodies",
    "gateway.redact",
    "gateway.csp",
    "gateway.violations",
    "gateway.explain",
    "gateway.examples",
    "gateway.model",
    "gateway.config",
    "gateway.config.consent",
    "gateway.config.convert",
    "gateway.config.json_schema",
    "gateway.config.load",
    "gateway.config.schema",
    "gateway.config.spec",
    "gateway.errors",
    "gateway.grammar",
    "gateway.yamlsrc",
]
IO_LIBRARIES = ("aiohttp", "asyncpg", "sqlite3", "prometheus_client")


def _leaks(module: str) -> list[str]:
    code = (
        "import importlib, sys\n"
        f"importlib.import_module({module!r})\n"
        f"print(' '.join(m for m in {IO_LIBRARIES!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_the_core_imports_no_io_library() -> None:
    # One interpreter per module (a module imported earlier would hide what the next one
    # loads), a few at a time: starting them is most of the cost.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        found = dict(zip(CORE, pool.map(_leaks, CORE), strict=True))
    assert {m: leaked for m, leaked in found.items() if leaked} == {}


def test_the_contract_check_sees_a_leak() -> None:
    # the check itself can fail: an edge module does load them
    assert set(_leaks("gateway.pipeline")) >= {"aiohttp"}


def test_every_core_module_is_listed() -> None:
    pure = {"core", "decide", "transform", "identifiers", "bodies", "redact", "explain"}
    pure |= {"model", "config", "errors", "yamlsrc"}
    for name in pure:
        assert f"gateway.{name}" in CORE
    for package in ("consent", "ruleset", "config"):
        for path in sorted((ROOT / "gateway" / package).glob("*.py")):
            module = f"gateway.{package}" + ("" if path.stem == "__init__" else f".{path.stem}")
            assert module in CORE, module


# --- evaluate, directly: plain values in, a decision out -------------------------------------

RULES = load_rules([RULES_DIR], frozenset(DEFAULT_PURPOSES))


def _facts(host: str, path: str, method: str = "GET", query: str = "") -> Facts:
    return Facts("c1", method, host, path, query, now=1_800_000_000.0)


@pytest.mark.parametrize(
    ("host", "path", "method", "action", "vendor", "reason"),
    [
        ("www.google-analytics.com", "/g/collect", "GET", Action.DROP, "google-analytics-4", None),
        (
            "www.google-analytics.com",
            "/g/alice%40example.com/collect",
            "DELETE",
            Action.REJECT,
            "google-analytics-4",
            "no endpoint of google-analytics-4 matches DELETE /g/{…}/collect",
        ),
        ("evil.example", "/x", "GET", Action.REJECT, None, "no rule lists this destination"),
    ],
)
def test_evaluate(
    tmp_path: Path,
    host: str,
    path: str,
    method: str,
    action: Action,
    vendor: str | None,
    reason: str | None,
) -> None:
    ev = evaluate(_facts(host, path, method, "v=2"), make_config(tmp_path), RULES)
    assert (ev.decision.action, ev.decision.vendor) == (action, vendor)
    if reason is not None:
        assert ev.decision.reason == reason
    assert ev.outgoing is None  # nothing of these leaves


@pytest.mark.parametrize(
    ("address", "inside"),
    [("10.1.2.3", True), ("11.0.0.1", False), (None, False), ("not-an-ip", False), ("::1", False)],
)
def test_address_in(address: str | None, inside: bool) -> None:
    assert address_in(address, (ipaddress.ip_network("10.0.0.0/8"),)) is inside
