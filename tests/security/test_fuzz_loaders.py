"""Fuzzing the rule and config loaders: only their own error, time linear in size.

Rule files are edited by hand and reloaded while the gateway serves; a config file is
read once at start and by `check`. Whatever the text, the loaders must answer with
`RuleError`/`ConfigError` (or the problems list) naming file and line, never another
exception (a traceback where one line was owed, or a reloader that stops for good),
and never take time out of proportion to the text (the alias bomb of issue 10 made a
377-byte file cost gigabytes).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import DEFAULT_PURPOSES, parse_config
from gateway.errors import ConfigError
from gateway.ruleset.parse import parse_rule
from tests.conftest import ROOT, RULES_DIR

PURPOSES = frozenset(DEFAULT_PURPOSES)
RULE_TEXT = (RULES_DIR / "google-analytics-4.yaml").read_text()
CONFIG_TEXT = (ROOT / "config.example.yaml").read_text()
ENV = {"CONSENT_GATEWAY_COOKIE_KEY": "x" * 43}


def _rule(text: str) -> object:
    rule, problems = parse_rule(text, "fuzz.yaml", PURPOSES)
    assert (rule is None) == bool(problems)
    return rule


def _config(text: str) -> object:
    try:
        return parse_config(text, "<fuzz>", env=ENV)
    except ConfigError as e:
        assert e.problems  # an error always says what is wrong
        return None


LOADERS: list[tuple[str, Callable[[str], object], str]] = [
    ("rule", _rule, RULE_TEXT),
    ("config", _config, CONFIG_TEXT),
]

# YAML-ish alphabet: structure characters are what break parsers, so weight them
_YAMLISH = st.text(alphabet=st.sampled_from(list(":-[]{}&*!|>'\"#,? \n\tab1%@")), max_size=300)


def _mutations(base: str) -> st.SearchStrategy[str]:
    """`base` with a slice replaced by arbitrary or YAML-ish text: near-valid documents."""
    return st.tuples(
        st.integers(0, len(base)), st.integers(0, 80), st.one_of(_YAMLISH, st.text(max_size=80))
    ).map(lambda t: base[: t[0]] + t[2] + base[t[0] + t[1] :])


@pytest.mark.parametrize(("name", "load", "base"), LOADERS, ids=[x[0] for x in LOADERS])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_loaders_raise_only_their_own_error(
    name: str, load: Callable[[str], object], base: str, data: st.DataObject
) -> None:
    text = data.draw(st.one_of(_YAMLISH, st.text(max_size=300), _mutations(base)))
    load(text)  # anything but ConfigError (or a problems list) escaping fails the test


@pytest.mark.parametrize(("name", "load", "base"), LOADERS, ids=[x[0] for x in LOADERS])
@settings(max_examples=60, deadline=None)
@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
        ),
        max_leaves=12,
    ),
    key=st.integers(0, 200),
)
def test_loaders_take_any_value_in_any_key(
    name: str, load: Callable[[str], object], base: str, value: object, key: int
) -> None:
    doc = yaml.safe_load(base)
    paths = list(_key_paths(doc))
    parent, k = paths[key % len(paths)]
    if isinstance(parent, dict):
        parent[str(k)] = value
    else:
        assert isinstance(k, int)
        parent[k] = value
    load(yaml.safe_dump(doc))


def _key_paths(node: object) -> list[tuple[dict[str, object] | list[object], object]]:
    out: list[tuple[dict[str, object] | list[object], object]] = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append((node, k))
            out += _key_paths(v)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.append((node, i))
            out += _key_paths(v)
    return out


def _cost(load: Callable[[str], object], text: str) -> float:
    # CPU time of this thread: other processes (test workers, browsers) must not count
    best = float("inf")
    for _ in range(3):
        started = time.thread_time()
        load(text)
        best = min(best, time.thread_time() - started)
    return best


GROWTH: list[tuple[str, Callable[[str], object], Callable[[int], str]]] = [
    ("rule-endpoints", _rule, lambda n: _many_endpoints(n)),
    ("rule-nesting", _rule, lambda n: "vendor: x\nhosts: " + "[" * n + "]" * n + "\n"),
    ("config-keys", _config, lambda n: "".join(f"k{i}: {{a: [1, 2]}}\n" for i in range(n))),
    ("anchors", _config, lambda n: "a: &a [x]\n" + "b: [" + ",".join(["*a"] * n) + "]\n"),
]


def _many_endpoints(n: int) -> str:
    head, _, _ = RULE_TEXT.partition("endpoints:")
    endpoint = "  - id: e{i}\n    method: GET\n    path: /p{i}\n    kind: beacon\n"
    return head + "endpoints:\n" + "".join(endpoint.format(i=i) for i in range(n))


@pytest.mark.parametrize(("name", "load", "make"), GROWTH, ids=[x[0] for x in GROWTH])
def test_cost_is_linear_in_size(
    name: str, load: Callable[[str], object], make: Callable[[int], str]
) -> None:
    small, large = _cost(load, make(60)), _cost(load, make(480))
    assert large < 30 * max(small, 50e-6), f"{name}: {small * 1e3:.2f} ms -> {large * 1e3:.2f} ms"
