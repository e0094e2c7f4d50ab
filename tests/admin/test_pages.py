"""gateway.admin.pages: the HTML pages (Blocked requests, Overview, Rules, Unknown
destinations, Consent records), through the gateway's own app.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
from yarl import URL

from gateway.admin.answers import CSP
from gateway.admin.present import erase_command
from gateway.app import GATEWAY
from gateway.config import DEFAULT_PURPOSES
from gateway.decision_log.record import DecisionRecord
from gateway.ruleset.parse import parse_rule
from gateway.store.base import ConsentRecord, StoreError
from tests.admin.conftest import (
    BEARER,
    BYPASS_ROWS,
    DAY,
    GA,
    NOTICE,
    RULE_FILES,
    STATE_IDS,
    TOKEN,
    Client,
    Node,
    admin_client,
    api,
    assert_no_inline_code,
    consent,
    erase_path,
    history_rows,
    page,
    parse,
    reasons,
    record,
    records_path,
    seed,
    seed_bypasses,
    subjects_path,
)
from tests.conftest import make_record

# --- Blocked requests -----------------------------------------------------------------


async def test_filter_form_shows_the_choices_and_the_current_values(
    gateway_factory: Callable[..., Any],
) -> None:
    client = await admin_client(gateway_factory)
    doc = await page(
        client, "/_admin/?view=records&since=1w&vendor=meta-pixel&purpose=analytics&regime=us"
    )
    form = doc.one("form", id="filters")
    assert form.attrs["method"] == "get"

    def options(name: str) -> tuple[list[str], list[str]]:
        select = next(s for s in form.all("select") if s.attrs["name"] == name)
        opts = select.all("option")
        return [o.attrs["value"] for o in opts], [
            o.attrs["value"] for o in opts if "selected" in o.attrs
        ]

    # any duration or time, with the windows offered
    since = next(i for i in form.all("input") if i.attrs["name"] == "since")
    assert since.attrs["value"] == "1w" and since.attrs["type"] == "text"
    offered = doc.one("datalist", id=since.attrs["list"]).all("option")
    assert [o.attrs["value"] for o in offered] == ["1h", "1d", "1w", "all"]
    view = next(i for i in form.all("input") if i.attrs["name"] == "view")
    assert view.attrs["value"] == "records"  # filtering keeps the view
    assert options("vendor") == (["", "google-analytics-4", "meta-pixel"], ["meta-pixel"])
    assert options("purpose") == (
        ["", "necessary", "functional", "analytics", "advertising", "personalization"],
        ["analytics"],
    )
    assert options("action") == (["", "forward", "strip", "drop", "reject"], [])
    assert options("regime") == (["", "opt-in", "us"], ["us"])
    assert form.all("button")
    # The default window is a day, the default view the groups.
    doc = await page(client, "/_admin/")
    form = doc.one("form", id="filters")
    assert next(i for i in form.all("input") if i.attrs["name"] == "since").attrs["value"] == "1d"
    assert (
        next(i for i in form.all("input") if i.attrs["name"] == "view").attrs["value"] == "groups"
    )
    assert doc.all("table", id="groups") and not doc.all("table", id="records")


def _params(href: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(href).query)


async def test_pagination(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    # 120 drops and, between them, records the filter leaves out
    rows = [record(f"r{i:03}", age=10 + i) for i in range(120)]
    rows += [record(f"x{i}", age=10.5 + i, action="strip") for i in range(0, 120, 7)]
    seed(client, rows)

    doc = await page(client, "/_admin/?view=records&action=drop&since=1d")
    assert reasons(doc) == [f"r{i:03}" for i in range(50)]
    assert not doc.all("a", "prev")
    next_href = doc.one("a", "next").attrs["href"]
    assert _params(next_href)["action"] == ["drop"] and _params(next_href)["since"] == ["1d"]
    assert _params(next_href)["view"] == ["records"]
    assert doc.one("table", id="records").attrs["data-live"] == "on"

    doc2 = await page(client, next_href)
    assert reasons(doc2) == [f"r{i:03}" for i in range(50, 100)]
    assert doc2.one("table", id="records").attrs["data-live"] == "off"
    doc3 = await page(client, doc2.one("a", "next").attrs["href"])
    assert reasons(doc3) == [f"r{i:03}" for i in range(100, 120)]
    assert not doc3.all("a", "next")

    back = await page(client, doc3.one("a", "prev").attrs["href"])
    assert reasons(back) == reasons(doc2)
    first_href = back.one("a", "prev").attrs["href"]
    assert "before_id" not in _params(first_href)  # the first page is the newest one
    assert _params(first_href)["action"] == ["drop"]
    assert reasons(await page(client, first_href)) == reasons(doc)


async def test_injected_markup_is_escaped(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    evil = "<script>alert(1)</script>"
    seed(
        client,
        [
            record(
                f'"><img src=x onerror=alert(1)>{evil}',
                vendor=None,
                endpoint=None,
                action="reject",
                host=f"evil.example{evil}",
                path=f"/{evil}",
                missing=(f"{evil}",),
                regime=f"{evil}",
                stripped=(f"query:{evil}",),
            )
        ],
    )
    for path in (
        "/_admin/?since=all",
        "/_admin/unknown?since=all",
        "/_admin/?view=records&since=all",
    ):
        resp = await client.get(path, headers=BEARER)
        html = await resp.text()
        assert "&lt;script&gt;" in html
        assert "<script>alert" not in html and "<img" not in html
    doc = parse(html)
    assert doc.one("td", "host").text == f"evil.example{evil}"  # shown as text, intact


async def test_a_real_request_with_markup_is_shown_escaped(
    gateway_factory: Callable[..., Any],
) -> None:
    client = await admin_client(gateway_factory)
    raw = URL("/t/evil.example/<script>alert(1)</script>?q=<script>", encoded=True)
    assert (await client.get(raw)).status == 404
    raw_host = URL("/t/<script>alert(1)</script>/x", encoded=True)
    assert (await client.get(raw_host)).status in (400, 404)
    for _ in range(100):
        if len((await api(client, "/_admin/api/records"))["records"]) == 2:
            break
        await asyncio.sleep(0.02)
    for path in ("/_admin/", "/_admin/unknown"):
        html = await (await client.get(path, headers=BEARER)).text()
        # markup never reaches a page as markup (the path is stored as a template now, so
        # it is usually not there at all; where any of it is, it is escaped)
        assert "<script>alert" not in html, path


def _rec(request_id: str, age: float, **kw: Any) -> DecisionRecord:
    return make_record(request_id, **{"ts": time.time() - age, "host": GA, **kw})


#: two GA4 drops, one of them older; a Meta strip; two rejects to an unknown host
GROUPED = [
    _rec("g1", 100, reason="analytics not granted"),
    _rec("g2", 40, reason="analytics not granted", regime="us"),
    _rec(
        "m1",
        30,
        vendor="meta-pixel",
        endpoint="pixel",
        action="strip",
        missing=("advertising",),
        reason="advertising stripped",
        stripped=("query:fbclid", "cookie:_fbp"),
        sources={"advertising": "cookie", "analytics": "default:opt-in"},
    ),
    _rec("u1", 20, vendor=None, endpoint=None, action="reject", missing=(), reason="no rule"),
    _rec("u2", 10, vendor=None, endpoint=None, action="reject", missing=(), reason="no rule"),
]


async def test_blocked_groups_identical_records(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    seed(client, GROUPED)
    doc = await page(client, "/_admin/")
    rows = [
        tuple(
            tr.one("td", c).text.strip() for c in ("action", "vendor", "missing", "reason", "count")
        )
        for tr in doc.one("table", id="groups").all("tr", "group")
    ]
    assert rows == [  # the most recently seen first
        ("reject", "(unknown destination)", "", "no rule", "2"),
        ("strip", "meta-pixel/pixel", "advertising", "advertising stripped", "1"),
        ("drop", "google-analytics-4/collect", "analytics", "analytics not granted", "2"),
    ]
    ga = doc.one("table", id="groups").all("tr", "group")[2]
    first = ga.one("td", "first-seen").one("time").attrs["datetime"]
    last = ga.one("td", "last-seen").one("time").attrs["datetime"]
    assert first < last

    # each group links to its raw rows: the records view, filtered to exactly that group
    href = ga.one("a", "records-link").attrs["href"]
    assert _params(href)["view"] == ["records"]
    rows_doc = await page(client, href)
    assert reasons(rows_doc) == ["analytics not granted", "analytics not granted"]
    assert [tr.attrs["data-id"] for tr in rows_doc.all("tr", "record")] == ["2", "1"]
    assert "analytics not granted" in rows_doc.one(id="group-scope").text
    assert rows_doc.one("table", id="records").attrs["data-live"] == "off"
    unknown = doc.one("table", id="groups").all("tr", "group")[0].one("a", "records-link")
    rows_doc = await page(client, unknown.attrs["href"])
    assert [tr.attrs["data-id"] for tr in rows_doc.all("tr", "record")] == ["5", "4"]

    # the filters apply to groups too, and the API has them
    doc = await page(client, "/_admin/?regime=us")
    assert [tr.one("td", "count").text for tr in doc.all("tr", "group")] == ["1"]
    body = await api(client, "/_admin/api/groups?vendor=meta-pixel")
    assert [(g["vendor"], g["action"], g["missing"], g["count"]) for g in body["groups"]] == [
        ("meta-pixel", "strip", ["advertising"], 1)
    ]
    assert body["groups"][0]["first_seen"].endswith("Z")
    body = await api(client, "/_admin/api/records?" + urlsplit(unknown.attrs["href"]).query)
    assert [r["request_id"] for r in body["records"]] == ["u2", "u1"]


async def test_record_detail(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    seed(client, GROUPED)
    doc = await page(client, "/_admin/?view=records")
    link = next(
        tr.one("a", "detail-link").attrs["href"]
        for tr in doc.all("tr", "record")
        if tr.one("td", "action").text == "strip"
    )
    assert link == "/_admin/record?id=3"
    detail = await page(client, link)
    dl = detail.one("dl", id="record-detail")
    assert dl.one("dd", "request-id").text.strip() == "m1"
    assert dl.one("dd", "regime").text.strip() == "opt-in"
    assert dl.one("dd", "host").text.strip() == GA
    assert [li.text for li in detail.one("ul", id="stripped-fields").all("li")] == [
        "query:fbclid",
        "cookie:_fbp",
    ]
    sources = [
        tuple(tr.one("td", c).text.strip() for c in ("purpose", "source", "missing"))
        for tr in detail.one("table", id="sources").all("tr", "source")
    ]
    assert sources == [  # configured purposes in config order
        ("analytics", "default:opt-in", ""),
        ("advertising", "cookie", "missing"),
    ]
    assert_no_inline_code(detail)
    await page(client, "/_admin/record?id=99", status=404)
    for bad in ("", "?id=0", "?id=x"):
        await page(client, f"/_admin/record{bad}", status=400)


@pytest.mark.parametrize(
    "query",
    [
        "group_action=allow",
        "group_action=drop&group_vendor=Not_A_Vendor!",
        "group_action=drop&group_missing=b,a",
        "group_action=drop&group_reason=" + "x" * 301,
        "view=table",
    ],
)
async def test_blocked_refuses_bad_group_or_view(
    gateway_factory: Callable[..., Any], query: str
) -> None:
    client = await admin_client(gateway_factory)
    doc = await page(client, f"/_admin/?{query}", status=400)
    assert doc.one(id="error-message").text.split(":")[0] in (
        "group_action",
        "group_vendor",
        "group_missing",
        "group_reason",
        "view",
    )


async def test_host_names_break_only_after_dots(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    seed(client, [record("r", host="region1.google-analytics.com")])
    doc = await page(client, "/_admin/?view=records")
    cell = doc.one("td", "host")
    assert cell.text == "region1.google-analytics.com"  # the text is unchanged
    labels = [n.text for n in cell.all("span", "label")]
    assert labels == ["region1", "google-analytics", "com"]  # each label kept whole
    assert len(cell.all("wbr")) == 2  # a break allowed after each dot, nowhere else


# --- Unknown destinations -------------------------------------------------------------


async def test_unknown_destinations(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    unknown = {"vendor": None, "endpoint": None, "action": "reject", "missing": ()}
    seed(
        client,
        [
            record("1", age=500, host="a.example", **unknown),
            record("2", age=400, host="b.example", **unknown),
            record("3", age=300, host="a.example", **unknown),
            record("4", age=200, host="a.example", **unknown),
            record("5", age=100, host="b.example", **unknown),
            record("6", age=50, host="c.example", **unknown),
            record("7", age=40, host="old.example", **(unknown | {"ts": time.time() - 30 * DAY})),
            record("8", age=30, host=GA),  # a known vendor's drop: not unknown
        ],
    )
    doc = await page(client, "/_admin/unknown")
    rows = doc.one("table", id="unknown").all("tr", "host")
    got = [(r.one("td", "host").text, r.one("td", "count").text) for r in rows]
    assert got == [("a.example", "3"), ("b.example", "2"), ("c.example", "1")]
    first, last = rows[0].one("td", "first-seen"), rows[0].one("td", "last-seen")
    assert first.one("time").attrs["datetime"] < last.one("time").attrs["datetime"]

    doc = await page(client, "/_admin/unknown?since=all")
    hosts = [r.one("td", "host").text for r in doc.one("table", id="unknown").all("tr", "host")]
    assert hosts == ["a.example", "b.example", "c.example", "old.example"]

    body = await api(client, "/_admin/api/unknown")
    assert body["since"] == "1w" and body["since_time"].endswith("Z")
    assert [(h["host"], h["count"]) for h in body["hosts"]] == [
        ("a.example", 3),
        ("b.example", 2),
        ("c.example", 1),
    ]
    assert set(body["hosts"][0]) == {
        "host",
        "count",
        "first_seen",
        "last_seen",
        "first_seen_epoch",
        "last_seen_epoch",
    }
    body = await api(client, "/_admin/api/unknown?since=all&limit=1")
    assert [h["host"] for h in body["hosts"]] == ["a.example"]


async def test_an_unknown_destination_offers_a_drafted_rule(
    gateway_factory: Callable[..., Any],
) -> None:
    """From what the log kept of a host's requests (methods, path templates): never a value."""
    client = await admin_client(gateway_factory)
    unknown = {"vendor": None, "endpoint": None, "action": "reject", "missing": ()}
    host = "cdn.acme-metrics.example"
    seed(
        client,
        [
            record("1", 40, host=host, method="POST", path="/v1/{…}/events", **unknown),
            record("2", 30, host=host, method="POST", path="/v1/{…}/events", **unknown),
            record("3", 20, host=host, method="GET", path="/px.gif", **unknown),
            record("4", 10, host="{…}", **unknown),  # no name a rule could list
            record("5", 10, host="old.example", **(unknown | {"ts": time.time() - 30 * DAY})),
        ],
    )
    doc = await page(client, "/_admin/unknown")
    links = {
        r.one("td", "host").text: r.one("td", "draft").all("a")
        for r in doc.one("table", id="unknown").all("tr", "host")
    }
    assert links["{…}"] == []
    [link] = links[host]
    href = link.attrs["href"]
    assert href == f"/_admin/unknown/draft?host={host}&since=1w"

    doc = await page(client, href)
    draft = doc.one("pre", id="draft").text
    rule, problems = parse_rule(draft, "draft.yaml", frozenset(DEFAULT_PURPOSES))
    assert problems == [] and rule is not None
    assert rule.hosts == (host,)
    assert {(e.id, e.pattern, tuple(sorted(e.methods))) for e in rule.endpoints} == {
        ("px", "/px.gif", ("GET",)),
        ("events", "~/v1/[^/]+/events", ("POST",)),
    }
    assert doc.all("p", id="listed") == []

    body = await api(client, f"/_admin/api/unknown/draft?host={host}")
    assert body == {"host": host, "since": "1w", "rule": draft}

    # nothing logged for it in the window; a host that is not a name
    await page(client, "/_admin/unknown/draft?host=old.example", status=404)
    await api(client, "/_admin/api/unknown/draft?host=old.example", status=404)
    assert (await api(client, "/_admin/api/unknown/draft?host=old.example&since=all"))["rule"]
    for bad in ("", "?host=10.0.0.1", "?host=%3Cscript%3E", f"?host={host}&since=1y"):
        await page(client, f"/_admin/unknown/draft{bad}", status=400)
    body = await api(client, "/_admin/api/unknown/draft?host=a%40b.example", status=400)
    assert body["error"].startswith("host:") and "a@b" not in body["error"]


async def test_a_drafted_host_a_rule_lists_now_says_so(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    seed(client, [record("1", 10, host=GA, vendor=None, endpoint=None, action="reject", path="/x")])
    doc = await page(client, f"/_admin/unknown/draft?host={GA}")
    assert "google-analytics-4" in doc.one("p", id="listed").text


# --- Rules ----------------------------------------------------------------------------


async def test_rules_page(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    gw = client.app[GATEWAY]
    doc = await page(client, "/_admin/rules")
    assert not doc.all(id="load-errors")
    sections = doc.all("section", "rule")
    assert [s.one("h2").text for s in sections] == sorted(r.vendor for r in gw.rules.current.rules)
    ga4 = next(s for s in sections if s.one("h2").text == "google-analytics-4")
    rule = gw.rules.current.rules[
        [r.vendor for r in gw.rules.current.rules].index("google-analytics-4")
    ]
    assert ga4.one("dd", "name").text == rule.name
    assert ga4.one("dd", "file").text == rule.file
    assert ga4.one("dd", "hosts").text == ", ".join(rule.hosts)
    endpoints = ga4.one("table", "endpoints").all("tr", "endpoint")
    assert [e.one("td", "id").text for e in endpoints] == [e.id for e in rule.endpoints]
    assert [e.one("td", "match").text for e in endpoints] == [e.pattern for e in rule.endpoints]
    collect = rule.endpoints[0]
    cell = endpoints[0].one("td", "when-denied").text
    for purpose, strip in collect.when_denied.items():
        assert purpose in cell and all(n in cell for n in strip.field_names())


async def test_rules_page_shows_the_hosts_the_config_adds(
    gateway_factory: Callable[..., Any],
) -> None:
    added = {"vendor_hosts": {"google-analytics-4": ["www.shop.example/metrics"]}}
    client = await admin_client(gateway_factory, rules={"paths": RULE_FILES, **added})
    doc = await page(client, "/_admin/rules")
    ga4 = next(s for s in doc.all("section", "rule") if s.one("h2").text == "google-analytics-4")
    assert ga4.one("dd", "added-hosts").text == "www.shop.example/metrics"
    assert "www.shop.example" not in ga4.one("dd", "hosts").text  # the file's hosts apart
    meta = next(s for s in doc.all("section", "rule") if s.one("h2").text == "meta-pixel")
    assert not meta.all("dd", "added-hosts")


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("", ["google-analytics-4", "meta-pixel"]),
        ("facebook.com", ["meta-pixel"]),
        ("GOOGLE-analytics-4", ["google-analytics-4"]),
        ("www.shop.example", ["google-analytics-4"]),  # a host from config
        ("meta facebook", ["meta-pixel"]),  # every word
        ("meta google", []),
        ("nothing.example", []),
    ],
)
async def test_rules_search(
    gateway_factory: Callable[..., Any], q: str, expected: list[str]
) -> None:
    added = {"vendor_hosts": {"google-analytics-4": ["www.shop.example/metrics"]}}
    client = await admin_client(gateway_factory, rules={"paths": RULE_FILES, **added})
    doc = await page(client, "/_admin/rules?" + urlencode({"q": q}))
    assert [s.one("h2").text for s in doc.all("section", "rule")] == expected
    form = doc.one("form", id="rule-search")
    assert form.attrs["method"] == "get"
    assert next(i for i in form.all("input") if i.attrs["name"] == "q").attrs["value"] == q
    assert bool(doc.all(id="no-rules")) is (not expected)
    if q:
        assert doc.one(id="rule-count").text.startswith(f"{len(expected)} of 2 ")
    body = await api(client, "/_admin/api/rules?" + urlencode({"q": q}))
    assert [r["vendor"] for r in body["rules"]] == expected and body["total"] == 2


async def test_rules_search_by_purpose(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    rules = client.app[GATEWAY].rules.current.rules
    for purpose in ("analytics", "advertising"):
        doc = await page(client, f"/_admin/rules?q={purpose}")
        wanted = sorted(
            r.vendor
            for r in rules
            if purpose in r.purposes or any(purpose in e.purposes for e in r.endpoints)
        )
        assert wanted and [s.one("h2").text for s in doc.all("section", "rule")] == wanted
    await page(client, "/_admin/rules?q=" + "x" * 201, status=400)


async def test_rules_page_shows_the_config_hosts_and_the_last_reload(
    gateway_factory: Callable[..., Any],
) -> None:
    added = {"vendor_hosts": {"google-analytics-4": ["www.shop.example/metrics"]}}
    client = await admin_client(gateway_factory, rules={"paths": RULE_FILES, **added})
    holder = client.app[GATEWAY].rules
    doc = await page(client, "/_admin/rules")
    [row] = doc.one("table", id="config-hosts").all("tr", "config-host")
    assert row.one("td", "vendor").text == "google-analytics-4"
    assert row.one("td", "hosts").text == "www.shop.example/metrics"
    assert "Not reloaded since the gateway started" in doc.one(id="reload-status").text
    assert (await api(client, "/_admin/api/rules"))["last_reload"] is None

    holder.failed(["rules/x.yaml: broken"], now=1767225600.0)
    doc = await page(client, "/_admin/rules")
    status = doc.one(id="reload-status")
    assert "2026-01-01 00:00:00" in status.text and status.one("span", "result").text == "failed"
    body = await api(client, "/_admin/api/rules")
    assert body["last_reload"] == {"at": "2026-01-01T00:00:00Z", "ok": False}

    holder.swap(holder.current, now=1767229200.0)
    doc = await page(client, "/_admin/rules")
    assert doc.one(id="reload-status").one("span", "result").text == "succeeded"
    assert (await api(client, "/_admin/api/rules"))["loaded_at"] == "2026-01-01T01:00:00Z"


async def test_rules_page_shows_load_errors(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    client.app[GATEWAY].rules.last_error = [
        "rules/x.yaml:3: endpoints[0].match: <b>bad</b>",
        "rules/y.yaml: cannot read",
    ]
    resp = await client.get("/_admin/rules", headers=BEARER)
    html = await resp.text()
    assert "&lt;b&gt;bad&lt;/b&gt;" in html and "<b>bad" not in html
    errors = parse(html).one("div", id="load-errors")
    assert [li.text for li in errors.all("li")] == [
        "rules/x.yaml:3: endpoints[0].match: <b>bad</b>",
        "rules/y.yaml: cannot read",
    ]
    body = await api(client, "/_admin/api/rules")
    assert body["load_errors"] == client.app[GATEWAY].rules.last_error
    ga4 = next(r for r in body["rules"] if r["vendor"] == "google-analytics-4")
    assert set(ga4) == {
        "vendor",
        "name",
        "file",
        "hosts",
        "added_hosts",
        "route",
        "route_host",
        "purposes",
        "tcf_vendor_id",
        "report_only",
        "consent_params",
        "endpoints",
    }
    assert {"total", "loaded_at", "last_reload"} <= set(body)
    assert set(ga4["endpoints"][0]) == {
        "id",
        "match",
        "methods",
        "kind",
        "body",
        "purposes",
        "forward_mode",
        "when_denied",
        "always",
    }


# --- Consent records ------------------------------------------------------------------


def search_value(doc: Node) -> str:
    [field] = doc.one("form", id="subject-search").all("input")
    assert field.attrs["name"] == "subject"
    return field.attrs["value"]


async def test_consent_records_page(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    first = await consent(client, {"analytics": True, "advertising": False}, notice=NOTICE)
    second = await consent(client, {"advertising": True}, source="cmp")
    subject = first["subject"]
    book = client.app[GATEWAY].book
    assert book is not None
    # older than both, written last; `profiling` is a purpose the config no longer has
    old = await book.record(
        ConsentRecord(
            subject,
            {"profiling": False, "functional": True},
            "api",
            1,
            first["record"]["at"] - 3600,
            None,
            "back-end-request",
        )
    )
    export = await api(client, records_path(subject))

    resp = await client.get(subjects_path(subject), headers=BEARER)
    assert resp.status == 200 and resp.content_type == "text/html"
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Content-Security-Policy"] == CSP
    doc = parse(await resp.text())
    assert_no_inline_code(doc)
    form = doc.one("form", id="subject-search")
    assert (form.attrs["method"], form.attrs["action"]) == ("get", "/_admin/subjects")
    assert search_value(doc) == subject
    assert doc.one(id="subject-id").text == subject
    assert {i for i in STATE_IDS if doc.all(id=i)} == {"current", "erase-howto"}

    # the current state: the newest record, purposes in config order
    current = doc.one("dl", id="current")
    assert current.one("dd", "source").text == "cmp"
    assert current.one("dd", "policy-version").text == "1"
    assert current.one("time").attrs["datetime"] == export["current"]["time"].replace("+00:00", "Z")
    purposes = [
        (tr.one("td", "purpose").text, tr.one("td", "state").text)
        for tr in doc.one("table", id="current-purposes").all("tr", "purpose")
    ]
    assert purposes == [("analytics", "granted"), ("advertising", "granted")]

    # the history, oldest first, as the JSON export has it
    rows = history_rows(doc)
    cells = ("id", "source", "policy-version", "granted", "denied", "request-id")
    got = [{c: r.one("td", c).text.strip() for c in cells} for r in rows]
    banner_rid, cmp_rid = (r["request_id"] for r in export["records"][1:])
    assert got == [
        {
            "id": str(old.id),
            "source": "api",
            "policy-version": "1",
            "granted": "functional",
            "denied": "profiling",
            "request-id": "back-end-request",
        },
        {
            "id": str(first["record"]["id"]),
            "source": "banner",
            "policy-version": "1",
            "granted": "analytics",
            "denied": "advertising",
            "request-id": banner_rid,
        },
        {
            "id": str(second["record"]["id"]),
            "source": "cmp",
            "policy-version": "1",
            "granted": "analytics, advertising",
            "denied": "",
            "request-id": cmp_rid,
        },
    ]
    for row, rec in zip(rows, export["records"], strict=True):
        when = row.one("td", "time").one("time")
        assert when.attrs["datetime"] == rec["time"].replace("+00:00", "Z")
        assert len(when.text) == 19  # YYYY-MM-DD HH:MM:SS
    # the notice hash: shortened, the full value in a title
    full = hashlib.sha256(NOTICE.encode()).hexdigest()
    notice = rows[1].one("td", "notice-hash").one("code")
    assert notice.attrs["title"] == full and notice.text == full[:12] + "…"
    assert rows[0].one("td", "notice-hash").text.strip() == "–"

    # the JSON export, and how to erase: this page itself changes nothing
    link = doc.one("a", id="export")
    assert link.attrs["href"] == records_path(subject)
    assert (await api(client, link.attrs["href"])) == export
    howto = doc.one(id="erase-howto").text
    assert f"POST {erase_path(subject)}" in howto and "Authorization: Bearer" in howto
    assert erase_command(subject) in howto
    assert not [f for f in doc.all("form") if f.attrs.get("method") != "get"]
    assert len((await api(client, records_path(subject)))["records"]) == 3  # not erased


@pytest.mark.parametrize("query", ["", "?subject=", "?other=x"])
async def test_consent_records_page_without_a_subject_is_the_form(
    gateway_factory: Callable[..., Any], query: str
) -> None:
    client = await admin_client(gateway_factory)
    doc = await page(client, "/_admin/subjects" + query)
    assert search_value(doc) == ""
    assert not doc.all(id="subject-result") and not doc.all(id="error-message")


@pytest.mark.parametrize(("length", "status"), [(1, 200), (256, 200), (257, 400), (4000, 400)])
async def test_consent_records_page_bounds_the_subject(
    gateway_factory: Callable[..., Any], length: int, status: int
) -> None:
    client = await admin_client(gateway_factory)
    subject = "s" * length
    resp = await client.get(subjects_path(subject), headers=BEARER)
    assert resp.status == status
    assert resp.headers["Cache-Control"] == "no-store"
    html = await resp.text()
    doc = parse(html)
    if status == 400:
        message = doc.one(id="error-message").text
        assert message.startswith("subject: at most 256 characters"), message
        assert subject not in html  # never echoed, not even into the form
        assert search_value(doc) == "" and not doc.all(id="subject-result")
    else:
        assert doc.one(id="subject-id").text == subject and doc.one(id="current-none")


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        ("current", "the consent store cannot be read; try again later"),
        ("history", "the consent store cannot be read; try again later"),
        ("closed", "the consent store cannot be read; try again later"),
        ("no-book", "the consent store is not open"),
    ],
    ids=["current", "history", "closed", "no-book"],
)
async def test_consent_records_page_answers_503_when_the_store_fails(
    gateway_factory: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    failure: str,
    message: str,
) -> None:
    client = await admin_client(gateway_factory)
    subject = (await consent(client, {"analytics": True}))["subject"]
    gw = client.app[GATEWAY]
    book = gw.book
    assert book is not None

    async def fail(name: str) -> Any:
        # a driver's message that quotes the parameter: the log must not keep it
        raise StoreError(f"sqlite: OperationalError: no row for {name}")

    match failure:
        case "current" | "history":
            monkeypatch.setattr(book.store, failure, fail)
        case "closed":
            await book.store.close()  # every call now raises StoreError
        case "no-book":
            monkeypatch.setattr(gw, "book", None)
        case _:
            raise AssertionError(failure)
    caplog.set_level(logging.DEBUG)
    resp = await client.get(subjects_path(subject), headers=BEARER)
    assert resp.status == 503 and resp.content_type == "text/html"
    assert resp.headers["Cache-Control"] == "no-store"
    doc = parse(await resp.text())
    assert doc.one(id="error-message").text == message
    assert not doc.all(id="subject-result") and search_value(doc) == subject  # ready to retry
    logs = [r.getMessage() for r in caplog.records if r.name.startswith("gateway")]
    assert not [line for line in logs if subject in line]
    if failure != "no-book":
        assert any(line.startswith("admin: the consent store cannot be read") for line in logs)
    if failure in ("current", "history"):
        assert "no row for -" in logs[-1]


EVIL_SUBJECTS = ["<script>x", '"><img src=x onerror=alert(1)>', "a&b'\"</code></dd>"]


@pytest.mark.parametrize("subject", EVIL_SUBJECTS)
async def test_consent_records_page_escapes_markup(
    gateway_factory: Callable[..., Any], subject: str
) -> None:
    client = await admin_client(gateway_factory)
    book = client.app[GATEWAY].book
    assert book is not None
    await book.record(
        ConsentRecord(
            subject,
            {"<b>p</b>": True, "analytics": False},
            "<i>source</i>",
            1,
            time.time(),
            "<script>notice</script>",
            "<script>rid</script>",
        )
    )
    # the subject with its record, and one without any (reflected in the page all the same)
    for looked_up, rows in ((subject, 1), (subject + "<script>y", 0)):
        html = await (await client.get(subjects_path(looked_up), headers=BEARER)).text()
        for raw in ("<script", "<img", "<b>", "<i>", "</code></dd>"):
            assert raw not in html, raw
        assert "&lt;" in html
        doc = parse(html)  # and each value is intact, as text
        assert doc.one(id="subject-id").text == looked_up and search_value(doc) == looked_up
        assert len(history_rows(doc)) == rows
        for r in history_rows(doc):
            assert r.one("td", "source").text == "<i>source</i>"
            assert r.one("td", "granted").text == "<b>p</b>"
            assert r.one("td", "notice-hash").one("code").attrs["title"] == (
                "<script>notice</script>"
            )
            assert r.one("td", "request-id").text == "<script>rid</script>"
    # overlong markup is not reflected at all
    html = await (await client.get(subjects_path("<script>x" * 40), headers=BEARER)).text()
    assert "script" not in html


@pytest.mark.parametrize("subject", ["a/b", "a b", "ü-visitor", "a?b#c&subject=x", "50%", "-x"])
async def test_consent_records_page_links_work_for_any_subject(
    gateway_factory: Callable[..., Any], subject: str
) -> None:
    """Subjects named by a back end (store.subject_header) may hold any character."""
    client = await admin_client(gateway_factory)
    book = client.app[GATEWAY].book
    assert book is not None
    await book.record(ConsentRecord(subject, {"analytics": True}, "api", 1, 1e9, None, None))
    doc = await page(client, subjects_path(subject))
    assert doc.one(id="subject-id").text == subject and len(history_rows(doc)) == 1
    encoded = quote(subject, safe="")
    href = doc.one("a", id="export").attrs["href"]
    assert href == f"/_admin/api/subjects/{encoded}/records"
    exported = await api(client, URL(href, encoded=True))
    assert exported["subject"] == subject and len(exported["records"]) == 1
    howto = doc.one(id="erase-howto").text
    assert f"POST /_admin/api/subjects/{encoded}/erase" in howto
    assert erase_command(subject) in howto


async def test_consent_records_page_logs_no_subject_id(
    gateway_factory: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    client = await admin_client(gateway_factory)
    subject = (await consent(client, {"analytics": True}))["subject"]
    caplog.set_level(logging.DEBUG)
    for looked_up, status in ((subject, 200), ("no-such-visitor", 200), ("x" * 300, 400)):
        assert (await client.get(subjects_path(looked_up), headers=BEARER)).status == status
        logs = [r.getMessage() for r in caplog.records if r.name.startswith("gateway")]
        assert not [line for line in logs if looked_up in line]


# --- Bypasses ----------------------------------------------------------------------------


async def test_bypasses_page_lists_hosts_pages_and_counts(
    gateway_factory: Callable[..., Any],
) -> None:
    client = await admin_client(gateway_factory)
    seed_bypasses(client, BYPASS_ROWS)
    doc = await page(client, "/_admin/bypasses")
    rows = doc.one("table", id="bypasses").all("tr", "bypass")
    got = [
        tuple(r.one("td", c).text for c in ("kind", "vendor", "host", "page", "source", "count"))
        for r in rows
    ]
    assert got == [
        ("bypass", "meta-pixel", "www.facebook.com", "/cart", "csp", "3"),
        ("unlisted", "–", "cdn.tracker.example", "/p/{…}", "router", "1"),
    ]
    first, last = rows[0].one("td", "first-seen"), rows[0].one("td", "last-seen")
    assert first.one("time").attrs["datetime"] < last.one("time").attrs["datetime"]
    doc = await page(client, "/_admin/bypasses?since=all&kind=bypass")
    hosts = [r.one("td", "host").text for r in doc.all("tr", "bypass")]
    assert hosts == ["www.facebook.com", GA]
    doc = await page(client, "/_admin/bypasses?kind=nope", status=400)
    assert "kind" in doc.text and "nope" not in doc.text


async def test_bypasses_page_without_reports(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    doc = await page(client, "/_admin/bypasses")
    assert doc.one("table", id="bypasses").all("tr", "empty")


# --- Explain -----------------------------------------------------------------------------

GA_HIT = f"https://{GA}/g/collect?v=2&tid=G-X&cid=1.2&en=page_view"


async def explain_post(client: Client, status: int = 200, **form: str) -> Node:
    resp = await client.post("/_admin/explain", data=form, headers=BEARER)
    assert resp.status == status, await resp.text()
    return parse(await resp.text())


async def test_explain_form_and_output(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    doc = await page(client, "/_admin/explain")
    assert doc.one("form", id="explain").attrs["method"] == "post" and not doc.all("pre")
    denied = (await explain_post(client, url=GA_HIT)).one("pre", id="explain-output").text
    assert "vendor    google-analytics-4" in denied and "decision  DROP" in denied
    granted = await explain_post(client, url=GA_HIT, consent="analytics=granted")
    out = granted.one("pre", id="explain-output").text
    assert "decision  DROP" not in out and "analytics        granted  from cookie" in out
    # the form keeps what was asked
    assert granted.one("input", id="explain-consent").attrs["value"] == "analytics=granted"
    headers = await explain_post(client, url=GA_HIT, headers="Sec-GPC: 1\nUser-Agent: x")
    assert "(Sec-GPC: 1)" in headers.one("pre", id="explain-output").text


async def test_explain_of_an_unlisted_host_is_a_reject(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    out = (await explain_post(client, url="https://evil.example/x")).one("pre").text
    assert out.startswith("decision  REJECT: no rule lists this host")


async def test_explain_output_is_escaped(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    resp = await client.post(
        "/_admin/explain",
        data={"url": f"https://{GA}/<script>alert(1)</script>?x=<img src=x>"},
        headers=BEARER,
    )
    html = await resp.text()
    assert resp.status == 200 and "<script>alert" not in html and "<img src=x>" not in html
    assert_no_inline_code(parse(html))


@pytest.mark.parametrize(
    ("form", "name"),
    [
        ({}, "url"),
        ({"url": GA_HIT, "method": "BREW"}, "method"),
        ({"url": GA_HIT, "consent": "analytics=yes"}, "consent"),
        ({"url": GA_HIT, "consent": "analytics=granted", "cookie": "x"}, "consent, cookie"),
        ({"url": GA_HIT, "headers": "no colon"}, "headers"),
    ],
)
async def test_explain_refuses_a_bad_form(
    gateway_factory: Callable[..., Any], form: dict[str, str], name: str
) -> None:
    client = await admin_client(gateway_factory)
    doc = await explain_post(client, 400, **form)
    assert doc.one("p", id="error-message").text.startswith(name + ":")
    assert not doc.all("pre")


async def test_explain_with_a_session_needs_the_csrf_token(
    gateway_factory: Callable[..., Any],
) -> None:
    client = await admin_client(gateway_factory)
    await client.post("/_admin/login", data={"token": TOKEN})
    form = await client.get("/_admin/explain")
    fields = parse(await form.text()).one("form", id="explain").all("input")
    [csrf] = [f.attrs["value"] for f in fields if f.attrs.get("name") == "csrf"]
    for data in ({"url": GA_HIT}, {"url": GA_HIT, "csrf": "wrong"}):
        resp = await client.post("/_admin/explain", data=data)
        assert resp.status == 403 and "explain-output" not in await resp.text()
    resp = await client.post("/_admin/explain", data={"url": GA_HIT, "csrf": csrf})
    assert resp.status == 200
    assert "decision  DROP" in parse(await resp.text()).one("pre", id="explain-output").text
