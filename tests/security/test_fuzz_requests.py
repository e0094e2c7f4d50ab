"""Fuzzing the request path end to end: whatever a client sends, never a 5xx.

The request-to-facts parser (`edges.read_facts`: host segment, path, query, headers,
cookies, body and its Content-Encoding) and everything after it run in a live gateway
(tests/harness.py); hypothesis sends arbitrary and near-valid requests
over real HTTP. A 5xx would be a bug turned into an error page; every answer must be a
decision (2xx-3xx) or a clear refusal (4xx).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import DEFAULT_PURPOSES
from gateway.ruleset.load import load_rules
from tests.conftest import RULES_DIR
from tests.harness import LiveGateway, catalogue_gateway, concrete_host

RULES = load_rules([RULES_DIR], frozenset(DEFAULT_PURPOSES))
HOSTS = sorted({concrete_host(r) for r in RULES.rules})


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    gw = catalogue_gateway(tmp_path_factory.mktemp("fuzz-requests"), RULES)
    gw.start()
    yield gw
    gw.stop()


_text = st.text(st.characters(codec="latin-1", exclude_characters="\r\n\x00"), max_size=40)
_segment = st.one_of(
    st.sampled_from(["g", "collect", "tr", "activity;src=1;u1=x", "%2e%2e", "..", "%00", "a%2Fb"]),
    st.text(max_size=12).map(lambda t: quote(t, safe="")),
)
_host = st.one_of(
    st.sampled_from(HOSTS),
    st.sampled_from(["127.0.0.1", "evil.example", "a@b.example", "[::1]", "%31%32%37.0.0.1"]),
    st.text(max_size=20).map(lambda t: quote(t, safe="")),
)
_headers = st.dictionaries(
    st.sampled_from(
        [
            "Content-Type",
            "Content-Encoding",
            "Cookie",
            "Sec-GPC",
            "X-Forwarded-For",
            "Referer",
            "Origin",
            "User-Agent",
            "Upgrade",
        ]
    ),
    st.one_of(
        _text,
        st.sampled_from(["gzip", "br", "deflate", "application/json", "websocket", "1"]),
    ),
    max_size=4,
)
_body = st.one_of(
    st.just(b""),
    st.binary(max_size=300),
    st.sampled_from([b'{"user_data":{"em":"x"}}', b"en=x&gclid=1", b"[1,2"]),
    st.binary(max_size=200).map(gzip.compress),
)


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "PATCH"]),
    host=_host,
    segments=st.lists(_segment, max_size=4),
    query=_text.map(lambda t: quote(t, safe="=&;%+")),
    headers=_headers,
    body=_body,
)
def test_no_request_gets_a_5xx(
    live: LiveGateway,
    method: str,
    host: str,
    segments: list[str],
    query: str,
    headers: dict[str, str],
    body: bytes,
) -> None:
    target = f"/t/{host}/" + "/".join(segments) + (f"?{query}" if query else "")
    status, _ = live.request(
        method, target, body if method not in ("GET", "HEAD") else b"", headers
    )
    assert status < 500, (method, target, headers)


_report_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["csp-report", "blocked-uri", "document-uri", "type", "body", "kind"])
            | st.sampled_from(["blockedURL", "documentURL", "host", "page"]),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
).map(lambda doc: json.dumps(doc).encode())


@settings(
    # under the report endpoints' per-network limit (120 a minute): every answer is read
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    path=st.sampled_from(["/csp-report", "/cg-report"]),
    content_type=st.sampled_from(
        ["application/csp-report", "application/reports+json", "text/plain", "application/json"]
    )
    | _text,
    body=st.one_of(_report_json, st.binary(max_size=300)),
)
def test_a_report_is_answered_204_or_400_and_nothing_else(
    live: LiveGateway, path: str, content_type: str, body: bytes
) -> None:
    status, answer = live.request("POST", path, body, {"Content-Type": content_type})
    # 429: the fuzzer's own network used its reports (hypothesis may replay examples)
    assert status in (204, 400, 429), (path, content_type, body[:80], answer[:200])
    if status == 204:
        assert answer == b""
