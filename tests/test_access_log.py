"""gateway.access_log: one line per request, never a query value or a full address;
aiohttp's own records and error answers without request values either."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp import web
from aiohttp.client_exceptions import ClientPayloadError
from aiohttp.http_exceptions import BadHttpMethod, BadStatusLine, InvalidHeader
from aiohttp.test_utils import make_mocked_request

from gateway.access_log import (
    AIOHTTP_LOGGERS,
    PRIVACY_FILTER,
    GatewayRunner,
    JsonAccessLogger,
    TextAccessLogger,
    access_logger_for,
    install_log_privacy,
)
from gateway.edges import BASE_PATH


def _request(path: str, peer: str = "203.0.113.77", method: str = "GET") -> web.BaseRequest:
    transport = type(
        "T",
        (),
        {"get_extra_info": lambda self, n, d=None: (peer, 1) if n == "peername" else d},
    )()
    return make_mocked_request(method, path, transport=transport)


# values no timestamp or duration could contain by chance
SECRET_PATH = "/t/ad.doubleclick.net/activityi;src=4815162342;u1=alice@example.com?gclid=SECRET"


@pytest.mark.parametrize("cls", [JsonAccessLogger, TextAccessLogger])
def test_lines_keep_no_personal_data(cls: type, caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("gateway.access.test")
    with caplog.at_level(logging.INFO, logger="gateway.access.test"):
        cls(logger, "").log(_request(SECRET_PATH), web.Response(status=204), 0.0123)
    [line] = [r.getMessage() for r in caplog.records]
    for secret in ("SECRET", "alice", "gclid", "203.0.113.77", "4815162342"):
        assert secret not in line, secret
    assert "203.0.113.0" in line and "204" in line
    if cls is JsonAccessLogger:
        doc = orjson.loads(line)
        assert doc["path"] == "/t/ad.doubleclick.net/activityi;src={…};u1={…}"
        assert doc["status"] == 204 and doc["ms"] == 12.3 and doc["method"] == "GET"


@pytest.mark.parametrize(
    ("mode", "cls"), [("json", JsonAccessLogger), ("text", TextAccessLogger), ("off", None)]
)
def test_access_logger_for(mode: str, cls: type | None) -> None:
    assert access_logger_for(mode) is cls


@pytest.mark.parametrize(
    ("method", "target", "expected"),
    [
        ("GET", "/t/alice@example.com:pw@evil.example/x", "GET /t/evil.example/x"),
        ("GET", "/t/alice%40example.com:pw@evil.example/x?a=1", "GET /t/evil.example/x"),
        ("GET", "/t/evil.example:8443/x", "GET /t/evil.example/x"),
        (
            "GET",
            "/t/evil.example/u/alice%40example.com/GCLIDLEAK123?gclid=GCLIDLEAK123",
            "GET /t/evil.example/u/{…}/{…}",
        ),
        ("POST", "/ga4/g/collect?cid=555.666", "POST /ga4/g/collect"),
        ("GET", "/_admin/api/subjects/sub-plain/records", "GET /_admin/api/subjects/-/records"),
        ("GCLIDLEAK", "/x", "{…} /x"),
        # under server.base_path (/cg)
        ("GET", "/cg/t/alice@example.com:pw@evil.example/x", "GET /cg/t/evil.example/x"),
        (
            "GET",
            "/cg/_admin/api/subjects/sub-plain/records",
            "GET /cg/_admin/api/subjects/-/records",
        ),
    ],
)
def test_text_line_holds_a_template(
    method: str, target: str, expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("gateway.access.test")
    with caplog.at_level(logging.INFO, logger="gateway.access.test"):
        req = _request(target, method=method)
        if target.startswith("/cg/t/"):
            req[BASE_PATH] = "/cg"  # as the tag route sets it
        TextAccessLogger(logger, "").log(req, web.Response(status=404), 0.001)
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith(expected + " 404 "), line
    for secret in ("alice", "pw@", "GCLIDLEAK", "555.666", "8443", "sub-plain"):
        assert secret not in line, secret


# --- PrivacyFilter: aiohttp's own records --------------------------------------------------


def _record(
    name: str,
    msg: str,
    args: tuple[object, ...] = (),
    exc: BaseException | None = None,
    level: int = logging.ERROR,
) -> logging.LogRecord:
    exc_info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord(name, level, __file__, 1, msg, args, exc_info)


RAW_LINE = "GET /t/x/alice@example.com?gclid=GCLIDLEAK HTTP/1.1"

FILTER_CASES = [
    pytest.param(
        _record(
            "aiohttp.server",
            "Error handling request from %s",
            ("203.0.113.77",),
            BadStatusLine(RAW_LINE),
        ),
        "bad request from a client: BadStatusLine",
        logging.INFO,
        False,
        id="bad-status-line",
    ),
    pytest.param(
        _record(
            "aiohttp.server",
            "Error handling request from %s",
            ("203.0.113.77",),
            InvalidHeader(b"X-Email: alice@example.com"),
        ),
        "bad request from a client: InvalidHeader",
        logging.INFO,
        False,
        id="bad-header",
    ),
    pytest.param(
        _record(
            "aiohttp.server",
            "Error handling request from %s",
            ("203.0.113.77",),
            BadHttpMethod(RAW_LINE),
            logging.DEBUG,
        ),
        "bad request from a client: BadHttpMethod",
        logging.DEBUG,
        False,
        id="debug-stays-debug",
    ),
    pytest.param(
        _record("aiohttp.web", "payload: %s", (), ClientPayloadError("chunk GCLIDLEAK")),
        "bad request from a client: ClientPayloadError",
        logging.INFO,
        False,
        id="payload",
    ),
    pytest.param(
        _record("gateway.app", "unhandled error", (), BadStatusLine(RAW_LINE)),
        "bad request from a client: BadStatusLine",
        logging.INFO,
        False,
        id="any-logger",
    ),
    pytest.param(
        _record(
            "aiohttp.server",
            "Error handling request from %s",
            ("203.0.113.77",),
            ValueError("a gateway bug"),
        ),
        "Error handling request from 203.0.113.0",
        logging.ERROR,
        True,
        id="bug-keeps-traceback",
    ),
    pytest.param(
        _record(
            "aiohttp.internal",
            "Can not load cookies: Illegal cookie name %r",
            ("alice@example.com",),
            level=logging.WARNING,
        ),
        "Can not load cookies: Illegal cookie name '{…}'",
        logging.WARNING,
        False,
        id="cookie-name",
    ),
    pytest.param(
        _record(
            "aiohttp.internal",
            "Cannot load cookie. Illegal cookie names: %r",
            (["ok", "GCLIDLEAK123456"],),
            level=logging.DEBUG,
        ),
        "Cannot load cookie. Illegal cookie names: ['ok', '{…}']",
        logging.DEBUG,
        False,
        id="cookie-names",
    ),
    pytest.param(
        _record(
            "aiohttp.client",
            "Error while closing connector: %r",
            (OSError("https://v.example/?gclid=GCLIDLEAK"),),
            level=logging.DEBUG,
        ),
        "Error while closing connector: 'OSError'",
        logging.DEBUG,
        False,
        id="object-arg",
    ),
    pytest.param(
        _record(
            "aiohttp.server",
            "Start lingering close timer for %s sec.",
            (10.0,),
            level=logging.DEBUG,
        ),
        "Start lingering close timer for 10.0 sec.",
        logging.DEBUG,
        False,
        id="numbers-stay",
    ),
    pytest.param(
        _record("gateway.app", "from %s", ("203.0.113.77",), level=logging.INFO),
        "from 203.0.113.77",
        logging.INFO,
        False,
        id="gateway-records-untouched",
    ),
]


@pytest.mark.parametrize(("record", "message", "level", "traceback"), FILTER_CASES)
def test_privacy_filter_rewrites_aiohttp_records(
    record: logging.LogRecord, message: str, level: int, traceback: bool
) -> None:
    assert PRIVACY_FILTER.filter(record) is True
    assert record.getMessage() == message
    assert (record.levelno, record.levelname) == (level, logging.getLevelName(level))
    assert (record.exc_info is not None) is traceback


@pytest.mark.parametrize(("record", "message", "level", "traceback"), FILTER_CASES)
def test_privacy_filter_rewrites_a_record_once(
    record: logging.LogRecord, message: str, level: int, traceback: bool
) -> None:
    # once on its logger, again on each handler: the second pass changes nothing
    assert PRIVACY_FILTER.filter(record) is True
    assert PRIVACY_FILTER.filter(record) is True
    assert record.getMessage() == message


def test_privacy_filter_drops_aiohttp_access_records() -> None:
    record = _record("aiohttp.access", f'203.0.113.77 "{RAW_LINE}" 200', level=logging.INFO)
    assert PRIVACY_FILTER.filter(record) is False


def test_install_log_privacy_covers_every_aiohttp_logger_once() -> None:
    handler = logging.StreamHandler(sys.stderr)
    before = {n: list(logging.getLogger(n).filters) for n in AIOHTTP_LOGGERS}
    try:
        install_log_privacy(handler)
        install_log_privacy(handler)
        for name in AIOHTTP_LOGGERS:
            assert logging.getLogger(name).filters.count(PRIVACY_FILTER) == 1, name
        assert handler.filters == [PRIVACY_FILTER]
    finally:
        for name, filters in before.items():
            logging.getLogger(name).filters[:] = filters


# --- GatewayRunner: the answer to a malformed request --------------------------------------


async def _boom(request: web.Request) -> web.Response:
    raise ValueError("a gateway bug")


async def _payload(request: web.Request) -> web.Response:
    raise ClientPayloadError("chunk GCLIDLEAK")


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


@pytest.fixture
async def private_port() -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_get("/ok", _ok)
    app.router.add_get("/boom", _boom)
    app.router.add_get("/payload", _payload)
    runner = GatewayRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert runner.addresses
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


async def raw_exchange(port: int, data: bytes) -> bytes:
    """Send `data` on a fresh connection; everything the server answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


MALFORMED = [
    pytest.param(
        b"GET /x?gclid=GCLIDLEAK HTTP/1.1\r\nHost: a\r\nX: \x01GCLIDLEAK\r\n\r\n", id="header-char"
    ),
    pytest.param(
        b"GET /t/evil example/x?gclid=GCLIDLEAK HTTP/1.1\r\nHost: a\r\n\r\n", id="status-line"
    ),
    pytest.param(b"G\x01T /x?gclid=GCLIDLEAK HTTP/1.1\r\nHost: a\r\n\r\n", id="method"),
    pytest.param(
        b"GET /x?gclid=GCLIDLEAK HTTP/1.1\r\nContent-Length: GCLIDLEAK\r\n\r\n", id="content-length"
    ),
    pytest.param(b"GET /x?gclid=GCLIDLEAK\x00 HTTP/1.1\r\nHost: a\r\n\r\n", id="url-char"),
    pytest.param(
        b"POST /ok HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nGCLIDLEAK\r\n",
        id="chunk-size",
    ),
    pytest.param(
        b"GET /" + b"GCLIDLEAK" * 2000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", id="line-too-long"
    ),
]


@pytest.mark.parametrize("data", MALFORMED)
async def test_malformed_request_gets_a_generic_answer(
    private_port: int, data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answer = await raw_exchange(private_port, data)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 400 " in head.split(b"\r\n")[0], answer
    assert orjson.loads(body) == {"error": "bad request"}
    assert b"GCLIDLEAK" not in answer
    server = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert [r.getMessage().split(":")[0] for r in server] == ["bad request from a client"]
    assert all(r.levelno <= logging.INFO and r.exc_info is None for r in server)
    assert "GCLIDLEAK" not in caplog.text and "127.0.0.1" not in caplog.text


@pytest.mark.parametrize(
    ("path", "status", "error", "logged"),
    [
        ("/boom", 500, "internal server error", "error answering a request"),
        ("/payload", 400, "bad request", "bad request from a client: ClientPayloadError"),
    ],
)
async def test_app_errors_get_a_generic_answer(
    private_port: int,
    path: str,
    status: int,
    error: str,
    logged: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    request = f"GET {path}?gclid=GCLIDLEAK HTTP/1.1\r\nHost: a\r\n\r\n".encode()
    answer = await raw_exchange(private_port, request)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert f" {status} ".encode() in head.split(b"\r\n")[0]
    assert orjson.loads(body) == {"error": error}
    assert b"Traceback" not in answer and b"gateway bug" not in answer
    [record] = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert record.getMessage() == logged
    # A bug keeps its traceback (that is how it gets fixed); a client's fault does not.
    assert (record.exc_info is not None) is (status == 500)


async def test_runner_serves_normal_requests(private_port: int) -> None:
    answer = await raw_exchange(
        private_port, b"GET /ok HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"ok")
