"""Forwarding to vendors: one shared ClientSession, a bounded background queue.

This is the one boundary where `aiohttp.ClientError` and `TimeoutError` are
mapped to the gateway's `UpstreamError` (see errors.py). Nothing here decides
anything: it sends what `transform` built, to where config says.

- `Upstream.url_for(out)` builds the vendor URL (https, the rule's host), or the
  configured override's base URL. Only config can redirect a vendor origin.
- `Upstream.open(out)` sends synchronously and returns the response for
  streaming back (scripts, APIs).
- `Upstream.enqueue(out)` hands a beacon or pixel to background workers; a
  full queue drops it, counts it and logs it (rate-limited), never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import yarl

from gateway.config import UpstreamConfig
from gateway.errors import UpstreamError, UpstreamTimeout
from gateway.metrics import Metrics
from gateway.model import Outgoing

__all__ = ["Upstream"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Job:
    out: Outgoing
    vendor: str
    queued_at: float


class Upstream:
    """The gateway's only HTTP client. Create inside a running loop; `close()` on shutdown."""

    def __init__(self, cfg: UpstreamConfig, metrics: Metrics) -> None:
        self._cfg = cfg
        self._metrics = metrics
        self._session: aiohttp.ClientSession | None = None
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=cfg.queue_size)
        self._workers: list[asyncio.Task[None]] = []
        self._dropped_since_warning = 0
        self._last_warning = 0.0
        self._closing = False

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self._cfg.max_connections, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=self._cfg.total_timeout, connect=self._cfg.connect_timeout
            ),
            # SECURITY: one session serves every visitor; a cookie jar would hand one
            # visitor's vendor cookies to the next.
            cookie_jar=aiohttp.DummyCookieJar(),
            # Bytes pass through as the vendor encoded them (Content-Encoding kept).
            auto_decompress=False,
            # A stripped User-Agent must stay stripped, not become "Python/aiohttp".
            skip_auto_headers=("User-Agent",),
            trust_env=False,
        )
        loop = asyncio.get_running_loop()
        self._workers = [
            loop.create_task(self._worker(), name=f"forward-worker-{i}")
            for i in range(self._cfg.queue_workers)
        ]

    async def close(self, drain_timeout: float = 5.0) -> None:
        """Finish queued forwards (up to `drain_timeout` seconds), then close the session."""
        self._closing = True
        if self._workers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), drain_timeout)
            left = self._queue.qsize()
            if left:
                self._metrics.queue_dropped.inc(left)
                log.warning("shutdown: %d queued forwards abandoned", left)
            for w in self._workers:
                w.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
            self._workers = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def url_for(self, out: Outgoing) -> yarl.URL:
        """Where `out` goes: https://{host}{path}?{query}, unless config overrides the origin."""
        path = out.path if out.path.startswith("/") else "/" + out.path
        tail = path + ("?" + out.query if out.query else "")
        base = self._cfg.overrides.get(f"https://{out.host}")
        if base is None:
            # SECURITY: the host comes from the rule index (validated), never a raw request;
            # building with host= keeps the path from ever becoming an authority.
            return yarl.URL.build(
                scheme="https",
                host=out.host,
                path=path,
                query_string=out.query,
                encoded=True,
            )
        return yarl.URL(str(base).rstrip("/") + tail, encoded=True)

    @contextlib.asynccontextmanager
    async def open(self, out: Outgoing, vendor: str) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send `out` and yield the vendor's response (body unread, for streaming).

        Raises UpstreamError (or UpstreamTimeout) for every failure to get a
        response; the caller answers the visitor itself. Redirects are not followed.
        """
        session = self._session
        if session is None:
            raise UpstreamError("closed", "upstream is not running")
        started = time.perf_counter()
        try:
            async with session.request(
                out.method,
                self.url_for(out),
                headers=list(out.headers),
                data=out.body or None,
                allow_redirects=False,
            ) as resp:
                self._metrics.upstream_seconds.labels(vendor).observe(time.perf_counter() - started)
                if resp.status >= 500:
                    self._metrics.upstream_errors.labels("status").inc()
                yield resp
        except TimeoutError as e:
            self._metrics.upstream_errors.labels("timeout").inc()
            raise UpstreamTimeout(f"{vendor}: no answer in time") from e
        except aiohttp.ClientConnectionError as e:
            self._metrics.upstream_errors.labels("connect").inc()
            raise UpstreamError("connect", f"{vendor}: {type(e).__name__}") from e
        except aiohttp.ClientError as e:
            self._metrics.upstream_errors.labels("other").inc()
            raise UpstreamError("other", f"{vendor}: {type(e).__name__}") from e

    async def ws_connect(self, url: yarl.URL, out: Outgoing) -> aiohttp.ClientWebSocketResponse:
        """Open a WebSocket to the vendor with `out`'s (already filtered) headers.

        Raises UpstreamError for every failure to connect.
        """
        session = self._session
        if session is None:
            raise UpstreamError("closed", "upstream is not running")
        try:
            return await session.ws_connect(
                url,
                headers=[(k, v) for k, v in out.headers if k.lower() != "content-type"],
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
                autoping=True,
            )
        except TimeoutError as e:
            self._metrics.upstream_errors.labels("timeout").inc()
            raise UpstreamTimeout("websocket: no answer in time") from e
        except aiohttp.ClientError as e:
            self._metrics.upstream_errors.labels("connect").inc()
            raise UpstreamError("connect", f"websocket: {type(e).__name__}") from e

    def enqueue(self, out: Outgoing, vendor: str) -> bool:
        """Queue `out` for background sending. Never blocks; False if the queue is full."""
        if self._closing:
            self._count_drop()
            return False
        try:
            self._queue.put_nowait(_Job(out, vendor, time.monotonic()))
        except asyncio.QueueFull:
            self._count_drop()
            return False
        self._metrics.queue_depth.set(self._queue.qsize())
        return True

    def _count_drop(self) -> None:
        self._metrics.queue_dropped.inc()
        self._dropped_since_warning += 1
        now = time.monotonic()
        if now - self._last_warning >= 10.0:
            log.warning(
                "background forward queue full: %d request(s) not forwarded",
                self._dropped_since_warning,
            )
            self._last_warning = now
            self._dropped_since_warning = 0

    async def _worker(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                async with self.open(job.out, job.vendor) as resp:
                    await resp.read()  # release the connection for reuse
            except UpstreamError as e:
                log.info("background forward failed: %s (%s)", e.kind, job.vendor)
            except Exception:
                log.exception("background forward crashed (%s)", job.vendor)
            finally:
                self._queue.task_done()
                self._metrics.queue_depth.set(self._queue.qsize())
