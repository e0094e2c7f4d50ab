"""gateway.decision_log.record: the privacy gate (`record_for`) and the record's shapes."""

from __future__ import annotations

import dataclasses
import time
from types import MappingProxyType

import orjson
import pytest

from gateway.cli.logs import format_record
from gateway.decision_log.record import DecisionRecord, record_for, record_to_dict
from gateway.model import Action, ConsentValue, Decision, IpPolicy, StripSpec, VendorChoice
from gateway.redact import sanitize_path
from tests.conftest import (
    PRIVACY_CASES,
    RULES_DIR,
    SECRETS,
    T0,
    make_consent,
    make_decision,
    make_facts,
    secret_facts,
)


@pytest.mark.parametrize(("decision", "name"), PRIVACY_CASES)
def test_record_never_holds_request_values(decision: Decision, name: str) -> None:
    host = f"user:{SECRETS['userinfo']}@evil.example" if name == "reject" else "ad.doubleclick.net"
    consent = None if name == "reject" else make_consent(analytics=ConsentValue.DENIED)
    r = record_for(secret_facts(host), decision, consent)
    rendered = [
        repr(r),
        str(r),
        orjson.dumps(record_to_dict(r)).decode(),
        format_record(r),
    ]
    for what, secret in SECRETS.items():
        for text in rendered:
            assert secret not in text, f"{what} leaked into the {name} record"
    assert r.path == "/activityi;src={…};u1={…};ord={…}"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        # plain words stay: the shape of the request
        ("/g/collect", "/g/collect"),
        ("/v1/collect", "/v1/collect"),
        ("/tr/", "/tr/"),
        ("/en_US/fbevents.js", "/en_US/fbevents.js"),
        ("/conversion_events", "/conversion_events"),
        ("/pixel_v2.gif", "/pixel_v2.gif"),
        ("/caf\u00e9", "/caf\u00e9"),
        ("", ""),
        # no query, no fragment
        ("/g/collect?cid=1.2&v=2", "/g/collect"),
        ("/page#frag=1", "/page"),
        # `;` parameters: names stay if plain, values never
        ("/activityi;src=123;u1=abc", "/activityi;src={…};u1={…}"),
        ("/activityi;src=123;type=x;cat=y;ord=1?", "/activityi;src={…};type={…};cat={…};ord={…}"),
        ("/ddm/activity/src=123;type=invmedia;u1=abc", "/ddm/activity/src={…};type={…};u1={…}"),
        ("/a;flag;b=1", "/a;flag;b={…}"),
        ("/a;;b=", "/a;;b={…}"),
        ("/a;alice@example.com=1", "/a;{…}"),
        ("/a;GCLIDLEAK123", "/a;{…}"),
        # segments that look like values
        ("/t/u/alice%40example.com/GCLIDLEAK123", "/t/u/{…}/{…}"),
        ("/u/alice@example.com/x", "/u/{…}/x"),
        ("/u/alice%2540example.com", "/u/{…}"),
        ("/v18.0/1234567890/events", "/v18.0/{…}/events"),
        ("/order/123456", "/order/{…}"),
        ("/order/12345", "/order/12345"),
        ("/h/deadbeef01", "/h/{…}"),
        ("/id/550e8400-e29b-41d4-a716-446655440000/x", "/id/{…}/x"),
        ("/tok/dGhpcyBpcyBhIHRva2VuIQ", "/tok/{…}"),
        ("/tok/abcdefghijklmnopQRST", "/tok/{…}"),
        ("/ip/203.0.113.77", "/ip/{…}"),
        ("/ip/2001:db8::1", "/ip/{…}"),
        ("/u/user1234", "/u/{…}"),
        ("/x/" + "a" * 41, "/x/{…}"),
        ("/a%3Bb=1/c", "/{…}/c"),
        ("/a%3Fgclid%3DX/c", "/{…}/c"),
        ("/a%2Fb/c", "/{…}/c"),
        # control characters would forge log lines; other non-printables become `?`
        ("/a\x00b\x1b[31m\r\n", "/{…}"),
        ("/zero\u200bwidth\u202eltr", "/zero?width?ltr"),
        ("/x\ud800y", "/x?y"),
    ],
)
def test_record_path_is_a_template(path: str, expected: str) -> None:
    assert record_for(make_facts(path=path), make_decision(), None).path == expected
    assert sanitize_path(path) == expected


def test_record_path_of_a_match_is_the_endpoint_pattern() -> None:
    """With a matched endpoint, the path is the rule's own text: nothing the visitor sent."""
    from gateway.config import DEFAULT_PURPOSES
    from gateway.ruleset.load import load_rules

    rules = load_rules([RULES_DIR], frozenset(DEFAULT_PURPOSES))
    cases = [
        ("www.google-analytics.com", "/g/collect", "/g/collect"),
        ("ad.doubleclick.net", "/activityi;src=1;u1=alice@example.com", "~/activityi?(;.*)?"),
        ("graph.facebook.com", "/v18.0/1234567890/events", None),
    ]
    for host, path, expected in cases:
        match = rules.match(host, path, "POST" if "events" in path else "GET")
        assert match is not None, (host, path)
        out = record_for(make_facts(host=host, path=path), make_decision(), None, match).path
        assert out == (expected or match.endpoint.pattern)
        assert "alice" not in out and "1234567890" not in out


@pytest.mark.parametrize(
    ("path", "absent"),
    [
        ("/" + "a" * 5000, None),
        ("/x;" + ";".join(f"p{i}=SECRET" for i in range(500)), "SECRET"),
        ("/" + "\x07" * 300, None),
        ("/" + "b" * 100_000 + ";u1=SECRET", "SECRET"),
    ],
)
def test_record_path_is_capped(path: str, absent: str | None) -> None:
    out = record_for(make_facts(path=path), make_decision(), None).path
    assert len(out) <= 256
    assert out.isprintable()
    if absent:
        assert absent not in out


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("www.google-analytics.com", "www.google-analytics.com"),
        ("user:pw@evil.example", "evil.example"),
        ("alice@example.com:pw@evil.example", "evil.example"),
        ("a@b@evil.example", "evil.example"),
        ("user%40evil.example", "evil.example"),
        ("evil.example;sid=abc", "evil.example"),
        ("evil.example:8080", "evil.example"),
        ("evil\x07.example\n", "{…}"),
        ("evil%2eexample", "{…}"),
        ("[::1]", "{…}"),
        ("203.0.113.77", "{…}"),
        ("GCLIDLEAK123", "{…}"),
        ("h" * 300 + ".example", "{…}"),
        ("Evil.Example", "evil.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("alice@", ""),
    ],
)
def test_record_host_is_a_name(host: str, expected: str) -> None:
    decision = make_decision(Action.REJECT, vendor=None, endpoint=None)
    assert record_for(make_facts(host=host), decision, None).host == expected


@pytest.mark.parametrize(
    ("method", "expected"),
    [("GET", "GET"), ("POST", "POST"), ("OPTIONS", "OPTIONS"), ("GCLIDLEAK123", "{…}")],
)
def test_record_method_is_standard_or_a_mark(method: str, expected: str) -> None:
    assert record_for(make_facts(method=method), make_decision(), None).method == expected


def test_record_caps_every_string() -> None:
    facts = make_facts(host="h" * 1000, request_id="r" * 1000, method="M" * 100)
    r = record_for(facts, make_decision(reason="why\n" * 200), None)
    assert len(r.host) <= 253
    assert len(r.reason) <= 300
    assert len(r.request_id) <= 128
    assert r.method == "{…}"
    assert "\n" not in r.reason


def test_record_fields() -> None:
    strips = StripSpec(query=frozenset({"gclid", "dclid"}), ip=IpPolicy.TRUNCATE)
    decision = make_decision(
        Action.STRIP,
        required=frozenset({"analytics", "advertising"}),
        missing=frozenset({"personalization", "advertising"}),
        strips=strips,
        reason="advertising denied: stripped",
        report_only=True,
    )
    consent = make_consent(
        analytics=ConsentValue.GRANTED,
        advertising=ConsentValue.DENIED,
    )
    r = record_for(make_facts(method="POST"), decision, consent)
    assert r == DecisionRecord(
        ts=T0,
        request_id="req-1",
        action="strip",
        vendor="google-analytics-4",
        endpoint="collect",
        missing=("advertising", "personalization"),
        sources={"advertising": "cookie", "analytics": "cookie"},
        regime="opt-in",
        method="POST",
        host="www.google-analytics.com",
        path="/g/collect",
        stripped=("query:dclid", "query:gclid", "ip:truncate"),
        reason="advertising denied: stripped",
        report_only=True,
        id=None,
    )
    assert isinstance(r.sources, MappingProxyType)


def test_a_vendor_answer_is_among_the_sources_of_its_vendors_records() -> None:
    consent = dataclasses.replace(
        make_consent(analytics=ConsentValue.GRANTED),
        vendor_choices={
            "google-analytics-4": VendorChoice(ConsentValue.DENIED, "klaro"),
            "posthog": VendorChoice(ConsentValue.GRANTED, "klaro"),
        },
    )
    r = record_for(make_facts(), make_decision(Action.DROP), consent)
    # only the decision's own vendor: another vendor's answer decided nothing here
    assert dict(r.sources) == {"analytics": "cookie", "vendor:google-analytics-4": "denied:klaro"}


def test_record_for_reject_without_consent() -> None:
    decision = make_decision(Action.REJECT, vendor=None, endpoint=None, missing=frozenset())
    r = record_for(make_facts(host="unknown.example", now=0.0), decision, None)
    assert (r.action, r.vendor, r.endpoint, r.regime) == ("reject", None, None, None)
    assert dict(r.sources) == {}
    assert abs(r.ts - time.time()) < 60  # a Facts without a time is stamped now


def test_a_kept_record_differs_only_in_time_and_id() -> None:
    """Records are kept per (decision, consent, match, method, host): a repeated hit's
    record is the kept one with its own time and id, the same as one built afresh."""
    from gateway.config import DEFAULT_PURPOSES
    from gateway.decision_log import record as module
    from gateway.ruleset.load import load_rules

    rules = load_rules([RULES_DIR], frozenset(DEFAULT_PURPOSES))
    match = rules.match("www.google-analytics.com", "/g/collect", "GET")
    assert match is not None
    decision, consent = make_decision(Action.DROP), make_consent()
    first = record_for(make_facts(), decision, consent, match, ())
    again = record_for(make_facts(request_id="req-2", now=T0 + 5), decision, consent, match, ())
    module._KEPT.clear()
    fresh = record_for(make_facts(request_id="req-2", now=T0 + 5), decision, consent, match, ())
    assert (first.ts, first.request_id) == (T0, "req-1")
    assert again == fresh and (again.ts, again.request_id) == (T0 + 5, "req-2")
    # another method or host is another record
    other = record_for(make_facts(method="POST"), decision, consent, match, ())
    assert other.method == "POST" and first.method == "GET"
