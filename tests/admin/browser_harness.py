"""Helpers for the admin page's real-browser tests (tests/admin/test_browser.py).

- `LiveAdminGateway`: tests/harness.py's live gateway with the admin page on, so a
  browser and plain HTTP clients in the test thread can talk to it.
- `browser_problem` / `require_browser`: Debian's Chromium at /usr/bin/chromium, driven
  by Playwright (pip package `playwright`; its own browser download is not used). Under
  CI (`CI=true`) a missing browser is a failure, never a skip.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.app import GATEWAY
from gateway.decision_log.record import DecisionRecord
from gateway.decision_log.sinks import SqliteSink
from tests.conftest import ROOT, store_records
from tests.harness import LiveGateway

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


class LiveAdminGateway(LiveGateway):
    """The shared live gateway (tests/harness.py) with its admin page on, and the
    vendor hosts the browser tests send to on its fake vendor."""

    def __init__(self, tmp: Path, token: str = ADMIN_TOKEN) -> None:
        super().__init__(
            tmp,
            VENDOR_HOSTS,
            # the test server is plain http: a Secure session cookie would never come back
            extra={"admin": {"token_env": ADMIN_TOKEN_ENV, "secure_cookie": False}},
            env={ADMIN_TOKEN_ENV: token},
        )
        self.token = token

    @property
    def vendor_hits(self) -> list[str]:
        """What reached the fake vendor (host and path), once every forward settled."""
        self.settle()
        return [f"/{s.host}{s.path}" for s in self.seen]

    def rule_vendors(self) -> list[str]:
        """The vendors of the rules the gateway has in force (read on its loop)."""

        async def _read() -> list[str]:
            return [r.vendor for r in self.app[GATEWAY].rules.current.rules]

        return self.run(_read(), timeout=10)

    @property
    def log_path(self) -> Path:
        """The gateway's SQLite decision log."""
        path = self.app[GATEWAY].config.decision_log.sqlite_path
        assert path is not None
        return path

    def add_records(self, records: Sequence[DecisionRecord]) -> None:
        """Store records in the gateway's log as its writer would (WAL: both may write)."""
        store_records(self.log_path, records)

    def add_rollups(self, rows: Sequence[tuple[float, str, str, str, str, int]]) -> None:
        """Insert rollup rows, (age in seconds, vendor, action, missing, regime, n)."""
        sink = SqliteSink(self.log_path)
        sink.open()  # the tables, should the writer not have opened the file yet
        sink.close()
        now = time.time()
        with contextlib.closing(sqlite3.connect(self.log_path, timeout=5.0)) as conn, conn:
            conn.executemany(
                "INSERT INTO rollups VALUES (?, ?, ?, ?, ?, ?)",
                [(int(now - age) // 60 * 60, v, a, m, r, n) for age, v, a, m, r, n in rows],
            )

    def send(self, target: str) -> int:
        """A visitor's tag request (no consent cookie, no country: the opt-in default)."""
        return self.request("GET", target, headers={"User-Agent": "browser-test"})[0]

    def api_records(self, query: str = "") -> list[dict[str, Any]]:
        """The admin JSON API's records, with the bearer token."""
        status, body = self.request(
            "GET",
            "/_admin/api/records" + (f"?{query}" if query else ""),
            headers={"Authorization": f"Bearer {self.token}"},
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
