"""gateway.cors: which origins may call the gateway cross-origin, preflights and answers.

The matching function as a table; preflights and answers through a live gateway, for the
consent API and for tag routes (a generic `/t/` route and a rule's first-party prefix).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st

from gateway.cors import MAX_HEADER_LEN, MAX_HEADERS, allowed_headers, origin_allowed
from tests.conftest import FakeVendor, cookie_for, settled

Client = TestClient[Any, Any]

SITE = "https://www.example.com"
ALLOWED = ("https://www.example.com", "https://*.shop.example", "http://localhost:3000")
POSTHOG = "us.i.posthog.com"
CAPTURE = f"/t/{POSTHOG}/e/"


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://www.example.com", True),
        ("HTTPS://WWW.EXAMPLE.COM", True),  # normalised like the config's entries
        ("https://www.example.com:443", True),  # the default port is no port
        ("http://www.example.com", False),  # another scheme is another origin
        ("https://www.example.com:8443", False),
        ("https://example.com", False),
        ("https://www.example.com.evil.test", False),
        ("https://evilwww.example.com", False),
        ("https://a.shop.example", True),  # *.shop.example: any subdomain
        ("https://a.b.shop.example", True),  # at any depth
        ("https://shop.example", False),  # not the name itself
        ("https://evilshop.example", False),
        ("http://a.shop.example", False),  # the pattern's scheme
        ("https://a.shop.example:444", False),  # and port
        ("https://*.shop.example", False),  # an origin is never a pattern
        ("http://localhost:3000", True),
        ("http://localhost", False),
        ("null", False),
        ("", False),
        (None, False),
        ("https://www.example.com/", False),  # an Origin has no path
        ("https://user@www.example.com", False),
        ("www.example.com", False),
        ("javascript:alert(1)", False),
    ],
)
def test_origin_allowed(origin: str | None, allowed: bool) -> None:
    assert origin_allowed(origin, ALLOWED) is allowed


def test_no_origin_is_allowed_when_none_is_listed() -> None:
    assert not origin_allowed(SITE, ())


@pytest.mark.parametrize(
    ("requested", "echoed"),
    [
        ([], ()),
        (["Content-Type"], ("content-type",)),
        (["content-type, X-Requested-With"], ("content-type", "x-requested-with")),
        (["content-type", "content-type,CONTENT-TYPE"], ("content-type",)),
        (["x-ok, bad header, x\r\nset-cookie: a, x-two"], ("x-ok", "x-two")),
        (["<script>, x-ok"], ("x-ok",)),
        ([",,, ,x-ok,,"], ("x-ok",)),
        (["x-" + "a" * MAX_HEADER_LEN], ()),
    ],
)
def test_allowed_headers(requested: list[str], echoed: tuple[str, ...]) -> None:
    assert allowed_headers(requested) == echoed


@given(st.lists(st.text(max_size=200), max_size=40))
def test_allowed_headers_are_bounded_tokens(requested: list[str]) -> None:
    out = allowed_headers(requested)
    assert len(out) <= MAX_HEADERS and len(set(out)) == len(out)
    for name in out:
        assert 0 < len(name) <= MAX_HEADER_LEN and name == name.lower()
        assert all(c.isascii() and (c.isalnum() or c in "!#$%&'*+-.^_`|~") for c in name)


@pytest.fixture
async def cors_client(gateway_factory: Callable[..., Any]) -> Client:
    c: Client = await gateway_factory(
        hosts=[POSTHOG, "www.google-analytics.com"],
        extra={"server": {"allowed_origins": list(ALLOWED)}},
    )
    return c


def _preflight(origin: str, method: str, headers: str | None = None) -> dict[str, str]:
    h = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers is not None:
        h["Access-Control-Request-Headers"] = headers
    return h


def _no_cors(headers: Any) -> bool:
    return not any(k.lower().startswith("access-control-") for k in headers)


@pytest.mark.parametrize(
    ("path", "origin", "method", "status"),
    [
        ("/consent", SITE, "POST", 204),
        ("/consent", SITE, "DELETE", 204),
        ("/consent", "https://a.shop.example", "GET", 204),
        ("/consent", SITE, "PUT", 403),
        ("/consent", "https://evil.example", "POST", 403),
        ("/consent", "null", "POST", 403),
        (CAPTURE, SITE, "POST", 204),
        (CAPTURE, "https://evil.example", "POST", 403),
        (CAPTURE, SITE, "DELETE", 403),  # no endpoint of the rule takes it
        (f"/t/{POSTHOG}/nothing-here", SITE, "POST", 403),  # no endpoint matches the path
        ("/t/unlisted.example/collect", SITE, "POST", 403),  # never an open proxy
        ("/t/127.0.0.1/collect", SITE, "POST", 403),
        ("/ga4/g/collect", SITE, "POST", 204),  # a rule's first-party prefix
        ("/ga4/nothing", SITE, "POST", 403),
    ],
)
async def test_preflights(
    cors_client: Client, fake_vendor: FakeVendor, path: str, origin: str, method: str, status: int
) -> None:
    resp = await cors_client.options(path, headers=_preflight(origin, method, "content-type"))
    assert resp.status == status
    if status == 204:
        assert resp.headers["Access-Control-Allow-Origin"] == origin
        assert resp.headers["Access-Control-Allow-Credentials"] == "true"
        assert resp.headers["Access-Control-Allow-Methods"] == method
        assert resp.headers["Access-Control-Allow-Headers"] == "content-type"
        assert "Origin" in resp.headers["Vary"]
    else:
        assert _no_cors(resp.headers)
        assert "preflight refused" in (await resp.json())["error"]
        assert origin not in await resp.text()
    # SECURITY: a preflight runs no stage of the pipeline and reaches no vendor
    await settled(cors_client)
    assert fake_vendor.seen == []


async def test_without_allowed_origins_nothing_changes(
    gateway_factory: Callable[..., Any], fake_vendor: FakeVendor
) -> None:
    client: Client = await gateway_factory(hosts=[POSTHOG])
    for path in ("/consent", CAPTURE):
        resp = await client.options(path, headers=_preflight(SITE, "POST", "content-type"))
        assert resp.status == 403 and _no_cors(resp.headers)
    resp = await client.get("/consent", headers={"Origin": SITE})
    assert resp.status == 200 and _no_cors(resp.headers) and "Vary" not in resp.headers
    cookie = {"cg_consent": cookie_for({"analytics": "granted"})}
    resp = await client.post(CAPTURE, data=b"{}", headers={"Origin": SITE}, cookies=cookie)
    assert resp.status == 200 and _no_cors(resp.headers)
    await settled(client)
    assert len(fake_vendor.seen) == 1


async def test_a_cross_origin_consent_api_call_from_an_allowed_origin(cors_client: Client) -> None:
    resp = await cors_client.post(
        "/consent", json={"purposes": {"analytics": True}}, headers={"Origin": SITE}
    )
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == SITE
    assert resp.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in resp.headers["Vary"]
    assert "cg_consent" in resp.cookies
    get = await cors_client.get("/consent", headers={"Origin": "https://a.shop.example"})
    assert get.headers["Access-Control-Allow-Origin"] == "https://a.shop.example"
    # an origin not listed: refused, and nothing tells its page the answer may be read
    evil = await cors_client.post(
        "/consent", json={"purposes": {"analytics": True}}, headers={"Origin": "https://evil.test"}
    )
    assert evil.status == 403 and _no_cors(evil.headers) and "cg_consent" not in evil.cookies
    read = await cors_client.get("/consent", headers={"Origin": "https://evil.test"})
    assert read.status == 200 and _no_cors(read.headers) and "Origin" in read.headers["Vary"]


@pytest.mark.parametrize(
    ("consent", "status", "action"),
    [("granted", 200, "forward"), ("denied", 200, "drop")],  # a drop: posthog-js's success
)
async def test_tag_answers_expose_the_decision_to_an_allowed_origin(
    cors_client: Client, fake_vendor: FakeVendor, consent: str, status: int, action: str
) -> None:
    # the vendor's own CORS headers must not survive: the gateway answers for its origin
    fake_vendor.answers["/e/"] = (
        200,
        {"Access-Control-Allow-Origin": "*", "Vary": "Accept-Encoding"},
        b"{}",
    )
    cookie = {"cg_consent": cookie_for({"analytics": consent})}
    resp = await cors_client.post(
        CAPTURE,
        data=b'{"event": "x"}',
        headers={"Origin": SITE, "Content-Type": "application/json"},
        cookies=cookie,
    )
    assert resp.status == status
    assert resp.headers["Access-Control-Allow-Origin"] == SITE
    assert resp.headers["Access-Control-Allow-Credentials"] == "true"
    assert resp.headers["Access-Control-Expose-Headers"] == "Consent-Gateway-Decision"
    assert resp.headers["Consent-Gateway-Decision"].startswith(action + "; vendor=posthog")
    assert "Origin" in resp.headers["Vary"]
    other = await cors_client.post(
        CAPTURE, data=b"{}", headers={"Origin": "https://evil.test"}, cookies=cookie
    )
    assert other.headers.get("Access-Control-Allow-Origin") != "https://evil.test"
    assert "Access-Control-Expose-Headers" not in other.headers


PORTS = ("https://www.example.com", "https://*.shop.example", "http://*.local.test:8080")


@pytest.mark.parametrize(
    ("origin", "found"),
    [
        ("https://www.example.com", "https://www.example.com"),
        ("https://WWW.example.com:443", "https://www.example.com"),
        ("https://a.shop.example", "https://a.shop.example"),
        ("https://a.b.shop.example", "https://a.b.shop.example"),
        ("http://x.local.test:8080", "http://x.local.test:8080"),
        ("https://shop.example", None),  # a wildcard is subdomains only
        ("http://a.shop.example", None),
        ("http://x.local.test", None),
        ("https://evilshop.example", None),
        ("https://www.example.com.evil.test", None),
        ("null", None),
        ("", None),
        (None, None),
        ("https://*.shop.example", None),
    ],
)
def test_origin_allowed_subdomains_ports_and_schemes(origin: str | None, found: str | None) -> None:
    assert origin_allowed(origin, PORTS) is (found is not None)
