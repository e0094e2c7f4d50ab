"""Fuzzing the parsers a visitor's request reaches: no foreign exception, linear time.

Every byte of a tag request is the visitor's (or an attacker's): the host segment and
path of the URL, the query, headers, cookies and body, and the consent strings inside
them. Each parser below documents the one exception type it may raise for bad input
(gateway/errors.py); anything else escaping (IndexError, RecursionError, a
UnicodeError…) would turn bad input into a 500 with a traceback, or, inside the core,
into a fail-closed DROP where a clear answer was owed. Hypothesis throws arbitrary and
near-valid input at each of them.

Time: a parser that is quadratic in its input is a denial of service a single request
can mount. Each parser is timed on an input and on the same input repeated eight
times; the larger must cost less than 30 × the smaller (linear would be about 8 ×,
quadratic 64 ×). The minimum of several runs is compared, so a busy machine slows both
sides alike rather than failing the check.
"""

from __future__ import annotations

import string
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import DEFAULT_PURPOSES, CookieKey
from gateway.consent import cmp, gcm, gpp, tcf, usp
from gateway.consent.cookie import verify_cookie
from gateway.core import evaluate
from gateway.cors import allowed_headers, origin_allowed
from gateway.edges import forwarded_elements
from gateway.errors import (
    CMPError,
    ConsentCookieError,
    GCMError,
    GPPError,
    SignalError,
    TCFError,
)
from gateway.model import Facts, Headers
from gateway.ruleset.load import load_rules
from gateway.ruleset.match import is_safe_path, normalize_host
from tests.conftest import RULES_DIR, make_config
from tests.consent.cmp_harness import REASONS

RULES = load_rules([RULES_DIR], frozenset(DEFAULT_PURPOSES))
HOSTS = sorted({h.replace("*.", "probe.") for rule in RULES.rules for h in rule.hosts})
KEYS = (CookieKey("k1", b"k" * 32),)

#: characters that mean something to one of the parsers (separators, encodings, TC/GPP
#: alphabets) mixed with arbitrary text, so examples are near-valid as often as random
_MEANINGFUL = string.ascii_letters + string.digits + "-_.~%/?#&;=:@[]\\!$'()*+, |@~\x00é\u212a"
text = st.text(alphabet=st.sampled_from(_MEANINGFUL), max_size=300) | st.text(max_size=300)

#: (parser, the exception it documents for bad input, a near-valid seed for the timing)
DECODERS: list[tuple[str, Callable[[str], object], type[Exception], str]] = [
    ("tcf", tcf.decode_tc_string, TCFError, "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA"),
    ("gpp", gpp.decode_gpp, GPPError, "DBABMA~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA"),
    ("us_privacy", usp.decode_us_privacy, GPPError, "1YNN"),
    ("gcs", gcm.decode_gcs, GCMError, "G111"),
    ("gcd", gcm.decode_gcd, GCMError, "13r3r3r3r5l1"),
    ("npa", gcm.decode_npa, GCMError, "1"),
    ("cookie", lambda v: verify_cookie(v, KEYS), ConsentCookieError, "k1.eyJhIjoxfQ.c2ln"),
]


@pytest.mark.parametrize(
    ("name", "decode", "error", "seed"), DECODERS, ids=[d[0] for d in DECODERS]
)
@settings(max_examples=300, deadline=None)
@given(value=text)
def test_decoders_raise_only_their_own_error(
    name: str, decode: Callable[[str], object], error: type[Exception], seed: str, value: str
) -> None:
    for candidate in (value, seed + value, seed[: len(value) % (len(seed) + 1)] + value):
        try:
            decode(candidate)
        except error:
            pass


@settings(max_examples=300, deadline=None)
@given(
    values=st.dictionaries(
        st.sampled_from(sorted(cmp.CMP_COOKIES) + ["cmplz_marketing", "cmplz_statistics"]), text
    )
)
def test_cmp_cookies_never_raise(values: dict[str, str]) -> None:
    """`decode_cmp_cookies` reports each bad cookie as a failure and never raises."""
    decoded, failures = cmp.decode_cmp_cookies(values)
    assert len(decoded) + len(failures) <= len(values) + 1
    for failure in failures:
        # a failure names the CMP and why, from a closed set of phrases: never the value
        # it was given (a substring check would flag a value that happens to be a phrase)
        assert failure.reason in REASONS


@settings(max_examples=500, deadline=None)
@given(raw=text)
def test_host_and_path_checks_are_total(raw: str) -> None:
    host = normalize_host(raw)
    if host is not None:
        # SECURITY: what passes is a plain DNS name: nothing a URL parser reads as an
        # authority, a port or an IP literal
        assert all(c in string.ascii_lowercase + string.digits + "-." for c in host)
        assert not host.replace(".", "").isdigit()
    is_safe_path(raw)
    is_safe_path("/" + raw)


CONFIG = make_config(Path("/nonexistent-fuzz"), extra={"consent": {"max_age": "365d"}})

signal_names = st.sampled_from(
    ["gcs", "gcd", "npa", "gdpr", "gdpr_consent", "gpp", "gpp_sid", "us_privacy", "cid", "dl"]
)
queries = st.lists(st.tuples(signal_names | text, text), max_size=8).map(
    lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)
)
cookie_names = st.sampled_from(
    ["cg_consent", "euconsent-v2", "__gpp", "__gpp_sid", "usprivacy", *sorted(cmp.CMP_COOKIES)]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    host=st.sampled_from(HOSTS),
    method=st.sampled_from(["GET", "POST", "PUT", "OPTIONS", "get", "BREW"]),
    path=text.map(lambda p: "/" + p),
    query=queries | text,
    cookies=st.dictionaries(cookie_names, text, max_size=4),
    headers=st.lists(
        st.tuples(
            st.sampled_from(["Content-Type", "Content-Encoding", "Sec-GPC", "Referer"]), text
        ),
        max_size=4,
    ),
    body=st.binary(max_size=400) | text.map(str.encode),
    client_ip=st.none() | st.sampled_from(["203.0.113.9", "2001:db8::1", "not-an-ip", ""]),
)
def test_evaluate_never_raises(
    host: str,
    method: str,
    path: str,
    query: str,
    cookies: dict[str, str],
    headers: list[tuple[str, str]],
    body: bytes,
    client_ip: str | None,
) -> None:
    """The pure core answers every request with a decision: nothing escapes `evaluate`
    (a bad body is a DROP with a reason, a bad signal an absent one)."""
    facts = Facts(
        request_id="fuzz",
        method=method,
        host=host,
        path=path,
        query=query,
        headers=Headers(tuple(headers)),
        cookies=cookies,
        body=body,
        client_ip=client_ip,
        now=1_800_000_000.0,
    )
    ev = evaluate(facts, CONFIG, RULES)
    assert ev.decision.reason or ev.decision.action.value


def _cost(fn: Callable[[str], object], value: str, repeat: int = 5) -> float:
    # CPU time of this thread: other processes (test workers, browsers) must not count
    best = float("inf")
    for _ in range(repeat):
        started = time.thread_time()
        try:
            fn(value)
        except (SignalError, ConsentCookieError, CMPError):
            pass
        best = min(best, time.thread_time() - started)
    return best


def _evaluate_query(query: str) -> object:
    facts = Facts(
        request_id="t",
        method="GET",
        host="www.google-analytics.com",
        path="/g/collect",
        query=query,
        now=1_800_000_000.0,
    )
    return evaluate(facts, CONFIG, RULES)


LINEAR: list[tuple[str, Callable[[str], object], str]] = [
    *[(name, decode, seed + "A" * 200) for name, decode, _, seed in DECODERS],
    ("host", normalize_host, "a-" * 60 + ".example.com"),
    ("path", is_safe_path, "/a/%2e./b;c=d" * 40),
    ("evaluate-query", _evaluate_query, "v=2&tid=G-X&cid=1.2&en=page_view&gclid=x&" * 40),
    (
        "cmp-cookies",
        lambda v: cmp.decode_cmp_cookies(dict.fromkeys(cmp.CMP_COOKIES, v)),
        "groups=C0001%3A1%2CC0002%3A0&" * 20,
    ),
    # the headers of a cross-origin or proxied request (gateway.cors, gateway.edges)
    ("forwarded", lambda v: forwarded_elements([v]), 'for=1.2.3.4;host="a\\"b",proto=https'),
    ("cors-headers", lambda v: allowed_headers([v]), "content-type, x-a\x00b, "),
    ("origin", lambda v: origin_allowed(v, ("https://*.example.com",)), "https://a.b" * 20),
]


@pytest.mark.parametrize(("name", "fn", "seed"), LINEAR, ids=[x[0] for x in LINEAR])
def test_cost_is_linear_in_input_size(name: str, fn: Callable[[str], object], seed: str) -> None:
    small = _cost(fn, seed)
    large = _cost(fn, seed * 8)
    # both sides are tiny when a parser refuses early (length caps): floor the small one
    # at 20 µs so timer noise cannot masquerade as growth
    assert large < 30 * max(small, 20e-6), f"{name}: {small * 1e6:.0f} µs -> {large * 1e6:.0f} µs"
