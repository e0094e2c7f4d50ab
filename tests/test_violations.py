"""gateway.violations: reports reduced to (host, page) names, parsed totally."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import DEFAULT_PURPOSES
from gateway.ruleset.load import load_rules
from gateway.ruleset.match import RuleSet
from gateway.violations import MAX_REPORTS, BadReport, Sighting, classify, parse_reports
from tests.conftest import SHIPPED_RULES

LEGACY = "application/csp-report"
BATCH = "application/reports+json"


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules(SHIPPED_RULES, frozenset(DEFAULT_PURPOSES))


def legacy(blocked: str, document: str = "https://shop.example/cart?email=a@b.c") -> bytes:
    return orjson.dumps(
        {
            "csp-report": {
                "document-uri": document,
                "blocked-uri": blocked,
                "violated-directive": "img-src",
                "script-sample": "SAMPLEVALUE",
            }
        }
    )


def batch(*blocked: str, kind: str = "csp-violation") -> bytes:
    return orjson.dumps(
        [
            {
                "type": kind,
                "url": "https://shop.example/p/123456?x=1",
                "body": {"documentURL": "https://shop.example/p/123456?x=1", "blockedURL": b},
            }
            for b in blocked
        ]
    )


@pytest.mark.parametrize(
    ("source", "content_type", "body", "found"),
    [
        # the legacy report: the host of the blocked URL, the page's path without its query
        (
            "csp",
            LEGACY,
            legacy("https://www.facebook.com/tr?id=1&ud=x"),
            [("www.facebook.com", "/cart")],
        ),
        (
            "csp",
            "application/json",
            legacy("https://WWW.Facebook.com:443/tr"),
            [("www.facebook.com", "/cart")],
        ),
        (
            "csp",
            LEGACY,
            legacy("https://user:pw@cdn.example.com/x"),
            [("cdn.example.com", "/cart")],
        ),
        # values in the page path are templated
        (
            "csp",
            LEGACY,
            legacy("https://a.example.com/", "https://s.example/u/a%40b.c/x"),
            [("a.example.com", "/u/{…}/x")],
        ),
        (
            "csp",
            LEGACY,
            legacy("https://a.example.com/", "/relative/page?q=1"),
            [("a.example.com", "/relative/page")],
        ),
        # no host: inline code, eval, data:, an address, nothing
        ("csp", LEGACY, legacy("inline"), []),
        ("csp", LEGACY, legacy("eval"), []),
        ("csp", LEGACY, legacy("data"), []),
        ("csp", LEGACY, legacy("https://127.0.0.1/x"), []),
        ("csp", LEGACY, b'{"csp-report": {}}', []),
        # the Reporting API's batch: CSP violations only, each one
        (
            "csp",
            BATCH,
            batch("https://www.facebook.com/tr?id=1", "https://x.example.org/"),
            [("www.facebook.com", "/p/{…}"), ("x.example.org", "/p/{…}")],
        ),
        ("csp", BATCH, batch("https://www.facebook.com/tr", kind="deprecation"), []),
        ("csp", BATCH, b"[1, null, {}]", []),
        # the router's report
        (
            "router",
            "text/plain",
            b'{"kind":"unlisted","host":"cdn.tracker.example","page":"/a/b?c=d"}',
            [("cdn.tracker.example", "/a/b")],
        ),
        (
            "router",
            "application/json",
            b'{"kind":"unlisted","host":"t.example.com:8443","page":"/"}',
            [("t.example.com", "/")],
        ),
        (
            "router",
            "text/plain",
            b'{"kind":"unlisted","host":"t.example.com"}',
            [("t.example.com", "/")],
        ),
        ("router", "text/plain", b'{"kind":"future","host":"t.example.com","page":"/"}', []),
        ("router", "text/plain", b'{"kind":"unlisted","host":"10.0.0.1","page":"/"}', []),
        ("router", "text/plain", b'{"kind":"unlisted","host":"a b","page":"/"}', []),
    ],
)
def test_reports_become_names(
    source: str, content_type: str, body: bytes, found: list[tuple[str, str]]
) -> None:
    assert parse_reports(source, content_type, body) == found  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("source", "content_type", "body"),
    [
        ("csp", "text/plain", legacy("https://a.example.com/")),
        ("csp", LEGACY, b"not json"),
        ("csp", LEGACY, b"[]"),
        ("csp", LEGACY, b'{"csp-report": "x"}'),
        ("csp", BATCH, b"{}"),
        ("router", LEGACY, b"{}"),
        ("router", "text/plain", b"[]"),
        ("router", "text/plain", b"\xff\xfe"),
    ],
)
def test_what_an_endpoint_does_not_read_is_a_bad_report(
    source: str, content_type: str, body: bytes
) -> None:
    with pytest.raises(BadReport) as e:
        parse_reports(source, content_type, body)  # type: ignore[arg-type]
    assert "example" not in str(e.value)


def test_a_batch_is_cut_at_max_reports() -> None:
    body = batch(*(f"https://h{i}.example.com/" for i in range(MAX_REPORTS + 10)))
    assert len(parse_reports("csp", BATCH, body)) == MAX_REPORTS


@pytest.mark.parametrize(
    ("host", "kind", "vendor"),
    [
        ("www.facebook.com", "bypass", "meta-pixel"),
        ("acme.sc.omtrdc.net", "bypass", "adobe-analytics"),
        ("cdn.tracker.example", "unlisted", None),
    ],
)
def test_a_listed_host_is_a_bypass_of_its_vendor(
    rules: RuleSet, host: str, kind: str, vendor: str | None
) -> None:
    assert classify("csp", host, "/p", rules) == Sighting("csp", kind, vendor, host, "/p")  # type: ignore[arg-type]


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "csp-report",
                    "blocked-uri",
                    "document-uri",
                    "type",
                    "body",
                    "blockedURL",
                    "documentURL",
                    "kind",
                    "host",
                    "page",
                ]
            )
            | st.text(max_size=8),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)
_TYPES = st.sampled_from([LEGACY, BATCH, "application/json", "text/plain", "", "x/y"])


@settings(max_examples=400, deadline=None)
@given(
    source=st.sampled_from(["csp", "router"]),
    content_type=_TYPES,
    body=st.one_of(st.binary(max_size=200), _JSON.map(orjson.dumps)),
)
def test_parsing_raises_only_bad_report(source: str, content_type: str, body: bytes) -> None:
    try:
        found = parse_reports(source, content_type, body)  # type: ignore[arg-type]
    except BadReport:
        return
    for host, page in found:
        assert host.isascii() and host == host.lower() and "?" not in page
