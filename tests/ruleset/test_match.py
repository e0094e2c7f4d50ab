"""gateway.ruleset.match: the host and path gates, and the rule index."""

from __future__ import annotations

import re
import string
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.model import EndpointKind
from gateway.ruleset.match import (
    RuleConflictError,
    RuleSet,
    is_safe_path,
    match_endpoint,
    normalize_host,
)
from gateway.ruleset.schema import EndpointSpec, ForwardMode, VendorRule

# The strict grammar normalize_host promises, written out independently of the code under test.
STRICT_HOST = re.compile(
    r"(?=.{1,253}\Z)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+"
    r"(?!\d+\Z)(?!0x[0-9a-f]*\Z)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z"
)


def endpoint(id: str, methods: tuple[str, ...] = ("GET", "POST"), **kw: Any) -> EndpointSpec:
    return EndpointSpec(
        id=id,
        methods=frozenset(methods),
        kind=EndpointKind.BEACON,
        purposes=frozenset({"analytics"}),
        forward_mode=ForwardMode.ASYNC,
        **kw,
    )


def rule(vendor: str, *hosts: str, route: str | None = None, **kw: Any) -> VendorRule:
    kw.setdefault("endpoints", (endpoint("collect", path="/collect"),))
    route_host = next((h for h in hosts if not h.startswith("*.")), None) if route else None
    return VendorRule(
        vendor=vendor,
        name=vendor,
        file=f"{vendor}.yaml",
        hosts=hosts,
        route=route,
        route_host=route_host,
        purposes=frozenset({"analytics"}),
        **kw,
    )


# -- normalize_host ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("evil.example", "evil.example"),
        ("EVIL.example", "evil.example"),
        ("www.Google-Analytics.COM", "www.google-analytics.com"),
        ("region1.google-analytics.com", "region1.google-analytics.com"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("a.b", "a.b"),
        ("1.example", "1.example"),
        ("a-b.c", "a-b.c"),
        ("a" * 63 + ".com", "a" * 63 + ".com"),
        # refused: trailing dot, userinfo, port, IP literals in every spelling
        ("www.google-analytics.com.", None),
        ("user@www.google-analytics.com", None),
        ("www.google-analytics.com@evil.example", None),
        ("www.google-analytics.com:443", None),
        ("127.0.0.1", None),
        ("10.0.0.1", None),
        ("[::1]", None),
        ("::1", None),
        ("[::ffff:127.0.0.1]", None),
        ("0x7f000001", None),
        ("0x7f.1", None),
        ("0x7f.0x0.0x0.0x1", None),
        ("2130706433", None),
        ("0177.0.0.1", None),
        ("127.1", None),
        ("example.0x7f", None),
        # refused: any percent-encoding, backslashes, separators
        ("www.google-analytics.com%2F..", None),
        ("%77ww.google-analytics.com", None),
        ("www%2egoogle-analytics.com", None),
        ("evil.example%40www.google-analytics.com", None),
        ("www.google-analytics.com\\@evil.example", None),
        ("www.google-analytics.com/evil", None),
        ("www.google-analytics.com?x", None),
        ("www.google-analytics.com#x", None),
        # refused: not a DNS name
        ("", None),
        ("a", None),
        ("localhost", None),
        ("a..b", None),
        (".a.com", None),
        ("-a.com", None),
        ("a-.com", None),
        ("a.-com", None),
        ("a_b.com", None),
        ("*.example.com", None),
        ("a" * 64 + ".com", None),
        (".".join(["a" * 50] * 5) + ".com", None),
        # refused: whitespace, control characters, non-ASCII
        (" evil.example", None),
        ("evil.example ", None),
        ("evil.exa mple", None),
        ("evil.example\n", None),
        ("evil.example\x00", None),
        ("evil\t.example", None),
        ("bücher.example", None),
        ("\u212aevil.example", None),  # KELVIN SIGN lower-cases to "k"
        ("evil.example\u3002com", None),  # IDEOGRAPHIC FULL STOP, a dot to IDNA
        ("ｅvil.example", None),  # fullwidth
    ],
)
def test_normalize_host(raw: str, expected: str | None) -> None:
    assert normalize_host(raw) == expected


HOST_ALPHABET = string.ascii_letters + string.digits + "-.@:%/\\[]_ \t\x00" + "äK\u212a"


@given(st.text(alphabet=HOST_ALPHABET, max_size=80) | st.text(max_size=40))
@example("a.b")
@example("A.B")
def test_normalize_host_output_is_strict(raw: str) -> None:
    out = normalize_host(raw)
    if out is None:
        return
    assert STRICT_HOST.fullmatch(out), out
    assert not set(out) & set("@:%/\\[] ")
    assert out == raw.lower()  # only the case is ever changed
    assert normalize_host(out) == out  # idempotent


label = st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?", fullmatch=True)


@given(st.lists(label, min_size=1, max_size=5), st.from_regex(r"[a-zA-Z]{2,8}", fullmatch=True))
def test_normalize_host_accepts_dns_names_in_any_case(labels: list[str], tld: str) -> None:
    raw = ".".join([*labels, tld])
    assert normalize_host(raw) == raw.lower()


# -- is_safe_path -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        ("/g/collect", True),
        ("/tr/", True),
        ("/", True),
        ("/a.b/c..d/.e", True),
        ("/activity;src=1;~oref=https%3A%2F%2Fshop.example%2Fx", True),
        ("/%7Euser", True),
        ("/tr/../search", False),
        ("/tr/./x", False),
        ("/tr/..", False),
        ("/tr/%2e%2e/search", False),
        ("/tr/%2E%2e/search", False),
        ("/tr/.%2e/search", False),
        ("/tr/..%2fsearch", False),
        ("/tr/..%5csearch", False),
        ("/tr/x%2f..%2fsearch", False),
        ("/tr/..\\search", False),
        ("/tr\\x", False),
        ("tr/x", False),
        ("", False),
        ("/tr x", False),
        ("/tr\tx", False),
        ("/tr\x00", False),
        ("/tr\x7f", False),
        ("/tr?x=1", False),
        ("/tr#x", False),
        ("/tr/é", False),
    ],
)
def test_is_safe_path(path: str, ok: bool) -> None:
    assert is_safe_path(path) is ok


# -- RuleSet -----------------------------------------------------------------------

GA = rule(
    "ga",
    "www.google-analytics.com",
    "*.analytics.google.com",
    route="/ga4",
    endpoints=(
        endpoint("collect", path="/g/collect"),
        endpoint("script", methods=("GET",), path_prefix="/gtag/"),
    ),
)
META = rule(
    "meta",
    "www.facebook.com",
    "connect.facebook.net",
    route="/fb/px",
    endpoints=(
        endpoint("tr-exact", methods=("GET",), path="/tr"),
        endpoint("tr-any", path_regex=re.compile("/tr/?")),
        endpoint("catch-all", methods=("GET",), path_prefix="/"),
    ),
)
CLARITY = rule("clarity", "*.clarity.ms", endpoints=(endpoint("collect", path="/collect"),))
OWN_OVERLAP = rule("own", "www.own.example", "*.own.example")
RULES = RuleSet([GA, META, CLARITY, OWN_OVERLAP])


@pytest.mark.parametrize(
    ("host", "vendor"),
    [
        ("www.google-analytics.com", "ga"),
        ("region1.analytics.google.com", "ga"),
        ("a.b.analytics.google.com", "ga"),
        ("analytics.google.com", None),  # the bare suffix of a wildcard
        ("google-analytics.com", None),
        ("www.google-analytics.com.evil", None),
        ("evilwww.google-analytics.com", None),
        ("www.clarity.ms", "clarity"),
        ("clarity.ms", None),
        ("www.own.example", "own"),
        ("x.own.example", "own"),
        ("unknown.example", None),
        ("", None),
        ("a" * 300 + ".clarity.ms", None),
    ],
)
def test_vendor_for_host(host: str, vendor: str | None) -> None:
    found = RULES.vendor_for_host(host)
    assert (found.vendor if found else None) == vendor


@pytest.mark.parametrize(
    ("host", "path", "method", "expected"),
    [
        ("www.google-analytics.com", "/g/collect", "POST", ("ga", "collect")),
        ("region1.analytics.google.com", "/g/collect", "GET", ("ga", "collect")),
        ("www.google-analytics.com", "/g/collect", "HEAD", ("ga", "collect")),
        ("www.google-analytics.com", "/g/collect", "PUT", None),
        ("www.google-analytics.com", "/gtag/js", "GET", ("ga", "script")),
        ("www.google-analytics.com", "/gtag/js", "POST", None),
        ("www.google-analytics.com", "/collect", "GET", None),
        ("www.google-analytics.com", "/g/collect/", "GET", None),
        # order: the first matching endpoint wins
        ("www.facebook.com", "/tr", "GET", ("meta", "tr-exact")),
        ("www.facebook.com", "/tr", "POST", ("meta", "tr-any")),
        ("www.facebook.com", "/tr/", "GET", ("meta", "tr-any")),
        ("www.facebook.com", "/login.php", "GET", ("meta", "catch-all")),
        ("www.facebook.com", "/login.php", "POST", None),
        # the path gate applies before any endpoint, the catch-all included
        ("www.facebook.com", "/tr/../login.php", "GET", None),
        ("www.facebook.com", "/x/%2e%2e/login.php", "GET", None),
        ("connect.facebook.net", "/tr", "GET", ("meta", "tr-exact")),
        # unknown host
        ("facebook.com", "/tr", "GET", None),
        ("unknown.example", "/g/collect", "GET", None),
    ],
)
def test_match(host: str, path: str, method: str, expected: tuple[str, str] | None) -> None:
    found = RULES.match(host, path, method)
    assert (None if found is None else (found.vendor.vendor, found.endpoint.id)) == expected


def test_match_endpoint_refuses_unsafe_paths() -> None:
    endpoints = META.endpoints
    assert match_endpoint(endpoints, "/tr", "GET") is endpoints[0]
    assert match_endpoint(endpoints, "/tr/../x", "GET") is None


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/ga4/g/collect", ("ga", "/g/collect")),
        ("/ga4/", ("ga", "/")),
        ("/ga4", ("ga", "/")),
        ("/ga4/g/collect/ga4", ("ga", "/g/collect/ga4")),
        ("/ga4x/g/collect", None),
        ("/ga/g/collect", None),
        ("/GA4/g/collect", None),
        ("//ga4/g/collect", None),
        ("ga4/g/collect", None),
        ("/fb/px/tr", ("meta", "/tr")),
        ("/fb/px", ("meta", "/")),
        ("/fb/tr", None),
        ("/fb", None),
        ("/", None),
        ("", None),
        ("/t/www.google-analytics.com/g/collect", None),
    ],
)
def test_route_for(path: str, expected: tuple[str, str] | None) -> None:
    found = RULES.route_for(path)
    assert (None if found is None else (found[0].vendor, found[1])) == expected


def test_route_then_match_reaches_the_route_host() -> None:
    found = RULES.route_for("/ga4/g/collect")
    assert found is not None
    rule_, rest = found
    assert rule_.route_host is not None
    m = RULES.match(rule_.route_host, rest, "POST")
    assert m is not None and m.vendor is GA and m.endpoint.id == "collect"


def test_vendor_by_id() -> None:
    assert RULES.vendor("meta") is META
    assert RULES.vendor("nope") is None
    assert len(RULES) == 4 and RULES.rules == (GA, META, CLARITY, OWN_OVERLAP)


@pytest.mark.parametrize(
    ("rules", "conflicts"),
    [
        ([rule("a", "x.example"), rule("a", "y.example")], ["vendor id 'a'"]),
        ([rule("a", "x.example"), rule("b", "x.example")], ["host 'x.example'"]),
        ([rule("a", "*.example.com"), rule("b", "q.example.com")], ["'*.example.com'"]),
        ([rule("a", "*.example.com"), rule("b", "*.q.example.com")], ["'*.example.com'"]),
        (
            [rule("a", "a.example", route="/r"), rule("b", "b.example", route="/r")],
            ["route '/r'"],
        ),
        (
            [rule("a", "a.example", route="/r"), rule("b", "b.example", route="/r/s")],
            ["route '/r/s'"],
        ),
        (
            [rule("a", "*.example.com", "x.example"), rule("b", "x.example", "q.example.com")],
            ["host 'x.example'", "'*.example.com'"],
        ),
    ],
)
def test_conflicts_are_refused(rules: list[VendorRule], conflicts: list[str]) -> None:
    with pytest.raises(RuleConflictError) as info:
        RuleSet(rules)
    assert len(info.value.conflicts) == len(conflicts)
    for conflict, text in zip(info.value.conflicts, conflicts, strict=True):
        assert text in str(conflict) and conflict.second is rules[1]


# -- the index: lookups, never scans ---------------------------------------------------


def test_a_thousand_vendors_match_by_index() -> None:
    rules = [
        rule(
            f"v{i}",
            f"t{i}.example",
            f"*.w{i}.example",
            route=f"/r{i}",
            endpoints=(endpoint(f"e{i}", path=f"/p{i}"),),
        )
        for i in range(1000)
    ]
    index = RuleSet(rules)
    for i in (0, 1, 499, 998, 999):
        m = index.match(f"t{i}.example", f"/p{i}", "GET")
        assert m is not None and m.vendor is rules[i] and m.endpoint.id == f"e{i}"
        assert index.vendor_for_host(f"a.b.w{i}.example") is rules[i]
        assert index.match(f"t{i}.example", f"/p{i + 1}", "GET") is None
        assert index.route_for(f"/r{i}/p{i}") == (rules[i], f"/p{i}")
        assert index.vendor(f"v{i}") is rules[i]
    assert index.vendor_for_host("w5.example") is None
    assert index.vendor_for_host("t1000.example") is None
    assert index.route_for("/r1000/x") is None


def test_lookups_do_not_scan_the_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    # A lookup that walked the rules would ask them which hosts they cover; make that fail.
    rules = [rule(f"v{i}", f"t{i}.example", f"*.w{i}.example") for i in range(50)]
    index = RuleSet(rules)

    def no_scan(self: VendorRule, host: str) -> bool:
        raise AssertionError("a lookup scanned the rules")

    monkeypatch.setattr(VendorRule, "covers_host", no_scan)
    assert index.vendor_for_host("x.w7.example") is rules[7]
    assert index.match("t9.example", "/collect", "GET") is not None


LABELS = st.sampled_from(["a", "b", "c", "ab"])
NAMES = st.lists(LABELS, min_size=2, max_size=4).map(".".join)


@st.composite
def rule_sets(draw: st.DrawFn) -> list[VendorRule]:
    """Rule sets over a tiny namespace, so hosts collide often; conflicting ones are skipped."""
    rules: list[VendorRule] = []
    for i in range(draw(st.integers(1, 6))):
        names = draw(st.lists(NAMES, min_size=1, max_size=3, unique=True))
        hosts = [f"*.{n}" if draw(st.booleans()) else n for n in names]
        candidate = rule(f"v{i}", *hosts)
        try:
            RuleSet([*rules, candidate])
        except RuleConflictError:
            continue
        rules.append(candidate)
    return rules


@given(rule_sets(), st.lists(LABELS, min_size=1, max_size=6).map(".".join))
def test_index_agrees_with_a_scan(rules: list[VendorRule], host: str) -> None:
    owners = [r for r in rules if r.covers_host(host)]
    assert len(owners) <= 1  # accepted rule sets never overlap
    assert RuleSet(rules).vendor_for_host(host) is (owners[0] if owners else None)
