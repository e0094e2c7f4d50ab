"""gateway.admin.params: query parameters, parsed and checked; the record filters,
through the pages and the API (a bad value is a 400 naming the parameter only).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from gateway.admin.params import (
    BadParameter,
    Filters,
    _group,
    explain_form,
    int_param,
    kind_param,
    since_param,
)
from gateway.config import DEFAULT_PURPOSES
from gateway.decision_log.query import GroupKey
from tests.admin.conftest import (
    DAY,
    FILTER_ROWS,
    HOUR,
    admin_client,
    api,
    page,
    reasons,
    record,
    seed,
)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", "abcd"),
        ("since=1d", "abcd"),
        ("since=1h", "abc"),
        ("since=1w", "abcde"),
        ("since=all", "abcdef"),
        ("since=all&vendor=google-analytics-4", "ade"),
        ("since=all&vendor=meta-pixel", "bf"),
        ("since=all&action=drop", "adf"),
        ("since=all&action=reject", "c"),
        ("since=all&purpose=advertising", "bde"),
        ("since=all&purpose=analytics", "adf"),
        ("since=all&regime=us", "bd"),
        ("vendor=meta-pixel&action=strip", "b"),
        ("vendor=meta-pixel&action=drop", ""),
        ("vendor=&purpose=&action=&regime=", "abcd"),
    ],
)
async def test_records_are_filtered_server_side(
    gateway_factory: Callable[..., Any], query: str, expected: str
) -> None:
    client = await admin_client(gateway_factory)
    seed(client, FILTER_ROWS)
    doc = await page(client, f"/_admin/?view=records&{query}")
    got = "".join(r.removeprefix("report-only").strip() for r in reasons(doc))
    assert got == expected
    if not expected:
        assert doc.one("table", id="records").all("tr", "empty")
    body = await api(client, f"/_admin/api/records?{query}")
    assert "".join(r["request_id"] for r in body["records"]) == expected


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("since=2y", "since"),
        ("since=yesterday", "since"),
        ("since=1000000000000d", "since"),  # was accepted: a window past any log
        ("vendor=Not_A_Vendor!", "vendor"),
        ("purpose=profiling", "purpose"),
        ("action=allow", "action"),
        ("regime=mars", "regime"),
        ("before_id=abc", "before_id"),
        ("before_id=0", "before_id"),
        ("before_id=-1", "before_id"),
        ("before_id=99999999999999999999", "before_id"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
    ],
)
async def test_api_records_bad_parameters(
    gateway_factory: Callable[..., Any], query: str, message: str
) -> None:
    client = await admin_client(gateway_factory)
    seed(client, [record("r")])
    body = await api(client, f"/_admin/api/records?{query}", status=400)
    assert set(body) == {"error"} and body["error"].startswith(message + ":")
    value = query.partition("=")[2]
    assert len(value) < 3 or value not in body["error"]  # never echoed
    if not query.startswith("limit"):
        doc = await page(client, f"/_admin/?view=records&{query}", status=400)
        assert doc.one(id="error-message").text.startswith(message + ":")


@pytest.mark.parametrize("since", ["90m", "2d", "2026-01-01T00:00:00Z", "2026-01-01"])
async def test_api_and_blocked_page_take_any_duration_or_time(
    gateway_factory: Callable[..., Any], since: str
) -> None:
    client = await admin_client(gateway_factory)
    seed(client, [record("r")])
    body = await api(client, f"/_admin/api/records?since={since}")
    assert [r["request_id"] for r in body["records"]] == ["r"]
    doc = await page(client, f"/_admin/?view=records&since={since}")
    assert reasons(doc) == ["r"]
    groups = await page(client, f"/_admin/?since={since}")
    assert groups.one("tr", "group").one("td", "count").text == "1"
    # the other pages offer their windows
    await page(client, f"/_admin/unknown?since={since}", status=400)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/_admin/api/overview?window=all", "window"),  # the overview has no "all time"
        ("/_admin/api/overview?window=2h", "window"),
        ("/_admin/api/overview?window=x", "window"),
        ("/_admin/overview?window=all", "window"),
        ("/_admin/overview?window=2h", "window"),
        ("/_admin/overview?window=x", "window"),
        ("/_admin/api/unknown?since=never", "since"),
        ("/_admin/api/unknown?limit=0", "limit"),
        ("/_admin/api/unknown?limit=201x", "limit"),
        ("/_admin/unknown?since=3d", "since"),  # pages offer their windows
        ("/_admin/api/bypasses?since=never", "since"),
        ("/_admin/api/bypasses?kind=all", "kind"),
        ("/_admin/api/bypasses?limit=0", "limit"),
        ("/_admin/bypasses?since=3d", "since"),
        ("/_admin/bypasses?kind=<b>", "kind"),
    ],
)
async def test_overview_and_unknown_bad_parameters(
    gateway_factory: Callable[..., Any], path: str, message: str
) -> None:
    client = await admin_client(gateway_factory)
    if "/api/" in path:
        body = await api(client, path, status=400)
        assert set(body) == {"error"} and body["error"].startswith(message + ":")
    else:
        doc = await page(client, path, status=400)
        assert doc.one(id="error-message").text.startswith(message + ":")


# --- the parsers alone ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "any_time", "name", "back"),
    [
        (None, False, "1d", DAY),  # the default
        ("", False, "1d", DAY),
        ("1h", False, "1h", HOUR),
        ("1d", True, "1d", DAY),
        ("1w", False, "1w", 7 * DAY),
        ("90m", True, "90m", 90 * 60.0),
        ("2d", True, "2d", 2 * DAY),
    ],
)
def test_since_param_windows_and_durations(
    value: str | None, any_time: bool, name: str, back: float
) -> None:
    before = time.time()
    got, start = since_param(value, "1d", any_time=any_time)
    after = time.time()
    assert got == name
    assert start is not None and before - back <= start <= after - back


@pytest.mark.parametrize(
    ("value", "start"),
    [
        ("all", None),
        ("2026-01-01T00:00:00Z", 1767225600.0),
        ("2026-01-01T00:00:00", 1767225600.0),  # no offset: UTC
        ("2026-01-01T01:00:00+01:00", 1767225600.0),
    ],
)
def test_since_param_all_time_and_iso_times(value: str, start: float | None) -> None:
    assert since_param(value, "1d", any_time=True) == (value, start)


ONLY_WINDOWS = "since: use 1h, 1d, 1w, all"
ANY_TIME = ONLY_WINDOWS + ", a duration (90m) or an ISO-8601 time"


@pytest.mark.parametrize(
    ("value", "any_time", "name", "message"),
    [
        ("90m", False, "since", ONLY_WINDOWS),  # pages take only the windows they offer
        ("2026-01-01T00:00:00Z", False, "since", ONLY_WINDOWS),
        ("2y", True, "since", ANY_TIME),
        ("yesterday", True, "since", ANY_TIME),
        ("1000000000000d", True, "since", ANY_TIME),  # past any log
        ("1969-12-31T00:00:00Z", True, "since", ANY_TIME),
        ("x", False, "window", "window: use 1h, 1d, 1w, all"),
    ],
)
def test_since_param_refuses(value: str, any_time: bool, name: str, message: str) -> None:
    with pytest.raises(BadParameter) as e:
        since_param(value, "1d", any_time=any_time, name=name)
    assert str(e.value) == message


@pytest.mark.parametrize(
    ("query", "expected"),
    [({}, None), ({"limit": ""}, None), ({"limit": "1"}, 1), ({"limit": "1000"}, 1000)],
)
def test_int_param(query: dict[str, str], expected: int | None) -> None:
    assert int_param(query, "limit", 1, 1000) == expected


@pytest.mark.parametrize(
    "value", ["0", "1001", "-1", "+5", " 5", "1.5", "ten", "1e3", "٣", "99999999999999999999"]
)
def test_int_param_refuses(value: str) -> None:
    with pytest.raises(BadParameter) as e:
        int_param({"limit": value}, "limit", 1, 1000)
    assert str(e.value) == "limit: a whole number from 1 to 1000"


ANY = Filters("all", None, None, None, None, None)
GA_GROUP = GroupKey("google-analytics-4", "collect", "drop", ("analytics",), "r")


def test_group_parameters_round_trip() -> None:
    """A group's link names it exactly; `record_filters` reads the same group back."""
    for g in (GA_GROUP, GroupKey(None, None, "reject", (), "no rule: x.example")):
        params = replace(ANY, group=g).params()
        assert params["group_action"] == g.action
        assert _group(params) == g
    assert _group({}) is None


@pytest.mark.parametrize(
    ("filters", "params"),
    [
        (ANY, {"since": "all"}),
        (replace(ANY, since="1d", since_ts=1.0), {"since": "1d"}),
        (
            Filters("1w", 1.0, "meta-pixel", "analytics", "strip", "us"),
            {
                "since": "1w",
                "vendor": "meta-pixel",
                "purpose": "analytics",
                "action": "strip",
                "regime": "us",
            },
        ),
    ],
)
def test_filters_reproduce_their_parameters(filters: Filters, params: dict[str, str]) -> None:
    assert filters.params() == params


@pytest.mark.parametrize(
    ("change", "fields", "matches"),
    [
        ({}, {}, True),
        ({}, {"vendor": None, "action": "reject", "missing": (), "regime": None}, True),
        ({"vendor": "google-analytics-4"}, {}, True),
        ({"vendor": "meta-pixel"}, {}, False),
        ({"vendor": "google-analytics-4"}, {"vendor": None}, False),
        ({"action": "drop"}, {}, True),
        ({"action": "strip"}, {}, False),
        ({"purpose": "analytics"}, {"missing": ("advertising", "analytics")}, True),
        ({"purpose": "advertising"}, {}, False),
        ({"regime": "opt-in"}, {}, True),
        ({"regime": "us"}, {"regime": None}, False),
        ({"vendor": "google-analytics-4", "action": "drop", "regime": "us"}, {}, False),
        ({"group": GA_GROUP}, {}, True),
        ({"group": GA_GROUP}, {"regime": "us"}, True),  # a group spans regimes
        ({"group": replace(GA_GROUP, reason="other")}, {}, False),
        ({"group": GA_GROUP}, {"missing": ("advertising", "analytics")}, False),
        ({"group": GA_GROUP}, {"endpoint": None}, False),
        ({"group": replace(GA_GROUP, vendor=None, endpoint=None)}, {"vendor": None}, False),
    ],
)
def test_filters_match_records_as_the_query_does(
    change: dict[str, Any], fields: dict[str, Any], matches: bool
) -> None:
    """The live stream filters with `matches`; the pages with `query` (see the first test)."""
    assert replace(ANY, **change).matches(record("r", **fields)) is matches


@pytest.mark.parametrize(
    ("query", "kind"),
    [
        ({}, None),
        ({"kind": ""}, None),
        ({"kind": "bypass"}, "bypass"),
        ({"kind": "unlisted"}, "unlisted"),
    ],
)
def test_kind_param(query: dict[str, str], kind: str | None) -> None:
    assert kind_param(query) == kind


def test_kind_param_refuses_without_echo() -> None:
    with pytest.raises(BadParameter, match="^kind: bypass or unlisted$"):
        kind_param({"kind": "<b>x"})


GA_HIT = "https://www.google-analytics.com/g/collect?v=2"


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ({"url": GA_HIT}, {"method": "GET", "consent": None, "cookie": None, "headers": []}),
        (
            {
                "url": f"  {GA_HIT} ",
                "method": "POST",
                "consent": "analytics=granted,advertising=denied",
            },
            {
                "method": "POST",
                "consent": {"analytics": "granted", "advertising": "denied"},
                "cookie": None,
                "headers": [],
            },
        ),
        (
            {"url": GA_HIT, "cookie": "v1.abc", "headers": "Sec-GPC: 1\n\n X-A :b "},
            {
                "method": "GET",
                "consent": None,
                "cookie": "v1.abc",
                "headers": [("Sec-GPC", "1"), ("X-A", "b")],
            },
        ),
    ],
)
def test_explain_form(form: dict[str, str], expected: dict[str, object]) -> None:
    fields, req = explain_form(form, DEFAULT_PURPOSES)
    assert req.url == GA_HIT and fields["url"] == GA_HIT
    got = {
        "method": req.method,
        "consent": req.consent,
        "cookie": req.cookie,
        "headers": list(req.headers),
    }
    assert got == expected


@pytest.mark.parametrize(
    ("form", "name"),
    [
        ({}, "url"),
        ({"url": GA_HIT, "method": "get"}, "method"),
        ({"url": GA_HIT, "consent": "nopurpose=granted"}, "consent"),
        ({"url": GA_HIT, "consent": "analytics=granted", "cookie": "c"}, "consent, cookie"),
        ({"url": GA_HIT, "headers": "A: 1\n" * 51}, "headers"),
        ({"url": "x" * (64 * 1024 + 1)}, "url"),
        ({"url": GA_HIT, "body": object()}, "body"),
    ],
)
def test_explain_form_refusals_name_the_field_only(form: dict[str, object], name: str) -> None:
    with pytest.raises(BadParameter) as e:
        explain_form(form, DEFAULT_PURPOSES)
    assert str(e.value).startswith(name + ":") and "nopurpose" not in str(e.value)
