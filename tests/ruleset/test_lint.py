"""gateway.ruleset.lint: endpoints that can never match; strips no example exercises."""

from __future__ import annotations

import pytest

from gateway.config import DEFAULT_PURPOSES
from gateway.ruleset.lint import lint_rules
from gateway.ruleset.load import load_rules
from gateway.ruleset.parse import parse_rule
from tests.conftest import RULES_DIR

HEAD = """
vendor: acme
name: Acme
hosts: [t.acme.example]
purposes: [advertising]
always: {cookies: all, ip: truncate, referrer: origin}
"""


def lint(text: str) -> list[str]:
    rule, problems = parse_rule(HEAD + text, "acme.yaml", frozenset(DEFAULT_PURPOSES))
    assert rule is not None, problems
    return [p.message for p in lint_rules([rule])]


EXAMPLE = """
examples:
  - {url: "https://t.acme.example/px?id=1&uid=2", consent: {advertising: denied}, expect: strip}
"""


def eps(*lines: str) -> str:
    return "".join(f"  - {line}\n" for line in lines)


@pytest.mark.parametrize(
    ("endpoints", "shadowed"),
    [
        (
            eps(
                "{id: a, match: {path_prefix: /p}, kind: pixel}",
                "{id: b, match: {path: /px}, kind: pixel}",
            ),
            True,
        ),
        (
            eps(
                "{id: a, match: {path_prefix: /p}, kind: pixel}",
                "{id: b, match: {path_prefix: /px/}, kind: pixel}",
            ),
            True,
        ),
        (
            eps(
                "{id: a, match: {path_regex: '/p.*'}, kind: pixel}",
                "{id: b, match: {path: /px}, kind: pixel}",
            ),
            True,
        ),
        (
            eps(
                "{id: a, match: {path: /px}, kind: pixel}",
                "{id: b, match: {path: /px}, kind: pixel}",
            ),
            True,
        ),
        # different methods: both can match
        (
            eps(
                "{id: a, match: {path: /px, methods: [POST]}, kind: pixel}",
                "{id: b, match: {path: /px, methods: [GET]}, kind: pixel}",
            ),
            False,
        ),
        (
            eps(
                "{id: a, match: {path: /px}, kind: pixel}",
                "{id: b, match: {path_prefix: /p}, kind: pixel}",
            ),
            False,
        ),
    ],
)
def test_shadowed_endpoints(endpoints: str, shadowed: bool) -> None:
    text = "when_denied: {advertising: {query: [uid]}}\nendpoints:\n" + endpoints + EXAMPLE
    found = [m for m in lint(text) if "can never match" in m]
    assert bool(found) is shadowed, found


@pytest.mark.parametrize(
    ("strip", "warned"),
    [
        ("{query: [uid]}", []),
        ("{query: [uid, glcid]}", ["glcid"]),
        ("{query: ['u*']}", []),
        ("{query: ['x*']}", ["x*"]),
    ],
)
def test_strips_no_example_contains(strip: str, warned: list[str]) -> None:
    text = (
        f"when_denied: {{advertising: {strip}}}\nendpoints:\n"
        "  - {id: a, match: {path: /px}, kind: pixel}\n" + EXAMPLE
    )
    found = [m for m in lint(text) if "no example contains" in m]
    assert [m.split("'")[1] for m in found] == warned


def test_shipped_google_rules_lint_clean() -> None:
    rules = load_rules(
        [RULES_DIR / "google-analytics-4.yaml", RULES_DIR / "google-floodlight.yaml"],
        frozenset(DEFAULT_PURPOSES),
    )
    assert lint_rules(rules.rules) == []


def ex(path: str, consent: str, expect: str) -> str:
    return f'  - {{url: "https://t.acme.example{path}", consent: {consent}, expect: {expect}}}\n'


TWO_PURPOSES = eps(
    "{id: px, match: {path: /px}, kind: pixel}",
    "{id: js, match: {path: /a.js}, kind: script, purposes: [analytics, advertising]}",
    "{id: ping, match: {path: /ping}, kind: beacon, purposes: [necessary]}",
    "{id: old, match: {path: /old}, kind: beacon, purposes: [functional], retired: true}",
)


@pytest.mark.parametrize(
    ("examples", "untested"),
    [
        # a drop where advertising is denied, on an endpoint needing it; analytics not shown
        (ex("/px", "{advertising: denied}", "drop"), ["analytics"]),
        # unknown is not granted: this drop shows both purposes of /a.js
        (ex("/a.js", "{}", "drop"), []),
        (ex("/a.js", "{advertising: granted}", "drop"), ["advertising"]),
        # a forward shows nothing about a denial, nor does a denial on another endpoint
        (ex("/a.js", "{analytics: denied}", "forward"), ["advertising", "analytics"]),
        (
            ex("/px", "{analytics: denied, advertising: granted}", "drop"),
            ["advertising", "analytics"],
        ),
        # strip counts as drop does; necessary and a retired endpoint's purpose need nothing
        (
            ex("/px", "{advertising: denied}", "strip")
            + ex("/a.js", "{analytics: denied}", "drop"),
            [],
        ),
    ],
)
def test_a_purpose_without_a_drop_or_strip_example(examples: str, untested: list[str]) -> None:
    text = "endpoints:\n" + TWO_PURPOSES + "examples:\n" + examples
    found = [m for m in lint(text) if "no drop or strip example" in m]
    assert [m.split("'")[1] for m in found] == untested
    for m in found:
        assert m.startswith("warning: ")
