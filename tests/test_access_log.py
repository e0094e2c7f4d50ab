"""gateway.access_log: one line per request, never a query value or a full address."""

from __future__ import annotations

import logging

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway.access_log import JsonAccessLogger, TextAccessLogger, access_logger_for


def _request(path: str, peer: str = "203.0.113.77") -> web.BaseRequest:
    transport = type(
        "T",
        (),
        {"get_extra_info": lambda self, n, d=None: (peer, 1) if n == "peername" else d},
    )()
    return make_mocked_request("GET", path, transport=transport)


SECRET_PATH = "/t/ad.doubleclick.net/activityi;src=123;u1=alice@example.com?gclid=SECRET"


@pytest.mark.parametrize("cls", [JsonAccessLogger, TextAccessLogger])
def test_lines_keep_no_personal_data(cls: type, caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("gateway.access.test")
    with caplog.at_level(logging.INFO, logger="gateway.access.test"):
        cls(logger, "").log(_request(SECRET_PATH), web.Response(status=204), 0.0123)
    [line] = [r.getMessage() for r in caplog.records]
    for secret in ("SECRET", "alice", "gclid", "203.0.113.77", "123"):
        assert secret not in line, secret
    assert "203.0.113.0" in line and "204" in line
    if cls is JsonAccessLogger:
        doc = orjson.loads(line)
        assert doc["path"] == "/t/ad.doubleclick.net/activityi;src;u1"
        assert doc["status"] == 204 and doc["ms"] == 12.3 and doc["method"] == "GET"


@pytest.mark.parametrize(
    ("mode", "cls"), [("json", JsonAccessLogger), ("text", TextAccessLogger), ("off", None)]
)
def test_access_logger_for(mode: str, cls: type | None) -> None:
    assert access_logger_for(mode) is cls
