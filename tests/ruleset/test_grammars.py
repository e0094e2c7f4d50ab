"""gateway.ruleset.grammars: each grammar's pattern accepts what its check accepts."""

from __future__ import annotations

import pytest

from gateway.config import DEFAULT_PURPOSES
from gateway.ruleset.grammars import GRAMMARS, PURPOSE_NAME, VENDOR_ID
from tests.grammar_harness import assert_agrees, disagreement

#: values each grammar must get right: the shipped rules' kind, and the near misses
SEEDS: dict[str, list[str]] = {
    "vendor_id": ["meta-pixel", "a" * 64, "a" * 65, "Meta", "a--b"],
    "purpose": [*DEFAULT_PURPOSES, "_", "a" * 33],
    "host_pattern": [
        "www.google-analytics.com",
        "*.analytics.google.com",
        "*.com",
        "1.2.3.4",
        "a.0x7f",
        "a.0xg",
        "xn--bcher-kva.example",
        "WWW.example.com",
        "a..b",
        "a.b.",
        f"{'a' * 63}.com",
        f"{'a' * 64}.com",
        ".".join(["a" * 63] * 4),
        "*.*.example.com",
        "a.*.example.com",
        "a.example.com/x",
        "a.example.com/",
        "a.1/x",
    ],
    "dns_name": ["www.example.com", "*.example.com", "example", "a.1", "a.b1"],
    "route": [
        "/ga4",
        "/ga4/x",
        "/t",
        "/t/x",
        "/tx",
        "/consent",
        "/cg.js",
        "/cg.jsx",
        "/a/../b",
        "/a/.",
    ],
    "raw_path": [
        "/g/collect",
        "/",
        "/tr/",
        "/a b",
        "/a?b",
        "/a#b",
        "/a\\b",
        "/a/../b",
        "/a/%2e%2e/b",
    ],
    "regex": ["/tr/?", "[", "(?P<x>a)", "a{2,}"],
    "endpoint_id": ["collect", "a" * 65, "Collect"],
    "field_name": ["gclid", "up.*", "*", "u*", "a*b", "a b", "ud[em]", "~oref", "a\x00"],
    "json_path": ["data[].user_data.em", "[].user_id", "a[]", "[]", "a.*", "a*", "a[][].b", "a.b*"],
    "keep_name": ["*", "email", "u*", "**"],
    "example_field": ["cid", "json:user_data", "json:a[]", "json:", "json:a.b*"],
    "header_name": ["Cookie", "x-forwarded-for", "a b", "a:b"],
    "forward_header": [
        "authorization",
        "Access-Token",
        "cookie",
        "Cookie",
        "x-forwarded-for",
        "X-Forwarded-Proto",
        "cf-ipcountry",
        "proxy-x",
        "te",
        "tex",
    ],
    "method": ["GET", "get", "Post", "HEAD", "CONNECT", "TRACE", "GETS"],
    "media_type": ["text/plain", "application/vnd.api+json", "Text/plain", "text", "a/" + "b" * 98],
    "example_url": [
        "https://www.google-analytics.com/g/collect?v=2",
        "https://a.example.com",
        "HTTPS://a.example.com/",
        "http://a.example.com/",
        "https://u@a.example.com/",
        "https://a.example.com:443/",
        "https:///x",
    ],
}


def test_every_grammar_is_seeded() -> None:
    assert sorted(SEEDS) == sorted(GRAMMARS)


@pytest.mark.parametrize("name", sorted(GRAMMARS))
def test_each_grammar_pattern_agrees_with_its_check(name: str) -> None:
    grammar = GRAMMARS[name]
    if grammar.pattern is None:
        assert not grammar.exact  # no pattern: the schema accepts any string
        return
    assert_agrees(grammar, SEEDS[name])


def test_the_shared_grammars_are_the_rule_files_too() -> None:
    assert GRAMMARS["vendor_id"] is VENDOR_ID
    assert PURPOSE_NAME.examples == DEFAULT_PURPOSES


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("raw_path", "/a/%2e%2e/b"),  # percent-encoded dot segments: the loader's to find
        ("regex", "("),  # whether it compiles: the loader's to say
        ("example_url", "https://a.example.com:443/"),
    ],
)
def test_a_loose_grammar_leaves_to_the_loader_what_a_pattern_cannot_say(
    name: str, value: str
) -> None:
    grammar = GRAMMARS[name]
    assert not grammar.exact and grammar.error(value) is not None
    assert disagreement(grammar, value) is None
