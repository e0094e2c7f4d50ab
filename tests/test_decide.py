"""gateway.decide: the decision rule of DESIGN §5, as a table."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import DEFAULT_PURPOSES
from gateway.decide import decide, reject
from gateway.model import (
    Action,
    ConsentState,
    ConsentValue,
    IpPolicy,
    PurposeConsent,
    StripSpec,
    VendorChoice,
)
from gateway.ruleset.match import Match, RuleSet
from gateway.ruleset.parse import parse_rule

RULE = """
vendor: acme
name: Acme
hosts: [t.acme.example]
purposes: [advertising]
always: {ip: truncate, query: [_uip]}
endpoints:
  - id: hit
    match: {path: /hit}
    kind: beacon
    purposes: [analytics, advertising]
    when_denied:
      advertising: {query: [gclid], ip: drop}
  - id: pixel
    match: {path: /px}
    kind: pixel
  - id: free
    match: {path: /free}
    kind: script
    purposes: [necessary]
examples:
  - url: "https://t.acme.example/hit?a=1"
    consent: {analytics: granted, advertising: granted}
    expect: forward
  - {url: "https://t.acme.example/px", consent: {advertising: denied}, expect: drop}
  - {url: "https://t.acme.example/free", expect: forward}
"""

rule, problems = parse_rule(RULE, "acme.yaml", frozenset(DEFAULT_PURPOSES))
assert rule is not None, problems
RULES = RuleSet([rule])
ALWAYS = StripSpec(query=frozenset({"_uip"}), ip=IpPolicy.TRUNCATE)


def state(**purposes: str) -> ConsentState:
    return ConsentState(
        purposes={p: PurposeConsent(ConsentValue(v), "test") for p, v in purposes.items()},
        regime="opt-in",
    )


def match(path: str) -> Match:
    m = RULES.match("t.acme.example", path, "GET")
    assert m is not None
    return m


@pytest.mark.parametrize(
    ("path", "consent", "action", "missing", "strips"),
    [
        ("/hit", {"analytics": "granted", "advertising": "granted"}, Action.FORWARD, set(), ALWAYS),
        (
            "/hit",
            {"analytics": "granted", "advertising": "denied"},
            Action.STRIP,
            {"advertising"},
            StripSpec(query=frozenset({"_uip", "gclid"}), ip=IpPolicy.DROP, identifiers=True),
        ),
        (
            "/hit",
            {"analytics": "granted", "advertising": "unknown"},
            Action.STRIP,
            {"advertising"},
            StripSpec(query=frozenset({"_uip", "gclid"}), ip=IpPolicy.DROP, identifiers=True),
        ),
        (
            "/hit",
            {"analytics": "denied", "advertising": "granted"},
            Action.DROP,
            {"analytics"},
            StripSpec(),
        ),
        ("/hit", {}, Action.DROP, {"analytics", "advertising"}, StripSpec()),
        ("/px", {"advertising": "granted"}, Action.FORWARD, set(), ALWAYS),
        ("/px", {"advertising": "denied"}, Action.DROP, {"advertising"}, StripSpec()),
        ("/free", {}, Action.FORWARD, set(), ALWAYS),
    ],
)
def test_decision_table(
    path: str, consent: dict[str, str], action: Action, missing: set[str], strips: StripSpec
) -> None:
    d = decide(match(path), state(**consent))
    assert (d.action, set(d.missing), d.strips) == (action, missing, strips)
    assert d.vendor == "acme" and not d.report_only


def test_no_match_is_reject() -> None:
    d = decide(None, state(analytics="granted"))
    assert d.action is Action.REJECT and d.vendor is None and d.strips.is_empty
    assert reject("x").action is Action.REJECT


def test_report_only_keeps_the_action_and_flags_it() -> None:
    d = decide(match("/px"), state(), report_only=True)
    assert d.action is Action.DROP and d.report_only


@given(
    st.dictionaries(
        st.sampled_from(["analytics", "advertising"]), st.sampled_from(list(ConsentValue))
    )
)
def test_never_forward_untouched_without_every_purpose(consent: dict[str, ConsentValue]) -> None:
    s = ConsentState({p: PurposeConsent(v, "t") for p, v in consent.items()}, regime="x")
    d = decide(match("/hit"), s)
    if d.action is Action.FORWARD:
        assert s.granted("analytics") and s.granted("advertising")
    if not s.granted("analytics"):
        assert d.action is Action.DROP


def test_a_decision_is_kept_for_the_same_match_and_consent_objects_only() -> None:
    m = match("/hit")
    granted = state(analytics="granted", advertising="granted")
    denied = state(analytics="denied", advertising="denied")
    first = decide(m, granted)
    assert decide(m, granted) is first
    # equal content in another object is decided afresh, and the same
    assert decide(m, state(analytics="granted", advertising="granted")) == first
    assert decide(m, denied).action is not first.action
    assert decide(m, granted, report_only=True).report_only


def _with_vendor(
    answer: ConsentValue, grants: frozenset[str] = frozenset(), **purposes: str
) -> ConsentState:
    base = state(**purposes)
    choice = VendorChoice(answer, "klaro", grants)
    return dataclasses.replace(base, vendor_choices={"acme": choice})


@pytest.mark.parametrize(
    ("consent", "action", "missing", "note"),
    [
        # denied by name: every purpose it needs is missing, the strips decide the rest
        (
            _with_vendor(ConsentValue.DENIED, analytics="granted", advertising="granted"),
            Action.DROP,
            {"analytics", "advertising"},
            " (vendor acme denied: klaro)",
        ),
        # allowed by name: its purposes still have to be granted
        (
            _with_vendor(ConsentValue.GRANTED, analytics="granted", advertising="denied"),
            Action.STRIP,
            {"advertising"},
            "",
        ),
    ],
)
def test_a_vendor_answer_decides_with_the_purposes(
    consent: ConsentState, action: Action, missing: set[str], note: str
) -> None:
    d = decide(match("/hit"), consent)
    assert (d.action, set(d.missing)) == (action, missing)
    assert d.reason.endswith(note)
