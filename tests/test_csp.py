"""gateway.csp: the host-lock policy `consent-gateway csp` prints, and its refusals."""

from __future__ import annotations

import pytest

from gateway.config import DEFAULT_PURPOSES
from gateway.csp import (
    ENDPOINT_NAME,
    SELF,
    CspError,
    allow_source,
    build_policy,
    report_url,
)
from gateway.ruleset.load import load_rules
from gateway.ruleset.match import RuleSet
from tests.conftest import SHIPPED_RULES


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules(SHIPPED_RULES, frozenset(DEFAULT_PURPOSES))


def _directives(policy: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *values = part.split()
        out[name] = values
    return out


FETCH = ("default-src", "connect-src", "img-src", "script-src", "style-src", "frame-src")


@pytest.mark.parametrize(
    ("gateway", "allow", "sources"),
    [
        (SELF, [], [SELF]),
        ("self", [], [SELF]),
        ("https://cg.example.com", [], [SELF, "https://cg.example.com"]),
        ("https://cg.example.com:8443", [], [SELF, "https://cg.example.com:8443"]),
        (SELF, ["cdn.example.com"], [SELF, "cdn.example.com"]),
        (SELF, ["https://*.example.com"], [SELF, "https://*.example.com"]),
        (SELF, ["*.example.com", "*.example.com"], [SELF, "*.example.com"]),
        ("https://cg.example.com", ["https://cg.example.com"], [SELF, "https://cg.example.com"]),
    ],
)
def test_every_fetch_directive_allows_only_self_the_gateway_and_extras(
    rules: RuleSet, gateway: str, allow: list[str], sources: list[str]
) -> None:
    d = _directives(build_policy(rules, gateway=gateway, allow=allow).policy)
    for name in FETCH:
        hosts = [s for s in d[name] if not s.endswith(":") and not s.startswith("'unsafe")]
        assert hosts == sources, name


@pytest.mark.parametrize(
    ("gateway", "base_path", "url"),
    [
        (SELF, "", "/csp-report"),
        (SELF, "/cg", "/cg/csp-report"),
        ("https://cg.example.com", "", "https://cg.example.com/csp-report"),
        ("https://cg.example.com", "/cg", "https://cg.example.com/cg/csp-report"),
    ],
)
def test_reports_go_to_the_gateways_endpoint(
    rules: RuleSet, gateway: str, base_path: str, url: str
) -> None:
    p = build_policy(rules, gateway=gateway, base_path=base_path)
    d = _directives(p.policy)
    assert d["report-uri"] == [url] and d["report-to"] == [ENDPOINT_NAME]
    assert report_url(gateway, base_path) == url
    assert p.header_lines() == [
        f"Content-Security-Policy: {p.policy}",
        f'Reporting-Endpoints: {ENDPOINT_NAME}="{url}"',
    ]


def test_report_only_changes_the_header_name_only(rules: RuleSet) -> None:
    enforced = build_policy(rules)
    watched = build_policy(rules, report_only=True)
    assert watched.policy == enforced.policy
    assert watched.header_lines()[0].startswith("Content-Security-Policy-Report-Only: ")


def test_no_rule_host_appears_in_the_policy(rules: RuleSet) -> None:
    policy = build_policy(rules, gateway="https://cg.example.com", allow=["cdn.example.com"])
    for rule in rules.rules:
        for host in rule.hosts:
            assert host.removeprefix("*.") not in policy.policy, (rule.vendor, host)


@pytest.mark.parametrize(
    ("allow", "vendor"),
    [
        ("www.google-analytics.com", "google-analytics-4"),
        ("https://www.google-analytics.com", "google-analytics-4"),
        ("WWW.Google-Analytics.com", "google-analytics-4"),
        ("https://www.facebook.com:443", "meta-pixel"),
        # under a rule's wildcard
        ("acme.sc.omtrdc.net", "adobe-analytics"),
        ("*.d1.sc.omtrdc.net", "adobe-analytics"),
        # a wildcard covering a rule's host, or its wildcard
        ("*.google-analytics.com", "google-analytics-4"),
        ("https://*.doubleclick.net", None),
        ("*.sc.omtrdc.net", "adobe-analytics"),
    ],
)
def test_an_allow_that_reopens_a_vendor_host_is_refused(
    rules: RuleSet, allow: str, vendor: str | None
) -> None:
    with pytest.raises(CspError) as e:
        allow_source(allow, rules)
    assert "bypass" in str(e.value)
    if vendor is not None:
        assert repr(vendor) in str(e.value)


@pytest.mark.parametrize(
    "allow",
    ["https:", "*", "'unsafe-inline'", "'none'", "https://cdn.example.com/js/", "data:", "", "a b"],
)
def test_an_allow_that_is_not_a_host_source_is_refused(rules: RuleSet, allow: str) -> None:
    with pytest.raises(CspError, match="give an origin"):
        allow_source(allow, rules)


@pytest.mark.parametrize(
    ("allow", "source"),
    [
        ("cdn.example.com", "cdn.example.com"),
        ("https://cdn.example.com", "https://cdn.example.com"),
        ("http://localhost:8080", "http://localhost:8080"),
        # the apex is not under its own wildcard, nor a sibling under another's
        ("google-analytics.com", "google-analytics.com"),
        ("sc.omtrdc.net", "sc.omtrdc.net"),
        ("*.example.com", "*.example.com"),
    ],
)
def test_an_allow_no_rule_lists_is_kept(rules: RuleSet, allow: str, source: str) -> None:
    assert allow_source(allow, rules) == source


@pytest.mark.parametrize(
    "gateway",
    ["*", "https://*.example.com", "cg.example.com", "https://cg.example.com/cg", "https:"],
)
def test_a_gateway_that_is_not_an_origin_is_refused(rules: RuleSet, gateway: str) -> None:
    with pytest.raises(CspError, match="--gateway"):
        build_policy(rules, gateway=gateway)


def test_a_gateway_on_a_vendor_host_is_refused(rules: RuleSet) -> None:
    with pytest.raises(CspError, match="google-analytics-4"):
        build_policy(rules, gateway="https://www.google-analytics.com")


def test_without_report_to_only_report_uri_is_named(rules: RuleSet) -> None:
    p = build_policy(rules, report_to=False)
    d = _directives(p.policy)
    assert d["report-uri"] == ["/csp-report"] and "report-to" not in d
    assert p.header_lines() == [f"Content-Security-Policy: {p.policy}"]
