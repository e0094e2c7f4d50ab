"""gateway.ruleset.parse: one rule file -> specs, every problem with file, line and field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.config import DEFAULT_PURPOSES
from gateway.errors import Problem
from gateway.model import (
    NECESSARY,
    Action,
    BodyKind,
    ConsentValue,
    EndpointKind,
    IpPolicy,
    ReferrerPolicy,
    StripSpec,
)
from gateway.ruleset.drop_answer import DROP_ANSWER_KEYS
from gateway.ruleset.parse import (
    ENDPOINT_KEYS,
    EXAMPLE_KEYS,
    MATCH_KEYS,
    RULE_KEYS,
    STRIP_KEYS,
    parse_rule,
)
from gateway.ruleset.schema import ForwardMode, VendorRule
from tests.conftest import RULES_DIR, SHIPPED_RULES

KNOWN = frozenset(DEFAULT_PURPOSES)
FILE = "rules/test.yaml"

# Line numbers matter: the problem table below points into this text.
BASE = """\
vendor: test-vendor
name: Test
hosts: [a.example.com, "*.b.example.com"]
purposes: [analytics]
endpoints:
  - id: collect
    match: {path: /collect, methods: [GET, POST]}
    kind: beacon
examples:
  - url: https://a.example.com/collect?cid=1
    consent: {analytics: granted}
    expect: forward
"""


def variant(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


def parse(text: str) -> tuple[VendorRule | None, list[Problem]]:
    return parse_rule(text, FILE, KNOWN)


def test_base_rule_is_valid() -> None:
    rule, problems = parse(BASE)
    assert problems == []
    assert rule is not None and rule.vendor == "test-vendor" and rule.file == FILE


def test_problem_names_file_line_rule_and_field() -> None:
    _, problems = parse(variant("{path: /collect,", "{pth: /collect,"))
    assert (
        "rules/test.yaml:7: test-vendor/endpoints[0].match.pth: unknown key (did you mean 'path'?)"
        in [str(p) for p in problems]
    )


# Anchors in BASE that the rows below replace.
V, EP, EX = "test-vendor", "test-vendor/endpoints[0]", "test-vendor/examples[0]"
PURPOSES = "purposes: [analytics]"
HOSTS = 'hosts: [a.example.com, "*.b.example.com"]'
MATCH = "{path: /collect,"
METHODS = "methods: [GET, POST]"
KIND = "    kind: beacon"
URL = "https://a.example.com/collect?cid=1"
CONSENT = "{analytics: granted}"
EXPECT = "    expect: forward"
ENDPOINTS = BASE[BASE.index("endpoints:") : BASE.index("examples:")]
EXAMPLES = BASE[BASE.index("examples:") :]
SECOND_ENDPOINT = KIND + "\n  - {id: collect, match: {path: /c}, kind: pixel}"

# Each row: (replace this, with this) in BASE -> a problem at (line, where) whose message
# contains the text. Other problems may come with it (e.g. a misspelled key is also missing).
PROBLEMS: list[tuple[str, str, int | None, str, str]] = [
    # misspelled keys, with a suggestion
    (PURPOSES, "purpose: [analytics]", 4, f"{V}/purpose", "did you mean 'purposes'?"),
    (KIND, "    knd: beacon", 8, f"{EP}.knd", "did you mean 'kind'?"),
    (EXPECT, EXPECT + "\n    remove: [cid]", 13, f"{EX}.remove", "did you mean 'removed'?"),
    (
        KIND,
        KIND + "\n    forward_headers: [x-forwarded-for]",
        9,
        f"{EP}.forward_headers[0]",
        "never forwards",
    ),
    (
        KIND,
        KIND + "\n    forward_headers: [cookie]",
        9,
        f"{EP}.forward_headers[0]",
        "never forwards",
    ),
    (KIND, KIND + "\n    always: {querry: [a]}", 9, f"{EP}.always.querry", "mean 'query'?"),
    # a drop answer: only on api endpoints, a 2xx, with its source and one body form
    (
        KIND,
        KIND + "\n    drop_answer: {status: 200, source: s}",
        9,
        f"{EP}.drop_answer",
        "only an api",
    ),
    (KIND, "    kind: api\n    drop_answer: {status: 200}", 9, f"{EP}.drop_answer", "'source'"),
    (
        KIND,
        "    kind: api\n    drop_answer: {status: 500, source: s}",
        9,
        f"{EP}.drop_answer.status",
        "value",
    ),
    (
        KIND,
        "    kind: api\n    drop_answer: {status: 200, json: {}, text: '1', source: s}",
        9,
        f"{EP}.drop_answer",
        "not both",
    ),
    (
        KIND,
        "    kind: api\n    drop_answer: {status: 200, json: {at: 2024-01-01}, source: s}",
        9,
        f"{EP}.drop_answer.json",
        "plain JSON",
    ),
    (
        KIND,
        "    kind: api\n    drop_answer: {status: 200, text: '1', content_type: 'a b', source: s}",
        9,
        f"{EP}.drop_answer.content_type",
        "media type",
    ),
    (
        KIND,
        "    kind: api\n    drop_answer: {status: 204, text: '1', source: s}",
        9,
        f"{EP}.drop_answer",
        "no body",
    ),
    # missing required keys
    ("name: Test\n", "", 1, V, "missing required key 'name'"),
    (KIND + "\n", "", 6, EP, "missing required key 'kind'"),
    (EXPECT + "\n", "", 10, EX, "missing required key 'expect'"),
    ("vendor: test-vendor\n", "", 1, "", "missing required key 'vendor'"),
    (EXAMPLES, "", 1, V, "missing required key 'examples'"),
    # bad enums and types
    ("kind: beacon", "kind: becon", 8, f"{EP}.kind", "must be one of: beacon, pixel, script, api"),
    (KIND, KIND + "\n    body: xml", 9, f"{EP}.body", "must be one of"),
    (KIND, KIND + "\n    forward_mode: later", 9, f"{EP}.forward_mode", "must be one of"),
    (EXPECT, "    expect: allow", 12, f"{EX}.expect", "must be one of"),
    (CONSENT, "{analytics: yes please}", 11, f"{EX}.consent.analytics", "must be one of"),
    (PURPOSES, PURPOSES + "\nalways: {ip: hide}", 5, f"{V}/always.ip", "must be one of"),
    (PURPOSES, PURPOSES + "\nalways: {referrer: url}", 5, f"{V}/always.referrer", "must be one"),
    (PURPOSES, PURPOSES + "\ntcf_vendor_id: -1", 5, f"{V}/tcf_vendor_id", "value"),
    (PURPOSES, PURPOSES + "\nreport_only: maybe", 5, f"{V}/report_only", "true or false"),
    ("name: Test", "name: [Test]", 2, f"{V}/name", "expected a string"),
    # ids
    ("vendor: test-vendor", "vendor: Test_Vendor", 1, "vendor", "lower-case slug"),
    ("  - id: collect", "  - id: Collect", 6, f"{EP}.id", "lower-case slug"),
    # matchers
    (MATCH, "{path_regex: '/c(',", 7, f"{EP}.match.path_regex", "not a regular expression"),
    (MATCH, "{path: /collect, path_prefix: /c,", 7, f"{EP}.match", "exactly one of"),
    (MATCH, "{", 7, f"{EP}.match", "exactly one of"),
    (MATCH, "{path: collect,", 7, f"{EP}.match.path", "starting with '/'"),
    (MATCH, "{path: '/collect?x=1',", 7, f"{EP}.match.path", "no query"),
    (MATCH, "{path_prefix: /tr/../,", 7, f"{EP}.match.path_prefix", "dot segments"),
    (METHODS, "methods: [GET, FETCH]", 7, f"{EP}.match.methods[1]", "must be one of"),
    (METHODS, "methods: []", 7, f"{EP}.match.methods", "at least one method"),
    # purposes
    (PURPOSES, "purposes: [analytic]", 4, f"{V}/purposes[0]", "(did you mean 'analytics'?)"),
    (PURPOSES, "purposes: []", 4, f"{V}/purposes", "at least one purpose"),
    (KIND, KIND + "\n    purposes: [ads]", 9, f"{EP}.purposes[0]", "unknown purpose 'ads'"),
    (CONSENT, "{marketing: denied}", 11, f"{EX}.consent.marketing", "unknown purpose"),
    (PURPOSES, PURPOSES + "\nwhen_denied: {ads: {}}", 5, f"{V}/when_denied.ads", "unknown purpose"),
    (
        PURPOSES,
        PURPOSES + "\nwhen_denied: {advertising: {query: [x]}}",
        5,
        f"{V}/when_denied.advertising",
        "no endpoint requires 'advertising'",
    ),
    (
        KIND,
        KIND + "\n    when_denied: {advertising: {query: [x]}}",
        9,
        f"{EP}.when_denied.advertising",
        "does not require 'advertising'",
    ),
    (
        KIND,
        KIND + "\n    purposes: [necessary]\n    when_denied: {necessary: {}}",
        10,
        f"{EP}.when_denied.necessary",
        "always granted",
    ),
    # strip blocks
    (
        KIND,
        KIND + "\n    body: json\n    always: {json: [a..b]}",
        10,
        f"{EP}.always.json[0]",
        "path",
    ),
    (
        KIND,
        KIND + "\n    body: json\n    always: {json: ['d[]']}",
        10,
        f"{EP}.always.json[0]",
        "[]",
    ),
    (
        KIND,
        KIND + "\n    always: {json: [user.em]}",
        9,
        f"{EP}.always",
        "need body: json, text or form-json",
    ),
    (KIND, KIND + "\n    always: {query: ['a b']}", 9, f"{EP}.always.query[0]", "whitespace"),
    (KIND, KIND + "\n    always: {query: ['*']}", 9, f"{EP}.always.query[0]", "bare '*'"),
    (KIND, KIND + "\n    always: {cookies: ['a b']}", 9, f"{EP}.always.cookies[0]", "whitespace"),
    (KIND, KIND + "\n    always: {headers: ['x y']}", 9, f"{EP}.always.headers[0]", "header name"),
    # hosts and routes
    (HOSTS, "hosts: [a.example.com, 'a.example.com:443']", 3, f"{V}/hosts[1]", "not a plain DNS"),
    (HOSTS, "hosts: [a.example.com, a.example.com]", 3, f"{V}/hosts[1]", "listed twice"),
    (HOSTS, "hosts: [a.example.com, '*.com']", 3, f"{V}/hosts[1]", "wildcard"),
    (HOSTS, "hosts: []", 3, f"{V}/hosts", "at least one host"),
    (HOSTS, "hosts: ''", 3, f"{V}/hosts", "must not be empty"),
    (PURPOSES, PURPOSES + "\nroute: /consent", 5, f"{V}/route", "served by the gateway"),
    (PURPOSES, PURPOSES + "\nroute: /ga4/", 5, f"{V}/route", "not end with '/'"),
    (PURPOSES, PURPOSES + "\nroute_host: a.example.com", 5, f"{V}/route_host", "with a route"),
    (
        PURPOSES,
        PURPOSES + "\nroute: /t2\nroute_host: c.example.com",
        6,
        f"{V}/route_host",
        "covers",
    ),
    (HOSTS, 'hosts: ["*.b.example.com"]\nroute: /b', 4, f"{V}/route", "route_host is required"),
    # endpoints
    (KIND, SECOND_ENDPOINT, 9, f"{V}/endpoints[1]", "endpoint id 'collect' is used twice"),
    (ENDPOINTS, "endpoints: []\n", 5, f"{V}/endpoints", "at least one endpoint"),
    # examples
    (URL, "https://c.example.com/collect?cid=1", 10, f"{EX}.url", "not one of this rule's hosts"),
    (URL, "https://b.example.com/collect?cid=1", 10, f"{EX}.url", "not one of this rule's hosts"),
    (URL, "http://a.example.com/collect?cid=1", 10, f"{EX}.url", "https://"),
    (URL, "https://u@a.example.com/collect", 10, f"{EX}.url", "no userinfo or port"),
    (URL, "https://a.example.com:8443/collect", 10, f"{EX}.url", "no userinfo or port"),
    (URL, "https://[::1/collect", 10, f"{EX}.url", "not a URL"),
    (URL, "https://a.example.com/other", 10, f"{EX}.url", "no endpoint matches GET /other"),
    (URL, "https://a.example.com/x/../collect", 10, f"{EX}.url", "no endpoint matches"),
    (EXPECT, "    method: PUT\n" + EXPECT, 10, f"{EX}.url", "no endpoint matches PUT /collect"),
    (EXPECT, "    method: BREW\n" + EXPECT, 12, f"{EX}.method", "must be one of"),
    (EXPECT, "    body: 'x=1'\n" + EXPECT, 12, f"{EX}.body", "a GET request has no body"),
    (EXPECT, "    expect: drop\n    kept: [cid]", 13, f"{EX}.kept", "nothing reaches the vendor"),
    (
        EXPECT,
        EXPECT + "\n    removed: [cid]\n    kept: [cid]",
        14,
        f"{EX}.kept",
        "removed and kept",
    ),
    (EXPECT, EXPECT + "\n    removed: ['json:a..b']", 13, f"{EX}.removed[0]", "JSON path"),
    (EXPECT, EXPECT + "\n    headers: {x-a: [1]}", 13, f"{EX}.headers.x-a", "expected a string"),
    (EXAMPLES, "examples: []\n", 9, f"{V}/examples", "at least one example"),
    # YAML itself
    ("name: Test", "name: [Test", 3, "", "YAML syntax"),
    ("name: Test", "name: Test\nname: Again", 3, f"{V}/name", "duplicate key"),
]


@pytest.mark.parametrize(("old", "new", "line", "where", "message"), PROBLEMS)
def test_problems(old: str, new: str, line: int | None, where: str, message: str) -> None:
    rule, problems = parse(variant(old, new))
    assert rule is None
    assert all(p.file == FILE for p in problems)
    found = [(p.line, p.where) for p in problems if message in p.message]
    assert (line, where) in found, "\n".join(str(p) for p in problems)


@pytest.mark.parametrize(
    "text", ["", "- just\n- a list\n", "vendor: x\n"], ids=["empty", "list", "partial"]
)
def test_not_a_rule(text: str) -> None:
    rule, problems = parse(text)
    assert rule is None and problems


def test_every_problem_in_a_file_is_reported_at_once() -> None:
    text = variant("kind: beacon", "kind: becon").replace("purposes: [analytics]", "purposes: [x]")
    _, problems = parse(text)
    assert {p.where for p in problems} >= {
        "test-vendor/endpoints[0].kind",
        "test-vendor/purposes[0]",
    }


def test_reject_example_need_not_match_an_endpoint() -> None:
    text = BASE + "  - url: https://x.b.example.com/admin\n    expect: reject\n"
    rule, problems = parse(text)
    assert problems == [] and rule is not None
    assert rule.examples[1].expect is Action.REJECT and rule.examples[1].line == 13


RICH = """\
vendor: rich
name: Rich vendor
tcf_vendor_id: 42
hosts: ["*.rich.example", www.rich.example]
route: /rich
purposes: [analytics]
report_only: true
always: {query: [_uip], ip: truncate, headers: [X-Debug]}
when_denied:
  advertising: {query: [gclid]}
endpoints:
  - id: collect
    match: {path: /collect}
    kind: beacon
    body: json
    purposes: [analytics, advertising]
    when_denied:
      advertising: {json: [user.em, "data[].ids"], cookies: all}
    always: {ip: drop, referrer: origin}
  - id: script
    match: {path_prefix: /js/, methods: [get]}
    kind: script
    forward_mode: async
  - id: api
    match: {path_regex: '/api/v[0-9]+'}
    kind: api
examples:
  - url: https://www.rich.example/collect?cid=1&gclid=abc
    method: post
    body: '{"user":{"em":"x"}}'
    content_type: application/json
    headers: {Sec-GPC: "1"}
    consent: {analytics: granted, advertising: denied}
    expect: strip
    removed: [gclid, "json:user.em"]
    kept: [cid]
    notes: the analytics part goes, the ad identifiers do not
  - url: https://cdn.rich.example/js/tag.js
    expect: forward
"""


def test_rule_fields_defaults_and_merges() -> None:
    rule, problems = parse(RICH)
    assert problems == [] and rule is not None
    assert rule.tcf_vendor_id == 42 and rule.report_only is True
    assert rule.route == "/rich" and rule.route_host == "www.rich.example"  # first exact host
    assert rule.purposes == frozenset({"analytics"})
    collect, script, api = rule.endpoints
    assert collect.methods == frozenset({"GET", "POST"})  # the default
    assert collect.body is BodyKind.JSON and collect.kind is EndpointKind.BEACON
    assert collect.forward_mode is ForwardMode.ASYNC
    # endpoint when_denied is merged over (added to) the vendor's
    assert dict(collect.when_denied) == {
        "advertising": StripSpec(
            query=frozenset({"gclid"}),
            json=frozenset({"user.em", "data[].ids"}),
            all_cookies=True,
        )
    }
    # always: vendor-level merged with endpoint-level, the stricter policy wins
    assert collect.always == StripSpec(
        query=frozenset({"_uip"}),
        headers=frozenset({"x-debug"}),
        ip=IpPolicy.DROP,
        referrer=ReferrerPolicy.ORIGIN,
    )
    assert script.methods == frozenset({"GET"})
    assert script.purposes == frozenset({"analytics"})  # the vendor's
    assert dict(script.when_denied) == {}  # script does not require advertising
    assert script.forward_mode is ForwardMode.ASYNC  # explicit, over the script default
    assert api.forward_mode is ForwardMode.SYNC
    assert api.path_regex is not None and api.path_regex.pattern == "/api/v[0-9]+"

    strip, forward = rule.examples
    assert strip.method == "POST" and strip.body == b'{"user":{"em":"x"}}'
    assert strip.content_type == "application/json"
    assert dict(strip.headers) == {"Sec-GPC": "1"}
    assert dict(strip.consent) == {
        "analytics": ConsentValue.GRANTED,
        "advertising": ConsentValue.DENIED,
    }
    assert strip.expect is Action.STRIP
    assert strip.removed == ("gclid", "json:user.em") and strip.kept == ("cid",)
    assert strip.line == 28
    assert forward.method == "GET" and forward.body is None and dict(forward.consent) == {}
    assert forward.line == 38


def test_explicit_route_host_and_single_string_lists() -> None:
    text = variant(
        'hosts: [a.example.com, "*.b.example.com"]',
        'hosts: "*.b.example.com"\nroute: /b\nroute_host: www.b.example.com',
    ).replace("https://a.example.com/", "https://x.b.example.com/")
    rule, problems = parse(text)
    assert problems == [] and rule is not None
    assert rule.hosts == ("*.b.example.com",) and rule.route_host == "www.b.example.com"


# -- the shipped rules -----------------------------------------------------------


@pytest.mark.parametrize("path", SHIPPED_RULES, ids=lambda p: p.name)
def test_shipped_rule_examples_cover_the_decisions(path: Path) -> None:
    rule, problems = parse_rule(path.read_text(encoding="utf-8"), str(path), KNOWN)
    assert problems == [] and rule is not None
    assert path.stem == rule.vendor  # one file per vendor, named for it
    assert len(rule.examples) >= 3
    expected = {e.expect for e in rule.examples}
    assert {Action.FORWARD, Action.REJECT} <= expected
    # A drop is possible where some required purpose has no strip (or the endpoint is retired).
    if any((e.purposes - {NECESSARY}) - set(e.when_denied) or e.retired for e in rule.endpoints):
        assert Action.DROP in expected
    if any(e.when_denied for e in rule.endpoints):
        assert Action.STRIP in expected


@pytest.mark.parametrize("path", SHIPPED_RULES, ids=lambda p: p.name)
def test_shipped_rules_never_send_site_cookies_or_script_ips(path: Path) -> None:
    rule, _ = parse_rule(path.read_text(encoding="utf-8"), str(path), KNOWN)
    assert rule is not None
    for endpoint in rule.endpoints:
        assert endpoint.always.all_cookies, endpoint.id
        assert endpoint.always.ip is not IpPolicy.KEEP, endpoint.id
        if endpoint.kind is EndpointKind.SCRIPT:
            assert endpoint.always.ip is IpPolicy.DROP, endpoint.id


# -- rules/README.md stays in step with the schema ---------------------------------

README = (RULES_DIR / "README.md").read_text(encoding="utf-8")


def test_readme_worked_example_is_a_valid_rule() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", README, flags=re.DOTALL)
    assert len(blocks) == 1
    rule, problems = parse_rule(blocks[0], "README.md", KNOWN)
    assert problems == [] and rule is not None and len(rule.examples) == 4


@pytest.mark.parametrize(
    "key",
    [
        *RULE_KEYS,
        *ENDPOINT_KEYS,
        *(f"match.{k}" for k in MATCH_KEYS),
        *STRIP_KEYS,
        *EXAMPLE_KEYS,
        *DROP_ANSWER_KEYS,
    ],
)
def test_readme_documents_every_key(key: str) -> None:
    assert f"| `{key}` |" in README
