"""gateway.redact: a request's values become names and templates before anything keeps
them (the decision log, the access log, the admin pages, a decision's reason)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.redact import (
    VALUE_MARK,
    clean,
    looks_like_value,
    sanitize_host,
    sanitize_method,
    sanitize_path,
)


@pytest.mark.parametrize(
    ("segment", "value"),
    [
        ("collect", False),
        ("v1", False),
        ("gtag.js", False),
        ("alice%40example.com", True),
        ("1234567890", True),
        ("5b2d5c1e-7a3f-4a9e-9c51-0d7e3b8a1f22", True),
        ("GCLIDLEAK123", True),
        ("203.0.113.7", True),
    ],
)
def test_looks_like_value(segment: str, value: bool) -> None:
    assert looks_like_value(segment) is value


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("www.google-analytics.com", "www.google-analytics.com"),
        ("alice@example.com:pw@evil.example", "evil.example"),
        ("evil.example:8443", "evil.example"),
        ("127.0.0.1", VALUE_MARK),
    ],
)
def test_sanitize_host(host: str, expected: str) -> None:
    assert sanitize_host(host) == expected


def test_sanitize_method_and_clean() -> None:
    assert sanitize_method("GET") == "GET" and sanitize_method("EXFIL123") == VALUE_MARK
    assert clean("a\x07b", 10) == "a?b"


_PLAIN_WORDS = st.from_regex(r"[a-z]{1,7}(_[a-z]{1,7})?(\.js)?", fullmatch=True)
# Emails whose local part holds a URL delimiter would cut the path itself (`?`, `#`).
_EMAILS = st.emails().filter(lambda e: not set(e) & set("/?#;=%\\"))
_VALUES = st.one_of(
    _EMAILS,
    _EMAILS.map(lambda e: e.replace("@", "%40")),
    st.from_regex(r"[0-9]{6,20}", fullmatch=True),
    st.from_regex(r"[0-9a-f]{8,40}", fullmatch=True).filter(lambda v: not v.isalpha()),
    st.uuids().map(str),
    st.from_regex(r"[A-Za-z]{4,12}[0-9]{1,8}[A-Za-z0-9]{0,8}", fullmatch=True).filter(
        lambda v: len(v) >= 8
    ),
    st.binary(min_size=12, max_size=48)
    .map(lambda b: base64.urlsafe_b64encode(b).decode().rstrip("="))
    .filter(lambda v: any(c.isdigit() for c in v) or v.lower() != v),
    st.ip_addresses().map(str),
)


@settings(max_examples=300, deadline=None)
@given(words=st.lists(_PLAIN_WORDS, min_size=1, max_size=5), value=_VALUES, at=st.integers(0, 5))
def test_sanitize_path_never_keeps_a_value(words: list[str], value: str, at: int) -> None:
    """Invariant: a value anywhere in the path (segment, `;` parameter, `name=value`)
    never survives, and the plain words around it do."""
    for shaped in (value, f"p;v={value}", f"{value};x", f"src={value}"):
        segments = [*words]
        segments.insert(min(at, len(segments)), shaped)
        out = sanitize_path("/" + "/".join(segments))
        assert value not in out, (value, out)
        assert [s for s in out.split("/") if s and "{…}" not in s] == words
