"""gateway.examples: every rule's `examples:` run in process, as `consent-gateway check` does.

The shipped rules' examples all hold here; tests/test_rules_examples.py sends the same
examples through a live gateway to a recording fake vendor.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gateway.config import DEFAULT_PURPOSES, RegimeConfig, RegimeMode
from gateway.examples import example_config, field_reached, run_examples
from gateway.ruleset.load import load_rules
from gateway.ruleset.match import RuleSet
from gateway.ruleset.parse import parse_rule
from tests.conftest import RULES_DIR, TEST_KEY, make_config

PURPOSES = frozenset(DEFAULT_PURPOSES)

RULE = """
vendor: acme
name: Acme
hosts: [t.acme.example]
purposes: [advertising]
always: {cookies: all, ip: truncate}
when_denied: {advertising: {query: [uid]}}
endpoints:
  - {id: px, match: {path: /px}, kind: pixel}
  - {id: batch, match: {path: /batch, methods: [POST]}, kind: beacon, body: json,
     when_denied: {advertising: {json: [user.id]}}}
  - {id: sdk, match: {path: /sdk.js}, kind: script, purposes: [analytics]}
examples:
"""


def run(example: str, rule: str = RULE) -> list[str]:
    """The failures of one example (YAML, indented as an item of `examples:`)."""
    parsed, problems = parse_rule(rule + example, "acme.yaml", PURPOSES)
    assert parsed is not None, problems
    return [str(p) for p in run_examples(RuleSet([parsed]))]


def example(url: str, consent: str, expect: str, *extra: str) -> str:
    lines = [f"  - url: {url}", f"    consent: {consent}", f"    expect: {expect}", *extra]
    return "\n".join(lines) + "\n"


PX = "https://t.acme.example/px?id=1&uid=2&ev=view"


@pytest.mark.parametrize(
    ("case", "failure"),
    [
        # as expected: nothing to say
        (example(PX, "{advertising: granted}", "forward", "    kept: [uid, ev]"), None),
        (
            example(PX, "{advertising: denied}", "strip", "    removed: [uid]", "    kept: [ev]"),
            None,
        ),
        (example(PX, "{}", "strip", "    removed: [uid]"), None),  # unknown is not granted
        (example("https://t.acme.example/sdk.js", "{analytics: denied}", "drop"), None),
        (example("https://t.acme.example/admin", "{advertising: granted}", "reject"), None),
        (example("https://t.acme.example/tr/../px", "{advertising: granted}", "reject"), None),
        # the decision differs
        (
            example(PX, "{advertising: granted}", "drop"),
            "acme.yaml:14: acme/examples[0]: expected drop, the gateway decides forward",
        ),
        (
            example("https://t.acme.example/sdk.js", "{advertising: granted}", "forward"),
            "acme.yaml:14: acme/examples[0]: expected forward, the gateway decides drop",
        ),
        (
            example(PX, "{advertising: granted}", "reject"),
            "acme.yaml:14: acme/examples[0]: expected reject, the gateway decides forward",
        ),
        # the decision is right, a field is not
        (
            example(PX, "{advertising: granted}", "forward", "    removed: [uid]"),
            "acme.yaml:14: acme/examples[0]: removed field 'uid' reaches the vendor",
        ),
        (
            example(PX, "{advertising: denied}", "strip", "    kept: [uid, ev]"),
            "acme.yaml:14: acme/examples[0]: kept field 'uid' does not reach the vendor",
        ),
        (
            example(
                "https://t.acme.example/batch",
                "{advertising: denied}",
                "strip",
                "    method: POST",
                "    content_type: application/json",
                """    body: '{"user": {"id": 7, "name": "x"}, "ev": "buy"}'""",
                "    removed: ['json:user.name']",
                "    kept: ['json:user.id', 'json:ev']",
            ),
            (
                "acme.yaml:14: acme/examples[0]: removed field 'json:user.name' reaches the "
                "vendor; kept field 'json:user.id' does not reach the vendor"
            ),
        ),
    ],
)
def test_an_example_fails_with_what_differs(case: str, failure: str | None) -> None:
    got = run(case)
    if failure is None:
        assert got == []
    else:
        [message] = got
        assert message.startswith(failure), message


def test_examples_are_numbered_in_file_order_and_each_is_run() -> None:
    two = example(PX, "{advertising: granted}", "forward") + example(
        PX, "{advertising: granted}", "drop"
    )
    [message] = run(two)
    assert "acme/examples[1]: expected drop" in message and message.startswith("acme.yaml:17:")


def test_a_report_only_rule_is_run_as_enforced() -> None:
    rule = RULE.replace("purposes: [advertising]\n", "purposes: [advertising]\nreport_only: true\n")
    assert run(example(PX, "{advertising: denied}", "strip", "    removed: [uid]"), rule) == []


def test_the_site_regime_does_not_change_what_unknown_means(tmp_path: Path) -> None:
    """A site whose default regime is opt-out grants what nobody answered; an example's
    unnamed purpose is still not granted, and the site's own key is not used."""
    cfg = make_config(tmp_path)
    us = RegimeConfig("us", RegimeMode.OPT_OUT)
    site = dataclasses.replace(
        cfg,
        consent=dataclasses.replace(cfg.consent, regimes=(us,), default_regime="us"),
        rules=dataclasses.replace(cfg.rules, report_only=True),
    )
    parsed, _ = parse_rule(
        RULE + example(PX, "{}", "strip", "    removed: [uid]"), "a.yaml", PURPOSES
    )
    assert parsed is not None
    assert run_examples(RuleSet([parsed]), site) == []
    ran = example_config(site)
    assert [r.name for r in ran.consent.regimes] == ["examples"]
    assert ran.consent.purposes == site.consent.purposes and not ran.rules.report_only
    assert [k.secret for k in ran.cookie.keys] != [TEST_KEY.encode()]
    assert ran.cookie.keys[0].id == "examples" and ran.cookie.keys != cfg.cookie.keys


def test_every_shipped_example_holds() -> None:
    rules = load_rules([RULES_DIR], PURPOSES)
    assert sum(len(r.examples) for r in rules.rules) > 300
    assert run_examples(rules) == []


@pytest.mark.parametrize(
    ("path", "query", "body", "name", "reached"),
    [
        ("/p", "a=1&b=", b"", "b", True),
        ("/p", "a=1", b"", "b", False),
        ("/p", "up.x=1", b"", "up.*", True),
        ("/p", "upx=1", b"", "up.*", False),
        ("/a;src=1;u1=x", "", b"", "u1", True),
        ("/p", "dl=https%3A%2F%2Fs.example%2F%3Fgclid%3D1", b"", "gclid", True),
        ("/a;~oref=https%3A%2F%2Fs.example%2F%3Fgclid%3D1", "", b"", "gclid", True),
        ("/p", "", b"v=2&en=a\nv=2&en=b&uid=1", "uid", True),
        ("/p", "", b'{"data": [{"user": {"em": "h"}}]}', "json:data[].user.em", True),
        ("/p", "", b'{"data": [{"user": {}}]}', "json:data[].user.em", False),
        ("/p", "", b"not json", "json:a", False),
        ("/p", "", b"\xff\xfe", "a", False),
    ],
)
def test_field_reached(path: str, query: str, body: bytes, name: str, reached: bool) -> None:
    assert field_reached(path, query, body, name) is reached
