"""gateway.front: tag requests answered before aiohttp's request cycle, as aiohttp would.

Every case is sent over a raw socket to two gateways built alike, one served with the
front (as `serve` does) and one without: the answers must be the same bytes (but the
date and the request id), the decision logs the same records, and the front must have
answered exactly the requests it is for, handing everything else to aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from aiohttp import web

from gateway import pipeline
from gateway.access_log import GatewayRunner
from gateway.app import GATEWAY, build_app, front_for
from gateway.config import DEFAULT_PURPOSES, GatewayConfig
from gateway.decision_log.query import LogQuery, LogReader
from gateway.front import FrontServer, tag_target
from gateway.ruleset.load import load_rules
from gateway.ruleset.match import RuleSet
from tests.conftest import RULES_DIR, FakeVendor, cookie_for, make_config, overrides_for

GA4 = "/t/www.google-analytics.com/g/collect?v=2&tid=G-TEST&cid=555.1&en=page_view"
PIXEL = "/t/www.facebook.com/tr/?id=123&ev=PageView"
SCRIPT = "/t/connect.facebook.net/en_US/fbevents.js"
UNKNOWN_HOST = "/t/unknown.example/collect?uid=1"
UNKNOWN_PATH = "/t/www.google-analytics.com/not/an/endpoint"
HOSTS = ("www.google-analytics.com", "www.facebook.com", "connect.facebook.net")
GRANTED = cookie_for({"analytics": "granted", "advertising": "granted"})


def req(
    method: str, target: str, *, version: str = "1.1", body: bytes = b"", extra: str = ""
) -> bytes:
    head = f"{method} {target} HTTP/{version}\r\nHost: gw.example\r\nUser-Agent: t\r\n{extra}"
    if body or method == "POST":
        head += f"Content-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


@dataclass(frozen=True)
class Case:
    id: str
    sent: list[bytes]
    answers: int
    #: how many of them the front answers (None: either way, the bytes may come in one read)
    by_front: int | None


CASES = [
    Case("dropped beacon", [req("GET", GA4)], 1, 1),
    Case("dropped pixel", [req("GET", PIXEL)], 1, 1),
    Case("dropped script", [req("GET", SCRIPT)], 1, 1),
    # an api endpoint's drop answer is its SDK's success (rules' drop_answer), with a body
    Case("dropped api call", [req("POST", "/t/us.i.posthog.com/e/?ver=1.180.0")], 1, 1),
    Case("no rule for the host", [req("GET", UNKNOWN_HOST)], 1, 1),
    Case("no endpoint of the vendor", [req("GET", UNKNOWN_PATH)], 1, 1),
    Case("not a host", [req("GET", "/t/bad_host!/x")], 1, 0),
    Case("POST without a body", [req("POST", GA4)], 1, 1),
    Case("POST with a body", [req("POST", GA4, body=b"en=click&cid=9")], 1, 0),
    Case("closing", [req("GET", GA4, extra="Connection: close\r\n")], 1, 1),
    Case("pipelined", [req("GET", GA4) + req("GET", PIXEL) + req("GET", UNKNOWN_HOST)], 3, 3),
    Case(
        "handed over midway",
        [req("GET", GA4) + req("POST", GA4, body=b"en=x") + req("GET", PIXEL)],
        3,
        1,
    ),
    Case(
        "consent granted: forwarded in the background",
        [req("GET", GA4, extra=f"Cookie: cg_consent={GRANTED}\r\n")],
        1,
        1,
    ),
    Case(
        "consent granted: a script fetched while the visitor waits",
        [req("GET", SCRIPT, extra=f"Cookie: cg_consent={GRANTED}\r\n")],
        1,
        0,
    ),
    Case("HTTP/1.0", [req("GET", GA4, version="1.0")], 1, 0),
    Case("HEAD", [req("HEAD", GA4)], 1, 0),
    Case(
        "preflight",
        [
            req(
                "OPTIONS",
                GA4,
                extra="Origin: https://shop.example\r\nAccess-Control-Request-Method: POST\r\n",
            )
        ],
        1,
        0,
    ),
    Case("upgrade", [req("GET", GA4, extra="Connection: Upgrade\r\nUpgrade: websocket\r\n")], 1, 0),
    Case("expect", [req("POST", GA4, body=b"", extra="Expect: 100-continue\r\n")], 1, 0),
    Case("not a tag route", [req("GET", "/consent")], 1, 0),
    Case("malformed head", [b"GET /t/x HTTP/1.1\r\nNo colon here\r\n\r\n"], 1, 0),
    Case("head in two reads", [req("GET", GA4)[:30], req("GET", GA4)[30:]], 1, None),
    Case(
        "cookie of another site",
        [req("GET", GA4, extra="Cookie: _ga=GA1.1.123; other=1\r\n")],
        1,
        1,
    ),
    Case("GPC", [req("GET", PIXEL, extra="Sec-GPC: 1\r\n")], 1, 1),
]


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules([RULES_DIR], frozenset(DEFAULT_PURPOSES))


def _config(tmp: Path, fake: FakeVendor, extra: dict[str, object] | None = None) -> GatewayConfig:
    return make_config(tmp, overrides_for(fake, HOSTS), extra)


@contextlib.asynccontextmanager
async def served(
    app: web.Application, front: bool
) -> AsyncIterator[tuple[int, FrontServer | None]]:
    """`app` served by `GatewayRunner` as `serve` does (with the front, or with none)."""
    runner = GatewayRunner(app, access_log=None, front=front_for(app, access_log=not front))
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        server = runner.server
        yield runner.addresses[0][1], getattr(server, "front", None)
    finally:
        await runner.cleanup()


@dataclass(frozen=True)
class Answer:
    status_line: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    closed: bool


_ID = re.compile(r"id=[0-9a-f]+")


async def exchange(port: int, sent: list[bytes], answers: int) -> list[Answer]:
    """Send `sent` (each part written on its own) and read `answers` answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for i, part in enumerate(sent):
            writer.write(part)
            await writer.drain()
            if i + 1 < len(sent):
                await asyncio.sleep(0.05)  # a chance to arrive in another read (not a check)
        out = []
        async with asyncio.timeout(10):
            for _ in range(answers):
                out.append(await _read_answer(reader))
        return out
    finally:
        writer.close()


async def _read_answer(reader: asyncio.StreamReader) -> Answer:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status_line, *lines = head[:-4].split("\r\n")
    headers: list[tuple[str, str]] = []
    for line in lines:
        name, _, value = line.partition(": ")
        if name.lower() == "date":
            value = "<date>"
        headers.append((name.lower(), _ID.sub("id=<id>", value)))
    length = int(dict(headers).get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    closed = dict(headers).get("connection") == "close"
    if closed:
        assert await reader.read() == b""  # the server closed the connection
    return Answer(status_line, tuple(sorted(headers)), body, closed)


@contextlib.contextmanager
def counting_front_answers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many requests `pipeline.answer_locally` answered (the front's own answers)."""
    count = [0]
    real = pipeline.answer_locally

    def spy(*args: object, **kwargs: object) -> object:
        answered = real(*args, **kwargs)  # type: ignore[arg-type]
        count[0] += answered is not None
        return answered

    monkeypatch.setattr(pipeline, "answer_locally", spy)
    yield count


async def _both(
    tmp_path: Path,
    fake: FakeVendor,
    rules: RuleSet,
    monkeypatch: pytest.MonkeyPatch,
    cases: list[Case],
    extra: dict[str, object] | None = None,
) -> None:
    apps = {
        front: build_app(_config(tmp_path / str(front), fake, extra), rules)
        for front in (True, False)
    }
    got: dict[bool, list[list[Answer]]] = {}
    for front, app in apps.items():
        async with served(app, front) as (port, server):
            assert (server is not None) == front
            got[front] = []
            for case in cases:
                with counting_front_answers(monkeypatch) as count:
                    got[front].append(await exchange(port, case.sent, case.answers))
                if case.by_front is not None:
                    expected = case.by_front if front else 0
                    assert count[0] == expected, f"{case.id}: {count[0]} answered by the front"
            await app[GATEWAY].decision_log.drain()
    for case, with_front, without in zip(cases, got[True], got[False], strict=True):
        assert with_front == without, case.id
    # The same records (but their times and ids) in the same order.
    logs = []
    for front in (True, False):
        db = tmp_path / str(front) / "data" / "decisions.db"
        records = LogReader(db).records(LogQuery(limit=1000, after_id=0))
        logs.append([replace(r, ts=0.0, request_id="-", id=None) for r in records])
    assert logs[0] == logs[1] and logs[0]


async def test_the_front_answers_as_aiohttp_would(
    tmp_path: Path, fake_vendor: FakeVendor, rules: RuleSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _both(tmp_path, fake_vendor, rules, monkeypatch, CASES)
    # each forwarded case reached the vendor from both gateways, with the same request
    seen = await fake_vendor.wait_for(4)
    beacons = sorted((s.path, s.query) for s in seen if s.path == "/g/collect")
    assert len(beacons) == 2 and beacons[0] == beacons[1]


async def test_with_cors_configured_the_answers_carry_the_same_cors_headers(
    tmp_path: Path, fake_vendor: FakeVendor, rules: RuleSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = [
        Case("allowed origin", [req("GET", GA4, extra="Origin: https://shop.example\r\n")], 1, 1),
        Case("other origin", [req("GET", GA4, extra="Origin: https://evil.example\r\n")], 1, 1),
        Case("no origin", [req("GET", PIXEL)], 1, 1),
    ]
    extra: dict[str, object] = {"server": {"allowed_origins": ["https://shop.example"]}}
    await _both(tmp_path, fake_vendor, rules, monkeypatch, cases, extra)


async def test_without_the_decision_header_the_answers_match_too(
    tmp_path: Path, fake_vendor: FakeVendor, rules: RuleSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = [Case("dropped", [req("GET", GA4) + req("GET", UNKNOWN_HOST)], 2, 2)]
    extra: dict[str, object] = {"server": {"decision_header": False}}
    await _both(tmp_path, fake_vendor, rules, monkeypatch, cases, extra)


async def test_an_idle_connection_is_closed_after_the_keepalive_timeout(
    tmp_path: Path, fake_vendor: FakeVendor, rules: RuleSet
) -> None:
    app = build_app(_config(tmp_path, fake_vendor, {"server": {"read_timeout": 0.2}}), rules)
    async with served(app, True) as (port, front):
        assert front is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(req("GET", GA4))
        await _read_answer(reader)
        assert len(front.connections) == 1
        async with asyncio.timeout(5):  # the sweep runs every second
            assert await reader.read() == b""
        assert not front.connections
        writer.close()


async def test_shutdown_closes_the_connections_the_front_holds(
    tmp_path: Path, fake_vendor: FakeVendor, rules: RuleSet
) -> None:
    app = build_app(_config(tmp_path, fake_vendor), rules)
    async with served(app, True) as (port, front):
        assert front is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(req("GET", GA4))
        await _read_answer(reader)
    async with asyncio.timeout(5):
        assert await reader.read() == b""
    writer.close()


async def test_a_client_that_does_not_read_is_not_read_from(
    tmp_path: Path, fake_vendor: FakeVendor, rules: RuleSet
) -> None:
    """Pipelined requests from a client that reads nothing: the front stops reading when
    its answers back up (flow control), and every answer arrives once the client reads."""
    app = build_app(_config(tmp_path, fake_vendor), rules)
    n = 3000
    async with served(app, True) as (port, _front):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(req("GET", GA4) * n)
        statuses = []
        async with asyncio.timeout(30):
            await writer.drain()
            for _ in range(n):
                statuses.append((await _read_answer(reader)).status_line)
        assert statuses == ["HTTP/1.1 204 No Content"] * n
        writer.close()


@pytest.mark.parametrize(
    ("rest", "host", "path"),
    [
        ("www.google-analytics.com/g/collect", "www.google-analytics.com", "/g/collect"),
        ("WWW.Example.COM/a%2Fb", "www.example.com", "/a%2Fb"),
        ("www.example.com", "www.example.com", "/"),
        ("user@www.example.com/x", None, "/x"),
        ("127.0.0.1/x", None, "/x"),
        ("www.example.com%2Fevil/x", None, "/x"),
    ],
)
def test_tag_target(rest: str, host: str | None, path: str) -> None:
    assert tag_target(rest) == (host, path)


async def test_a_request_whose_answer_cannot_be_made_is_counted_once_by_aiohttp(
    tmp_path: Path, fake_vendor: FakeVendor, rules: RuleSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The front commits a decision (metrics, log, forward) only once its answer is made:
    an answer it fails to make hands the request over, and aiohttp's way does it all
    once."""

    def broken(*args: object, **kwargs: object) -> tuple[bytes, bytes, bytes]:
        raise RuntimeError("an answer the front cannot make")

    monkeypatch.setattr(FrontServer, "_template", broken)
    app = build_app(_config(tmp_path, fake_vendor), rules)
    gw = app[GATEWAY]
    async with served(app, True) as (port, _front):
        [answer] = await exchange(port, [req("GET", GA4)], 1)
        await gw.decision_log.drain()
    assert answer.status_line == "HTTP/1.1 204 No Content"
    records = LogReader(tmp_path / "data" / "decisions.db").records(LogQuery(limit=10))
    assert [r.action for r in records] == ["drop"]
    drops = gw.metrics.registry.get_sample_value(
        "consent_gateway_requests_total",
        {"vendor": "google-analytics-4", "endpoint": "collect", "action": "drop"},
    )
    assert drops == 1.0


async def test_the_answer_is_written_before_the_decision_is_committed(
    tmp_path: Path,
    fake_vendor: FakeVendor,
    rules: RuleSet,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A beacon's visitor does not wait for its forward to be built and written: the
    front writes the answer, then commits. A commit that fails after the answer went out
    is logged, and the request is not handed to aiohttp (it would be answered twice)."""
    order: list[str] = []

    def failing(self: pipeline.LocalAnswer) -> None:
        order.append("commit")
        raise RuntimeError("a commit that fails")

    monkeypatch.setattr(pipeline.LocalAnswer, "commit", failing)
    app = build_app(_config(tmp_path, fake_vendor), rules)
    async with served(app, True) as (port, _front):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(req("GET", GA4) + req("GET", GA4))
        async with asyncio.timeout(10):
            answers = [await _read_answer(reader), await _read_answer(reader)]
        writer.close()
    assert [a.status_line for a in answers] == ["HTTP/1.1 204 No Content"] * 2
    assert order == ["commit", "commit"]
    assert caplog.text.count("committing an answered request failed") == 2
