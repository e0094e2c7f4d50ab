"""The admin's live tail: `api/stream`, Server-Sent Events of new decision-log records.

Each connection subscribes to the decision log (`DecisionLog.subscribe`) for as long
as it lasts, and ends when the session expires or the gateway shuts down
(`stop_streams`, on the sub-app's shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
from types import MappingProxyType
from typing import Final

import orjson
from aiohttp import hdrs, web

from gateway.admin.answers import ACCESS, ADMIN, secure
from gateway.admin.api import bad_parameter
from gateway.admin.params import BadParameter, record_filters
from gateway.decision_log.record import DecisionRecord, record_to_dict

__all__ = ["Stream", "api_stream", "stop_streams"]

#: seconds between two keep-alive comments on the live stream
_PING_INTERVAL = 15.0


class Stream:
    """One live-tail connection: its subscription and a way to end it from outside."""

    __slots__ = ("queue", "stopping")

    def __init__(self, queue: asyncio.Queue[DecisionRecord]) -> None:
        self.queue = queue
        self.stopping = False

    def stop(self) -> None:
        self.stopping = True
        # A full queue wakes the stream anyway; it sees `stopping` after that record.
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(_WAKE)


#: put in a stream's queue to wake it up (compared by identity, never sent)
_WAKE: Final = DecisionRecord(
    ts=0.0,
    request_id="",
    action="",
    vendor=None,
    endpoint=None,
    missing=(),
    sources=MappingProxyType({}),
    regime=None,
    method="",
    host="",
    path="",
    stripped=(),
    reason="",
)


async def stop_streams(app: web.Application) -> None:
    """On shutdown, end live tails at once rather than at the shutdown timeout."""
    for stream in list(app[ADMIN].streams):
        stream.stop()


async def api_stream(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: `data: <record_to_dict JSON>` per record submitted from now
    on that matches the optional `vendor`/`action`/`purpose`/`regime` filters; a
    `: ping` comment every 15 s. Ends when the session expires or the gateway stops.

    A tail that falls behind loses records (`DecisionLog.subscribe`), never slows
    the gateway. orjson escapes every control character, so a record is one line.
    """
    state = request.app[ADMIN]
    try:
        f = record_filters(request, any_time=True)
    except BadParameter as e:
        return bad_parameter(e)
    session = request[ACCESS].session
    resp = web.StreamResponse(
        headers={
            hdrs.CONTENT_TYPE: "text/event-stream; charset=utf-8",
            hdrs.CACHE_CONTROL: "no-store",
            "X-Accel-Buffering": "no",  # nginx: pass events on at once
        }
    )
    secure(resp)
    stream = Stream(state.gw.decision_log.subscribe())
    state.streams.add(stream)
    try:
        await resp.prepare(request)
        await resp.write(b"retry: 5000\n: connected\n\n")
        while not stream.stopping:
            wait = _PING_INTERVAL
            if session is not None:
                wait = min(wait, session.expires - state.auth.clock())
                if wait <= 0:
                    break
            try:
                async with asyncio.timeout(wait):
                    record = await stream.queue.get()
            except TimeoutError:
                await resp.write(b": ping\n\n")
                continue
            if record is _WAKE or not f.matches(record):
                continue
            await resp.write(b"data: " + orjson.dumps(record_to_dict(record)) + b"\n\n")
    except ConnectionResetError:
        pass  # the browser went away
    finally:
        state.gw.decision_log.unsubscribe(stream.queue)
        state.streams.discard(stream)
    return resp
