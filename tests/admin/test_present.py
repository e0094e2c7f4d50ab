"""gateway.admin.present: records, counts, rules and consent records as the pages and
the API show them (record cells, the overview's charts and shares, the consent states).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest

import gateway.cli.commands as cli
from gateway.admin.present import (
    bypass_row,
    bypasses_doc,
    erase_command,
    format_time,
    record_row,
)
from gateway.app import GATEWAY
from gateway.decision_log.bypasses import Bypass
from gateway.store.base import ConsentRecord
from tests.admin.conftest import (
    DAY,
    FILTER_ROWS,
    GA,
    STATE_IDS,
    Client,
    admin_client,
    api,
    assert_no_inline_code,
    consent,
    history_rows,
    page,
    record,
    records_path,
    seed,
    seed_rollups,
    state_of,
    subjects_path,
)
from tests.conftest import cookie_for

# --- decision-log records, the overview -----------------------------------------------


async def test_record_cells(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    seed(
        client,
        [
            record(
                "analytics not granted",
                action="strip",
                missing=("advertising", "analytics"),
                stripped=("query:gclid", "ip:truncate"),
                path="/g/collect",
            ),
            record("r2", vendor=None, endpoint=None, action="reject", report_only=True, age=20),
        ],
    )
    doc = await page(client, "/_admin/?view=records")
    first, second = doc.all("tr", "record")
    cells = {
        c: first.one("td", c).text.strip()
        for c in (
            "action",
            "vendor",
            "missing",
            "regime",
            "method",
            "host",
            "path",
            "stripped",
            "reason",
        )
    }
    assert cells == {
        "action": "strip",
        "vendor": "google-analytics-4/collect",
        "missing": "advertising, analytics",
        "regime": "opt-in",
        "method": "GET",
        "host": GA,
        "path": "/g/collect",
        "stripped": "query:gclid, ip:truncate",
        "reason": "analytics not granted",
    }
    time_cell = first.one("td", "time").one("time")
    assert time_cell.attrs["datetime"].endswith("Z") and len(time_cell.text) == 19
    assert second.one("td", "vendor").text == "(unknown destination)"
    assert "report-only" in second.classes and second.one("span", "badge")
    assert second.one("td", "action").text.strip() == "reject"


@pytest.mark.parametrize(
    ("ts", "shown"),
    [
        (0.0, ("1970-01-01T00:00:00Z", "1970-01-01 00:00:00")),
        (1767225600.75, ("2026-01-01T00:00:00Z", "2026-01-01 00:00:00")),
    ],
)
def test_format_time(ts: float, shown: tuple[str, str]) -> None:
    assert format_time(ts) == shown


@pytest.mark.parametrize(
    ("vendor", "endpoint", "cell"),
    [
        ("google-analytics-4", "collect", "google-analytics-4/collect"),
        ("google-analytics-4", None, "google-analytics-4"),
        (None, None, "(unknown destination)"),
        (None, "collect", "(unknown destination)"),
    ],
)
def test_record_row_names_the_destination(
    vendor: str | None, endpoint: str | None, cell: str
) -> None:
    assert record_row(record("r", vendor=vendor, endpoint=endpoint))["vendor"] == cell


#: rollups: (age in seconds, vendor, action, missing, regime, n)
ROLLUP_ROWS = [
    (120.0, "google-analytics-4", "forward", "", "opt-out", 6),
    (120.0, "google-analytics-4", "drop", "analytics", "opt-in", 3),
    (60.0, "meta-pixel", "strip", "advertising", "opt-in", 2),
    (60.0, "meta-pixel", "drop", "advertising,analytics", "opt-in", 2),
    (30.0, "", "reject", "", "", 1),
    (2 * DAY, "google-analytics-4", "forward", "", "", 50),  # outside the day
]


async def test_overview(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    seed(client, FILTER_ROWS)
    seed_rollups(client, ROLLUP_ROWS)
    doc = await page(client, "/_admin/overview")
    charts = [s for s in doc.all("svg") if "chart" in s.classes]
    assert [c.attrs["id"] for c in charts] == [
        "chart-timeline",
        "chart-vendor-action",
        "chart-purpose",
    ]
    labels = [t.text for t in charts[1].all("text", "label")]
    assert labels == ["google-analytics-4", "(unknown destination)", "meta-pixel"]
    # each action in its colour class, wherever it is drawn
    colours = {r.attrs["class"] for r in charts[1].all("rect") if "bar" in r.classes}
    assert colours == {"bar action-drop", "bar action-reject", "bar action-strip"}
    windows = {a.attrs["href"] for a in doc.all("a", "window")}
    assert windows == {f"/_admin/overview?window={w}" for w in ("1h", "1d", "1w", "30d", "1y")}
    assert doc.one(id="total").text.startswith("4 ")
    assert not doc.all(id="no-rollups")

    # the time series: every request of the day, by action, with each action named
    assert doc.one(id="requests-total").text.split()[0] == "14"
    named = {s.attrs["data-action"]: s.text for s in doc.one(id="requests-total").all("span")}
    assert named == {
        "forward": "6 forwarded",
        "strip": "2 stripped",
        "drop": "5 dropped",
        "reject": "1 rejected",
    }
    columns = charts[0].all("g", "col")
    assert 60 <= len(columns) <= 61  # a day in 24 min columns, from the minute it began
    stacked = [r.attrs["class"] for g in columns for r in g.all("rect") if "bar" in r.classes]
    assert set(stacked) == {
        "bar action-forward",
        "bar action-drop",
        "bar action-strip",
        "bar action-reject",
    }

    # blocked share by vendor: the largest share first
    vendors = [
        (
            r.one("td", "vendor").text,
            r.one("td", "total").text,
            r.one("td", "blocked").text,
            r.one("td", "share").text,
        )
        for r in doc.one("table", id="vendor-share").all("tr", "vendor")
    ]
    assert vendors == [
        ("(unknown destination)", "1", "1", "100.0 %"),
        ("meta-pixel", "4", "2", "50.0 %"),
        ("google-analytics-4", "9", "3", "33.3 %"),
    ]
    # consent per purpose, from the rollups
    assert doc.one(id="share-scope").text  # says what the share is measured over
    shares = {
        r.one("td", "purpose").text: r.one("td", "share").text.strip()
        for r in doc.one("table", id="purpose-share").all("tr", "purpose")
    }
    assert shares["analytics"] == "64.3 %"  # 9 of 14 not missing it
    assert shares["advertising"] == "71.4 %"  # 10 of 14
    assert shares["necessary"] == "100.0 %"

    body = await api(client, "/_admin/api/overview?window=1w")
    assert body["window"] == "1w" and body["total"] == 5
    assert body["by_vendor_action"] == [
        {"vendor": None, "action": "reject", "count": 1},
        {"vendor": "google-analytics-4", "action": "drop", "count": 2},
        {"vendor": "google-analytics-4", "action": "forward", "count": 1},
        {"vendor": "meta-pixel", "action": "strip", "count": 1},
    ]
    assert body["by_purpose"] == [
        {"purpose": "advertising", "count": 3},
        {"purpose": "analytics", "count": 2},
    ]
    rollups = body["rollups"]
    assert rollups["total"] == 64 and rollups["bucket_seconds"] % 60 == 0
    assert sum(b["counts"]["forward"] for b in rollups["timeline"]) == 56
    assert rollups["vendors"][0] == {
        "vendor": None,
        "total": 1,
        "blocked": 1,
        "stripped": 0,
        "blocked_share": 1.0,
    }
    share = {s["purpose"]: s for s in rollups["consent_share"]}
    assert share["analytics"] == {
        "purpose": "analytics",
        "total": 64,
        "missing": 5,
        "share": 59 / 64,
    }
    one_hour = await api(client, "/_admin/api/overview?window=1h")
    assert one_hour["total"] == 3 and one_hour["rollups"]["total"] == 14
    # a month, from the rollups as cheaply
    month = await api(client, "/_admin/api/overview?window=30d")
    assert month["window"] == "30d" and month["rollups"]["total"] == 64
    assert month["rollups"]["bucket_seconds"] == 12 * 3600  # 60 columns
    doc = await page(client, "/_admin/overview?window=30d")
    current = [a.attrs["href"] for a in doc.all("a", "window") if "aria-current" in a.attrs]
    assert current == ["/_admin/overview?window=30d"]
    assert "last 30 days" in doc.one(id="requests-total").text


async def test_overview_without_records(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    doc = await page(client, "/_admin/overview?window=1h")
    assert len([s for s in doc.all("svg") if "chart" in s.classes]) == 2
    assert doc.all("text", "empty")
    # no rollups yet: one notice instead of the time series and the share tables
    assert "No tag requests counted" in doc.one(id="no-rollups").text
    assert not doc.all(id="vendor-share") and not doc.all(id="purpose-share")


async def test_purpose_share_counts_tag_requests(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory, hosts=[GA])
    hit = f"/t/{GA}/g/collect?v=2&tid=G-X&cid=1.2&en=page_view"
    for _ in range(3):
        assert (await client.get(hit)).status in (200, 204)
    granted = cookie_for({"analytics": "granted"})
    assert (await client.get(hit, headers={"Cookie": f"cg_consent={granted}"})).status < 300
    body = await api(client, "/_admin/api/overview")
    share = {p["purpose"]: p for p in body["purpose_share"]["purposes"]}
    assert share["analytics"] == {
        "purpose": "analytics",
        "granted": 1,
        "denied": 3,
        "unknown": 0,
        "total": 4,
        "granted_share": 0.25,
    }
    assert share["necessary"]["granted_share"] == 1.0
    assert set(share) == set(state_of(client).gw.config.consent.purposes)
    assert body["purpose_share"]["since"].endswith("Z") and body["purpose_share"]["measured"]


async def test_purpose_share_before_any_request(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    body = await api(client, "/_admin/api/overview")
    assert all(p["granted_share"] is None for p in body["purpose_share"]["purposes"])
    assert body["rollups"]["consent_share"] and all(
        p["share"] is None for p in body["rollups"]["consent_share"]
    )


# --- consent records ------------------------------------------------------------------


async def _unknown_subject(client: Client) -> str:
    await consent(client, {"analytics": True})  # someone else's record
    return "nobody-at-all"


async def _erased_subject(client: Client) -> str:
    subject: str = (await consent(client, {"analytics": True}))["subject"]
    book = client.app[GATEWAY].book
    assert book is not None
    await book.erase(subject)
    return subject


async def _erasure_token(client: Client) -> str:
    subject = (await consent(client, {"analytics": True}))["subject"]
    await consent(client, {"advertising": False})
    book = client.app[GATEWAY].book
    assert book is not None
    token: str = await book.erase(subject)
    return token


async def _stored(client: Client, subject: str, policy_version: int, at: float) -> str:
    book = client.app[GATEWAY].book
    assert book is not None
    rec = ConsentRecord(subject, {"analytics": True}, "api", policy_version, at, None, None)
    await book.record(rec)
    return subject


async def _old_policy(client: Client) -> str:
    return await _stored(client, "old-policy", 0, time.time())


async def _expired(client: Client) -> str:
    return await _stored(client, "long-ago", 1, 1e9)  # 2001: past consent.max_age


@pytest.mark.parametrize(
    ("make", "shown", "rows", "stale"),
    [
        (_unknown_subject, {"current-none"}, 0, None),
        (_erased_subject, {"current-erased"}, 0, None),
        (_erasure_token, {"token-note", "current"}, 2, None),
        (_old_policy, {"current", "current-stale", "erase-howto"}, 1, "policy version 0"),
        (_expired, {"current", "current-stale", "erase-howto"}, 1, "consent.max_age"),
    ],
    ids=["unknown", "erased", "token", "old-policy", "expired"],
)
async def test_consent_records_page_states(
    gateway_factory: Callable[..., Any],
    make: Callable[[Client], Any],
    shown: set[str],
    rows: int,
    stale: str | None,
) -> None:
    client = await admin_client(gateway_factory)
    subject = await make(client)
    doc = await page(client, subjects_path(subject))
    assert doc.one(id="subject-id").text == subject
    assert {i for i in STATE_IDS if doc.all(id=i)} == shown
    assert len(history_rows(doc)) == rows
    if not rows:
        assert doc.one("table", id="history").all("tr", "empty")
    if "current-erased" in shown:
        erased = doc.one(id="current-erased")
        assert erased.one("code", "source").text == "erasure" and erased.one("time")
    if stale is not None:
        assert stale in doc.one(id="current-stale").text
    assert doc.one("a", id="export").attrs["href"] == records_path(quote(subject, safe=""))
    assert_no_inline_code(doc)


@pytest.mark.parametrize(
    ("subject", "command"),
    [
        ("AbC_d-9", "consent-gateway erase AbC_d-9"),
        ("-AbC_d9", "consent-gateway erase -- -AbC_d9"),
        ("a b", "consent-gateway erase 'a b'"),
        ("it's", "consent-gateway erase 'it'\"'\"'s'"),
        ("$(rm -rf ~)", "consent-gateway erase '$(rm -rf ~)'"),
        ("erased:ab", "consent-gateway erase erased:ab"),
    ],
)
def test_erase_command_is_shell_quoted(subject: str, command: str) -> None:
    assert erase_command(subject) == command
    args = cli._parser().parse_args(shlex.split(command)[1:])
    assert args.subject == subject and args.func is cli._cmd_erase


UNLISTED_ROW = Bypass("router", "unlisted", None, "cdn.tracker.example", "/", 2, 1.0e9, 1.0e9 + 60)


def test_bypass_row_and_doc() -> None:
    row = bypass_row(UNLISTED_ROW)
    assert row["vendor"] == "" and row["count"] == 2
    assert row["first"] == ("2001-09-09T01:46:40Z", "2001-09-09 01:46:40")
    doc = bypasses_doc("all", None, "unlisted", [UNLISTED_ROW])
    assert doc["since_time"] is None and doc["kind"] == "unlisted"
    assert doc["bypasses"] == [
        {
            "source": "router",
            "kind": "unlisted",
            "vendor": None,
            "host": "cdn.tracker.example",
            "page": "/",
            "count": 2,
            "first_seen": "2001-09-09T01:46:40Z",
            "last_seen": "2001-09-09T01:47:40Z",
            "first_seen_epoch": 1.0e9,
            "last_seen_epoch": 1.0e9 + 60,
        }
    ]
