"""Builders for the tests of the transform stage (gateway.transform and its strips in
transform_query, transform_body, transform_headers): a GA4 request and a decision to run
through `transform`, the headers a browser or proxy may send, compressed bodies, and the
JSON documents the properties draw.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable

import brotli
from hypothesis import strategies as st

from gateway.model import (
    Action,
    BodyKind,
    Decision,
    Facts,
    Headers,
    Outgoing,
    StripSpec,
)
from gateway.transform import transform

__all__ = [
    "ALL_HEADERS",
    "CODINGS",
    "CONSENT_COOKIE",
    "DEFAULT_HEADERS",
    "FORM_CT",
    "IDS",
    "JSON_CT",
    "JSON_STRIP",
    "KEPT_HEADERS",
    "NO_STRIPS",
    "SHA",
    "encoded_facts",
    "json_docs",
    "make_decision",
    "make_facts",
    "run",
    "values",
]

# --- a request and its decision ----------------------------------------------------------

CONSENT_COOKIE = frozenset({"cg_consent"})


DEFAULT_HEADERS = (("User-Agent", "Mozilla/5.0"), ("Cookie", "_ga=GA1.1.1; cg_consent=x"))


def make_facts(
    *,
    query: str = "v=2&tid=G-1&cid=555.1",
    headers: tuple[tuple[str, str], ...] = DEFAULT_HEADERS,
    body: bytes = b"",
    client_ip: str | None = "203.0.113.77",
    method: str = "GET",
) -> Facts:
    return Facts(
        request_id="r1",
        method=method,
        host="www.google-analytics.com",
        path="/g/collect",
        query=query,
        headers=Headers(headers),
        cookies={},
        body=body,
        client_ip=client_ip,
    )


NO_STRIPS = StripSpec()


def make_decision(strips: StripSpec = NO_STRIPS, action: Action = Action.STRIP) -> Decision:
    return Decision(
        action=action,
        vendor="google-analytics-4",
        endpoint="collect",
        required=frozenset({"analytics"}),
        missing=frozenset(),
        strips=strips,
        reason="test",
    )


def run(
    strips: StripSpec = NO_STRIPS,
    body_kind: BodyKind = BodyKind.NONE,
    own_cookies: frozenset[str] = CONSENT_COOKIE,
    *,
    query: str = "v=2&tid=G-1&cid=555.1",
    headers: tuple[tuple[str, str], ...] = DEFAULT_HEADERS,
    body: bytes = b"",
    client_ip: str | None = "203.0.113.77",
    method: str = "GET",
) -> Outgoing:
    facts = make_facts(query=query, headers=headers, body=body, client_ip=client_ip, method=method)
    return transform(facts, make_decision(strips), body_kind, own_cookies=own_cookies)


def values(out: Outgoing, name: str) -> list[str]:
    return [v for n, v in out.headers if n.lower() == name.lower()]


JSON_STRIP = StripSpec(json=frozenset({"user_id"}))


# --- headers -----------------------------------------------------------------------------
ALL_HEADERS = (
    ("Host", "gw.shop.test"),
    ("Authorization", "Bearer site-token"),
    ("Proxy-Authorization", "Basic eA=="),
    ("X-Forwarded-For", "198.51.100.9"),
    ("X-Forwarded-Host", "shop.test"),
    ("X-Forwarded-Proto", "https"),
    ("Forwarded", "for=198.51.100.9"),
    ("X-Real-IP", "198.51.100.9"),
    ("True-Client-IP", "198.51.100.9"),
    ("CF-Connecting-IP", "198.51.100.9"),
    ("CF-IPCountry", "DE"),
    ("Content-Length", "12"),
    ("Connection", "keep-alive"),
    ("Keep-Alive", "timeout=5"),
    ("Transfer-Encoding", "chunked"),
    ("TE", "trailers"),
    ("Upgrade", "websocket"),
    ("Accept-Encoding", "gzip"),
    ("X-Custom", "1"),
    ("Sec-CH-Prefers-Color-Scheme", "dark"),
    ("Accept", "*/*"),
    ("Accept-Language", "de-DE"),
    ("Content-Type", "text/plain"),
    ("User-Agent", "Mozilla/5.0"),
    ("Referer", "https://shop.test/p?x=1"),
    ("Origin", "https://shop.test"),
    ("Cookie", "_ga=GA1.1.1"),
    ("DNT", "1"),
    ("Sec-GPC", "1"),
    ("Sec-CH-UA", '"Chromium";v="130"'),
    ("Sec-CH-UA-Mobile", "?0"),
    ("Sec-CH-UA-Platform", '"Linux"'),
)


KEPT_HEADERS = {
    "accept",
    "accept-language",
    "content-type",
    "user-agent",
    "referer",
    "origin",
    "cookie",
    "dnt",
    "sec-gpc",
    "sec-ch-ua",
    "sec-ch-ua-mobile",
    "sec-ch-ua-platform",
}


json_docs = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=3),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(alphabet="abcd", min_size=1, max_size=2), children, max_size=4)
    ),
    max_leaves=25,
)


# --- compressed bodies -------------------------------------------------------------------

#: Content-Encoding header -> (encoder, decoder): what an SDK sends, what the vendor undoes
CODINGS: dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]] = {
    "gzip": (gzip.compress, gzip.decompress),
    "x-gzip": (gzip.compress, gzip.decompress),
    "deflate": (zlib.compress, zlib.decompress),
    "br": (brotli.compress, brotli.decompress),
    "gzip, br": (
        lambda b: brotli.compress(gzip.compress(b)),
        lambda b: gzip.decompress(brotli.decompress(b)),
    ),
}


def encoded_facts(coding: str, plain: bytes, *, at_edge: bool) -> Facts:
    """Facts for a POST whose body is `plain` sent in `coding`; `at_edge`: decoded by
    `edges.read_facts` already, as the live gateway does."""
    return Facts(
        "r",
        "POST",
        "h.example",
        "/p",
        "",
        headers=Headers((("Content-Type", "text/plain"), ("Content-Encoding", coding))),
        body=CODINGS[coding][0](plain),
        decoded_body=plain if at_edge else None,
    )


# --- strips ------------------------------------------------------------------------------

IDS = StripSpec(identifiers=True)


JSON_CT = (("Content-Type", "application/json"),)


FORM_CT = (("Content-Type", "application/x-www-form-urlencoded"),)


SHA = "309a0a5c3e211326ae75ca18196d301a9bdbd1a882a4d2569511033da23f0abd"
