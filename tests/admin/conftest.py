"""Helpers for the admin sub-app's tests (tests/admin/test_*.py): a gateway with the
admin on (`admin_client`), decision-log records to seed it with, an HTML tree to read
its pages by, and the subject routes' paths.

The admin is mounted at /_admin in the gateway's own app, as in production.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from gateway.admin.answers import ADMIN, AdminState
from gateway.decision_log.bypasses import Seen
from gateway.decision_log.record import DecisionRecord
from gateway.decision_log.sinks import SqliteSink
from gateway.violations import Sighting
from tests.conftest import RULES_DIR, make_record, store_records

Client = TestClient[Any, Any]

TOKEN = "admin-test-token-0123456789"
TOKEN_ENV = "CG_TEST_ADMIN"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
GA = "www.google-analytics.com"
RULE_FILES = [str(RULES_DIR / f"{v}.yaml") for v in ("google-analytics-4", "meta-pixel")]
HOUR, DAY = 3600.0, 86400.0

NOTICE = "We use analytics to count visits."

#: the elements that say which state the page shows (each present or absent)
STATE_IDS = (
    "current-none",
    "current-erased",
    "current",
    "current-stale",
    "token-note",
    "erase-howto",
)


async def admin_client(
    gateway_factory: Callable[..., Any], hosts: Sequence[str] = (), **extra: Any
) -> Client:
    doc: dict[str, Any] = {
        "admin": {"token_env": TOKEN_ENV, "secure_cookie": False},
        "rules": {"paths": RULE_FILES},
        **extra,
    }
    client: Client = await gateway_factory(hosts=hosts, extra=doc, env={TOKEN_ENV: TOKEN})
    return client


def admin_app(client: Client) -> web.Application:
    for resource in client.app.router.resources():
        if isinstance(resource, web.PrefixedSubAppResource):
            app: web.Application = resource.get_info()["app"]
            return app
    raise AssertionError("no admin sub-app mounted")


def state_of(client: Client) -> AdminState:
    return admin_app(client)[ADMIN]


def record(reason: str, age: float = 10.0, **kw: Any) -> DecisionRecord:
    """A GA4 drop record `age` seconds old, its request id and reason both `reason`."""
    return make_record(reason, **{"ts": time.time() - age, "host": GA, "reason": reason, **kw})


def seed(client: Client, records: Sequence[DecisionRecord]) -> None:
    db = state_of(client).gw.config.decision_log.sqlite_path
    assert db is not None
    store_records(db, records)


def seed_rollups(client: Client, rows: Sequence[tuple[float, str, str, str, str, int]]) -> None:
    """Insert rollup rows (age in seconds, vendor, action, missing, regime, n) into the
    gateway's log file, as the gateway's writer would count them."""
    db = state_of(client).gw.config.decision_log.sqlite_path
    assert db is not None
    SqliteSink(db).close()  # creates the file and its tables
    now = time.time()
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO rollups VALUES (?, ?, ?, ?, ?, ?)",
            [(int(now - age) // 60 * 60, v, a, m, r, n) for age, v, a, m, r, n in rows],
        )
    conn.close()


def seed_bypasses(client: Client, seen: Sequence[tuple[Sighting, float]]) -> None:
    """Store report sightings (each with its age in seconds) in the gateway's log file."""
    db = state_of(client).gw.config.decision_log.sqlite_path
    assert db is not None
    sink = SqliteSink(db)
    try:
        sink.write_sightings([Seen(s, time.time() - age) for s, age in seen])
    finally:
        sink.close()


FB_BYPASS = Sighting("csp", "bypass", "meta-pixel", "www.facebook.com", "/cart")
UNLISTED = Sighting("router", "unlisted", None, "cdn.tracker.example", "/p/{…}")
#: three reports of one Meta bypass, one unlisted host, and an old one (10 days)
BYPASS_ROWS = [
    (FB_BYPASS, 300.0),
    (FB_BYPASS, 200.0),
    (FB_BYPASS, 100.0),
    (UNLISTED, 50.0),
    (Sighting("csp", "bypass", "google-analytics-4", GA, "/old"), 10 * DAY),
]


FILTER_ROWS = [
    record("a", age=10),
    record(
        "b",
        age=20,
        vendor="meta-pixel",
        endpoint="pixel",
        action="strip",
        missing=("advertising",),
        regime="us",
    ),
    record("c", age=30, vendor=None, endpoint=None, action="reject", missing=(), regime=None),
    record("d", age=2 * HOUR, missing=("advertising", "analytics"), regime="us"),
    record("e", age=3 * DAY, action="forward", missing=("advertising",), report_only=True),
    record("f", age=10 * DAY, vendor="meta-pixel", endpoint="pixel"),
]


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    def walk(self) -> Iterator[Node]:
        for c in self.children:
            if isinstance(c, Node):
                yield c
                yield from c.walk()

    def all(
        self, tag: str | None = None, cls: str | None = None, id: str | None = None
    ) -> list[Node]:
        return [
            n
            for n in self.walk()
            if (tag is None or n.tag == tag)
            and (cls is None or cls in n.classes)
            and (id is None or n.attrs.get("id") == id)
        ]

    def one(self, tag: str | None = None, cls: str | None = None, id: str | None = None) -> Node:
        [found] = self.all(tag, cls, id)
        return found


_VOID = {"meta", "link", "input", "br", "img", "hr", "rect", "wbr"}


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v if v is not None else "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(html: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


async def page(client: Client, path: str, status: int = 200) -> Node:
    resp = await client.get(path, headers=BEARER, allow_redirects=False)
    assert resp.status == status, await resp.text()
    assert resp.content_type == "text/html"
    return parse(await resp.text())


async def api(client: Client, path: str | URL, status: int = 200) -> Any:
    resp = await client.get(path, headers=BEARER)
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    return orjson.loads(await resp.read())


def reasons(doc: Node) -> list[str]:
    return [tr.one("td", "reason").text.strip() for tr in doc.all("tr", "record")]


def records_path(subject: str) -> str:
    return f"/_admin/api/subjects/{subject}/records"


def erase_path(subject: str) -> str:
    return f"/_admin/api/subjects/{subject}/erase"


def subjects_path(subject: str) -> str:
    return "/_admin/subjects?" + urlencode({"subject": subject})


async def consent(client: Client, purposes: dict[str, bool], **extra: Any) -> dict[str, Any]:
    """Record a choice through the public consent API (the client keeps the cookie)."""
    resp = await client.post("/consent", json={"purposes": purposes, **extra})
    assert resp.status == 200, await resp.text()
    doc: dict[str, Any] = orjson.loads(await resp.read())
    return doc


async def erase(client: Client, subject: str, status: int = 200, **headers: str) -> Any:
    resp = await client.post(erase_path(subject), headers=headers or BEARER)
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    return orjson.loads(await resp.read())


def assert_no_inline_code(doc: Node) -> None:
    for node in doc.walk():
        assert node.tag not in ("style", "script"), node
        assert "style" not in node.attrs, node
        assert not any(a.startswith("on") for a in node.attrs), node


def history_rows(doc: Node) -> list[Node]:
    return doc.one("table", id="history").all("tr", "record")
