"""Helpers for the admin page's real-browser tests (tests/admin/test_browser.py).

- `LiveAdminGateway`: a real gateway (admin page on) and a recording fake vendor,
  served on 127.0.0.1 from an event loop in a background thread, so a browser and
  plain HTTP clients in the test thread can talk to it.
- `browser_problem` / `require_browser`: Debian's Chromium at /usr/bin/chromium, driven
  by Playwright (pip package `playwright`; its own browser download is not used). Under
  CI (`CI=true`) a missing browser is a failure, never a skip.
"""

from __future__ import annotations

import asyncio
import http.client
import importlib.util
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from gateway.app import GATEWAY, build_app
from tests.conftest import ROOT, make_config

CHROMIUM = Path("/usr/bin/chromium")
#: flags that work on this machine's closed network (no sandbox: CI runs as root)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts" / "admin"
ADMIN_TOKEN = "browser-test-admin-token-0123456789"
ADMIN_TOKEN_ENV = "CG_TEST_ADMIN"
#: vendor hosts the tests send to; each goes to the fake vendor, never the internet
VENDOR_HOSTS = (
    "www.google-analytics.com",
    "region1.google-analytics.com",
    "www.facebook.com",
    "analytics.tiktok.com",
)


def browser_problem() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    missing = []
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(
            f"{CHROMIUM} is missing: install Debian's chromium "
            "(as root: apt-get update -qq && apt-get install -y -qq chromium; .ci/run does)"
        )
    if importlib.util.find_spec("playwright") is None:
        missing.append(
            "the Python package `playwright` is missing: install the dev extras "
            "(pip install -e '.[dev]'; never `playwright install`, Debian's chromium is used)"
        )
    return "; ".join(missing) or None


def require_browser() -> None:
    """Fail (under CI) or skip (locally) when Chromium or Playwright is missing."""
    problem = browser_problem()
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"admin browser tests cannot run under CI: {problem}", pytrace=False)
    pytest.skip(f"admin browser tests need a browser: {problem}")


class LiveAdminGateway:
    """A gateway with its admin page, and a recording fake vendor, on a background loop."""

    def __init__(self, tmp: Path, token: str = ADMIN_TOKEN) -> None:
        self.tmp = tmp
        self.token = token
        self.vendor_hits: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="live-admin-gateway", daemon=True
        )
        self.runners: list[web.AppRunner] = []
        self.app: web.Application | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)

    async def _serve(self, app: web.Application) -> int:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self.runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        return int(server.sockets[0].getsockname()[1])

    async def _start(self) -> None:
        async def record(request: web.Request) -> web.Response:
            self.vendor_hits.append(request.raw_path)
            return web.Response(text="ok")

        vendor = web.Application()
        vendor.router.add_route("*", "/{tail:.*}", record)
        vport = await self._serve(vendor)
        overrides = {f"https://{h}": f"http://127.0.0.1:{vport}/{h}" for h in VENDOR_HOSTS}
        cfg = make_config(
            self.tmp,
            overrides,
            # the test server is plain http: a Secure session cookie would never come back
            {"admin": {"token_env": ADMIN_TOKEN_ENV, "secure_cookie": False}},
            env={ADMIN_TOKEN_ENV: self.token},
        )
        assert cfg.admin.token == self.token
        self.app = build_app(cfg)
        self.port = await self._serve(self.app)

    def rule_vendors(self) -> list[str]:
        """The vendors of the rules the gateway has in force (read on its loop)."""

        async def _read() -> list[str]:
            assert self.app is not None
            return [r.vendor for r in self.app[GATEWAY].rules.current.rules]

        return asyncio.run_coroutine_threadsafe(_read(), self.loop).result(10)

    def stop(self) -> None:
        async def _stop() -> None:
            for runner in reversed(self.runners):
                await runner.cleanup()

        try:
            asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    # -- plain HTTP from the test thread --------------------------------------------------

    def request(
        self, method: str, target: str, headers: Mapping[str, str] | None = None
    ) -> tuple[int, bytes]:
        """Send `target` exactly as given (raw path and query, nothing re-encoded)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, target, headers=dict(headers or {}))
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def send(self, target: str) -> int:
        """A visitor's tag request (no consent cookie, no country: the opt-in default)."""
        return self.request("GET", target, {"User-Agent": "browser-test"})[0]

    def api_records(self, query: str = "") -> list[dict[str, Any]]:
        """The admin JSON API's records, with the bearer token."""
        status, body = self.request(
            "GET",
            "/_admin/api/records" + (f"?{query}" if query else ""),
            {"Authorization": f"Bearer {self.token}"},
        )
        assert status == 200, f"GET /_admin/api/records answered {status}: {body[:200]!r}"
        doc = orjson.loads(body)
        records = doc.get("records") if isinstance(doc, dict) else None
        assert isinstance(records, list), f"unexpected /_admin/api/records body: {body[:200]!r}"
        return records

    def wait_for_records(
        self,
        done: Callable[[list[dict[str, Any]]], bool],
        query: str = "limit=1000",
        timeout: float = 10,
    ) -> list[dict[str, Any]]:
        """Poll the JSON API until `done(records)` (the log writes in batches)."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.api_records(query)
            if done(records):
                return records
            if time.monotonic() > deadline:
                raise AssertionError(f"records not logged within {timeout}s: {records[:5]}")
            time.sleep(0.05)


def count(records: list[dict[str, Any]], **match: str) -> int:
    """How many `records` have every given field equal to its value."""
    return sum(all(r.get(k) == v for k, v in match.items()) for r in records)


def screenshot_path(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{name}.png"
