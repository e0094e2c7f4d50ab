"""gateway.ruleset.schema: the specs' invariants, their matchers and the field grammars."""

from __future__ import annotations

import re
from typing import Any

import pytest

from gateway.model import Action, ConsentValue, EndpointKind, StripSpec
from gateway.ruleset.schema import (
    EndpointSpec,
    ExampleSpec,
    ForwardMode,
    VendorRule,
    check_endpoint_id,
    check_field_name,
    check_header_name,
    check_host_pattern,
    check_json_path,
    check_route,
    check_vendor_id,
    default_forward_mode,
    host_matches,
    is_dns_name,
)


def endpoint(**kw: Any) -> EndpointSpec:
    kw.setdefault("id", "e")
    kw.setdefault("kind", EndpointKind.BEACON)
    kw.setdefault("purposes", frozenset({"analytics"}))
    kw.setdefault("forward_mode", ForwardMode.ASYNC)
    if not any(k in kw for k in ("path", "path_prefix", "path_regex")):
        kw["path"] = "/collect"
    return EndpointSpec(**kw)


def vendor(**kw: Any) -> VendorRule:
    kw.setdefault("vendor", "v")
    kw.setdefault("name", "V")
    kw.setdefault("file", "v.yaml")
    kw.setdefault("hosts", ("a.example.com",))
    kw.setdefault("purposes", frozenset({"analytics"}))
    kw.setdefault("endpoints", (endpoint(),))
    return VendorRule(**kw)


@pytest.mark.parametrize(
    ("kind", "mode"),
    [
        (EndpointKind.BEACON, ForwardMode.ASYNC),
        (EndpointKind.PIXEL, ForwardMode.ASYNC),
        (EndpointKind.SCRIPT, ForwardMode.SYNC),
        (EndpointKind.API, ForwardMode.SYNC),
    ],
)
def test_default_forward_mode(kind: EndpointKind, mode: ForwardMode) -> None:
    assert default_forward_mode(kind) is mode


# -- grammars ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("www.google-analytics.com", True),
        ("a.b", True),
        ("xn--bcher-kva.example", True),
        ("a-b.c-d.example", True),
        ("1.example", True),
        ("a" * 63 + ".com", True),
        ("a" * 64 + ".com", False),
        (".".join(["a" * 49] * 5) + ".com", True),  # 249 characters
        (".".join(["a" * 50] * 5) + ".com", False),  # 254 characters
        ("com", False),
        ("", False),
        ("www.example.com.", False),
        ("-a.com", False),
        ("a-.com", False),
        ("a..b", False),
        ("WWW.example.com", False),  # the grammar itself is lower case
        ("a_b.com", False),
        ("127.0.0.1", False),
        ("0x7f.1", False),
        ("a.0x7f", False),
        ("a.0x", False),
        ("a.0xg", True),  # not a hex number: an ordinary (if odd) label
        ("a.123", False),
    ],
)
def test_is_dns_name(name: str, ok: bool) -> None:
    assert is_dns_name(name) is ok


@pytest.mark.parametrize(
    ("pattern", "error"),
    [
        ("www.google-analytics.com", None),
        ("*.clarity.ms", None),
        ("*.a.b.example", None),
        ("*.com", "wildcard"),
        ("*", "wildcard"),
        ("a.*.com", "leading"),
        ("www.*", "leading"),
        ("WWW.Example.com", "lower case"),
        ("https://www.example.com", "not a plain DNS host name"),
        ("www.example.com:443", "not a plain DNS host name"),
        ("10.0.0.1", "not a plain DNS host name"),
        ("www.example.com.", "not a plain DNS host name"),
    ],
)
def test_check_host_pattern(pattern: str, error: str | None) -> None:
    result = check_host_pattern(pattern)
    if error is None:
        assert result is None
    else:
        assert result is not None and error in result


@pytest.mark.parametrize(
    ("pattern", "host", "ok"),
    [
        ("a.example.com", "a.example.com", True),
        ("a.example.com", "b.a.example.com", False),
        ("*.example.com", "a.example.com", True),
        ("*.example.com", "x.y.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "badexample.com", False),
        ("*.example.com", "a.example.com.evil", False),
    ],
)
def test_host_matches(pattern: str, host: str, ok: bool) -> None:
    assert host_matches(pattern, host) is ok


@pytest.mark.parametrize(
    ("route", "error"),
    [
        ("/ga4", None),
        ("/t2", None),
        ("/vendors/ga4", None),
        ("/a.b_c~d-e", None),
        ("ga4", "start with '/'"),
        ("/ga4/", "start with '/'"),
        ("/", "start with '/'"),
        ("//ga4", "segment"),
        ("/ga 4", "segment"),
        ("/ga%34", "segment"),
        ("/a/../b", "segment"),
        ("/t", "served by the gateway"),
        ("/t/x", "served by the gateway"),
        ("/consent", "served by the gateway"),
        ("/_admin/logs", "served by the gateway"),
        ("/metrics", "served by the gateway"),
        ("/healthz", "served by the gateway"),
        ("/readyz", "served by the gateway"),
        ("/consents", None),
        ("/cg.js", "served by the gateway"),
        ("/cg-sw.js", "served by the gateway"),
        ("/cg", None),
    ],
)
def test_check_route(route: str, error: str | None) -> None:
    result = check_route(route)
    if error is None:
        assert result is None
    else:
        assert result is not None and error in result


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        ("user_data", True),
        ("data[].user_data.em", True),
        ("context.user.email", True),
        ("events[].params.page_location", True),
        ("$current_url", True),
        ("user.ad_*", True),  # prefix of the last key
        ("user.*", False),  # no empty last key: remove "user" itself
        ("up*", True),
        ("", False),
        ("a..b", False),
        (".a", False),
        ("a.", False),
        ("data[]", False),  # cannot end in []
        ("data[].x[]", False),
        ("[].user_id", True),  # the body itself is an array
        ("[][].a", True),
        ("a[][].b", True),  # two array levels
        ("[]", False),
        ("a.[].b", False),  # a bare [] only at the root
        ("a[0].b", False),
        ("a[]b", False),
        ("a b", False),
        ("a*.b", False),
        ("*", False),
    ],
)
def test_check_json_path(path: str, ok: bool) -> None:
    assert (check_json_path(path) is None) is ok


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("gclid", True),
        ("ud[em]", True),
        ("up.*", True),
        ("_hjSessionUser_*", True),
        ("", False),
        ("*", False),
        ("a*b", False),
        ("a b", False),
        ("a\tb", False),
        ("a\x00", False),
    ],
)
def test_check_field_name(name: str, ok: bool) -> None:
    assert (check_field_name(name) is None) is ok


@pytest.mark.parametrize(
    ("name", "ok"),
    [("cookie", True), ("x-forwarded-for", True), ("Cookie", False), ("a b", False), ("", False)],
)
def test_check_header_name(name: str, ok: bool) -> None:
    assert (check_header_name(name) is None) is ok


@pytest.mark.parametrize(
    ("slug", "ok"),
    [
        ("meta-pixel", True),
        ("google-analytics-4", True),
        ("1p-conversion", True),
        ("Meta", False),
        ("meta_pixel", False),
        ("-meta", False),
        ("meta--pixel", False),
        ("meta-", False),
        ("", False),
        ("a" * 65, False),
    ],
)
def test_slugs(slug: str, ok: bool) -> None:
    assert (check_vendor_id(slug) is None) is ok
    assert (check_endpoint_id(slug) is None) is ok


# -- EndpointSpec ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "path", "method", "ok"),
    [
        ({"path": "/g/collect"}, "/g/collect", "GET", True),
        ({"path": "/g/collect"}, "/g/collect", "POST", True),
        ({"path": "/g/collect"}, "/g/collect/", "GET", False),
        ({"path": "/g/collect"}, "/G/collect", "GET", False),
        ({"path": "/g/collect"}, "/g/collect", "PUT", False),
        ({"path": "/g/collect"}, "/g/collect", "HEAD", True),  # HEAD wherever GET
        ({"path": "/x", "methods": frozenset({"POST"})}, "/x", "HEAD", False),
        ({"path": "/x", "methods": frozenset({"POST"})}, "/x", "GET", False),
        ({"path": "/x"}, "/x", "get", False),  # methods are case-sensitive
        ({"path_prefix": "/tr/"}, "/tr/", "GET", True),
        ({"path_prefix": "/tr/"}, "/tr/x/y", "GET", True),
        ({"path_prefix": "/tr/"}, "/tr", "GET", False),
        ({"path_regex": re.compile("/tr/?")}, "/tr", "GET", True),
        ({"path_regex": re.compile("/tr/?")}, "/tr/", "GET", True),
        ({"path_regex": re.compile("/tr/?")}, "/tr/x", "GET", False),  # fullmatch
        ({"path_regex": re.compile("/tr/?")}, "/x/tr", "GET", False),
        ({"path_regex": re.compile("/p/[0-9]+")}, "/p/12", "GET", True),
        ({"path_regex": re.compile("/p/[0-9]+")}, "/p/12\n", "GET", False),
    ],
)
def test_endpoint_matches(spec: dict[str, Any], path: str, method: str, ok: bool) -> None:
    assert endpoint(**spec).matches(path, method) is ok


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"path": "/a", "path_prefix": "/b"}, "exactly one"),
        ({"path_prefix": "/a", "path_regex": re.compile("/a")}, "exactly one"),
        ({"id": "Bad Id"}, "endpoint id"),
        ({"methods": frozenset()}, "methods"),
        ({"methods": frozenset({"get"})}, "methods"),
        ({"methods": frozenset({"BREW"})}, "methods"),
        ({"purposes": frozenset()}, "purpose"),
    ],
)
def test_endpoint_invariants(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        endpoint(**kw)


def test_endpoint_with_no_matcher_is_refused() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        EndpointSpec(
            id="e",
            kind=EndpointKind.BEACON,
            purposes=frozenset({"a"}),
            forward_mode=ForwardMode.ASYNC,
        )


def test_endpoint_when_denied_is_read_only() -> None:
    e = endpoint(when_denied={"advertising": StripSpec(query=frozenset({"gclid"}))})
    with pytest.raises(TypeError):
        e.when_denied["x"] = StripSpec()  # type: ignore[index]


@pytest.mark.parametrize(
    ("spec", "shown"),
    [
        ({"path": "/a"}, "/a"),
        ({"path_prefix": "/a/"}, "/a/*"),
        ({"path_regex": re.compile("/a+")}, "~/a+"),
    ],
)
def test_endpoint_pattern(spec: dict[str, Any], shown: str) -> None:
    assert endpoint(**spec).pattern == shown


# -- VendorRule ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"vendor": "Bad"}, "slug"),
        ({"hosts": ()}, "at least one host"),
        ({"hosts": ("*.com",)}, "wildcard"),
        ({"hosts": ("A.example.com",)}, "lower case"),
        ({"purposes": frozenset()}, "at least one purpose"),
        ({"endpoints": ()}, "at least one endpoint"),
        ({"endpoints": (endpoint(), endpoint())}, "unique"),
        ({"route": "/ga4/", "route_host": "a.example.com"}, "route"),
        ({"route": "/metrics", "route_host": "a.example.com"}, "served by the gateway"),
        ({"route": "/ga4"}, "route_host"),
        ({"route": "/ga4", "route_host": "b.example.com"}, "route_host"),
        ({"route": "/ga4", "route_host": "*.example.com", "hosts": ("*.example.com",)}, "route"),
        ({"route_host": "a.example.com"}, "without route"),
    ],
)
def test_vendor_invariants(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        vendor(**kw)


def test_vendor_route_host_may_be_under_a_wildcard() -> None:
    rule = vendor(hosts=("*.clarity.ms",), route="/clarity", route_host="www.clarity.ms")
    assert rule.route_host == "www.clarity.ms"


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("a.example.com", True),
        ("x.b.example.com", True),
        ("b.example.com", False),  # the bare suffix of a wildcard
        ("example.com", False),
        ("c.example.com", False),
    ],
)
def test_vendor_covers_host(host: str, ok: bool) -> None:
    assert vendor(hosts=("a.example.com", "*.b.example.com")).covers_host(host) is ok


def test_vendor_endpoint_by_id() -> None:
    first, second = endpoint(id="one"), endpoint(id="two", path="/two")
    rule = vendor(endpoints=(first, second))
    assert rule.endpoint("two") is second
    assert rule.endpoint("three") is None


# -- ExampleSpec -----------------------------------------------------------------


def test_example_url_parts() -> None:
    ex = ExampleSpec(
        url="https://WWW.Example.com/tr/%2Fx?id=1&ev=PageView",
        consent={"advertising": ConsentValue.DENIED},
        expect=Action.DROP,
    )
    assert (ex.host, ex.path, ex.query) == ("www.example.com", "/tr/%2Fx", "id=1&ev=PageView")
    assert ex.method == "GET" and ex.body is None and ex.line is None
    assert ExampleSpec(url="https://a.example.com", expect=Action.REJECT).path == "/"


def test_example_mappings_are_read_only() -> None:
    ex = ExampleSpec(url="https://a.b/", headers={"x": "y"}, expect=Action.FORWARD)
    with pytest.raises(TypeError):
        ex.headers["x"] = "z"  # type: ignore[index]
    with pytest.raises(TypeError):
        ex.consent["analytics"] = ConsentValue.GRANTED  # type: ignore[index]
