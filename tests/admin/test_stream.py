"""gateway.admin.stream: the live tail (Server-Sent Events) of new decision-log records."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from gateway.admin import stream
from gateway.admin.answers import CSP
from gateway.admin.auth import COOKIE_NAME
from gateway.app import GATEWAY
from tests.admin.conftest import (
    BEARER,
    GA,
    HOUR,
    TOKEN,
    admin_app,
    admin_client,
    record,
    state_of,
)


async def read_event(resp: Any, timeout: float = 5.0) -> bytes:
    """The next `data:` line (comments and blank lines skipped)."""

    async def _read() -> bytes:
        while True:
            line = await resp.content.readline()
            if not line:
                raise EOFError("stream ended")
            if line.startswith(b"data: "):
                return bytes(line[6:].rstrip(b"\n"))

    return await asyncio.wait_for(_read(), timeout)


async def until_connected(resp: Any) -> None:
    async def _read() -> None:
        while (await resp.content.readline()) != b": connected\n":
            pass

    await asyncio.wait_for(_read(), 5)


async def test_stream_delivers_new_records(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory, hosts=[GA])
    resp = await client.get("/_admin/api/stream", headers=BEARER)
    assert resp.status == 200 and resp.content_type == "text/event-stream"
    assert resp.headers["Content-Security-Policy"] == CSP
    assert resp.headers["Cache-Control"] == "no-store"
    await until_connected(resp)
    assert (await client.get(f"/t/{GA}/g/collect?v=2&tid=G-X&cid=1.2")).status < 300
    doc = orjson.loads(await read_event(resp))
    assert doc["vendor"] == "google-analytics-4" and doc["action"] == "drop"
    assert doc["path"] == "/g/collect" and "cid" not in orjson.dumps(doc).decode()
    resp.close()


async def test_stream_filters_and_keeps_one_record_per_line(
    gateway_factory: Callable[..., Any],
) -> None:
    client = await admin_client(gateway_factory)
    gw = client.app[GATEWAY]
    resp = await client.get("/_admin/api/stream?action=reject&purpose=", headers=BEARER)
    await until_connected(resp)
    gw.decision_log.submit(record("dropped"))
    gw.decision_log.submit(
        record("line\nbreak\r\n\ndata: forged", vendor=None, endpoint=None, action="reject")
    )
    doc = orjson.loads(await read_event(resp))
    assert doc["reason"] == "line\nbreak\r\n\ndata: forged"  # escaped inside one data line
    resp.close()
    bad = await client.get("/_admin/api/stream?action=allow", headers=BEARER)
    assert bad.status == 400


async def test_stream_pings_and_unsubscribes(
    gateway_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "_PING_INTERVAL", 0.05)
    client = await admin_client(gateway_factory)
    state = state_of(client)
    resp = await client.get("/_admin/api/stream", headers=BEARER)
    await until_connected(resp)
    assert await asyncio.wait_for(resp.content.readline(), 5) == b"\n"  # ends "connected"
    assert await asyncio.wait_for(resp.content.readline(), 5) == b": ping\n"
    assert len(state.streams) == 1
    resp.close()
    for _ in range(200):
        if not state.streams:
            break
        await asyncio.sleep(0.01)
    assert not state.streams
    assert not state.gw.decision_log._subscribers


async def test_stream_ends_on_shutdown(gateway_factory: Callable[..., Any]) -> None:
    client = await admin_client(gateway_factory)
    resp = await client.get("/_admin/api/stream", headers=BEARER)
    await until_connected(resp)
    app = admin_app(client)
    await app.on_shutdown.send(app)
    with pytest.raises(EOFError):
        await read_event(resp)
    assert not state_of(client).streams


async def test_stream_ends_when_the_session_expires(
    gateway_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "_PING_INTERVAL", 0.05)
    client = await admin_client(gateway_factory)
    await client.post("/_admin/login", data={"token": TOKEN})
    assert any(c.key == COOKIE_NAME for c in client.session.cookie_jar)
    resp = await client.get("/_admin/api/stream")
    assert resp.status == 200
    await until_connected(resp)
    state_of(client).auth.clock = lambda: time.time() + 9 * HOUR
    with pytest.raises(EOFError):
        await read_event(resp)
