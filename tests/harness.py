"""One live gateway for a whole test module: the gateway and a recording fake vendor on
an event loop in a background thread, so synchronous tests (hypothesis, Playwright) can
send real HTTP and read what the vendor received.

Used by the invariant, the corpus and the request fuzzing (one gateway per module: each
example costs one round trip) and by the admin page's browser tests. Every vendor host
it is given goes to the fake vendor; nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import http.client
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from gateway.app import GATEWAY, build_app
from gateway.ruleset.match import RuleSet
from gateway.ruleset.schema import VendorRule
from tests.conftest import Seen, make_config

T = TypeVar("T")


class LiveGateway:
    """`start()`, then `request(...)` from the test thread; `seen` is what reached the
    vendor, in order; `stop()` at the end (a module-scoped fixture)."""

    def __init__(
        self,
        tmp: Path,
        hosts: Iterable[str],
        *,
        extra: dict[str, object] | None = None,
        env: dict[str, str] | None = None,
        rules: RuleSet | None = None,
    ) -> None:
        self.tmp = tmp
        self.hosts = sorted(set(hosts))
        self.extra = extra
        self.env = env
        self.rules = rules
        self.seen: list[Seen] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runners: list[web.AppRunner] = []
        self._app: web.Application | None = None
        self.port = 0

    @property
    def app(self) -> web.Application:
        assert self._app is not None, "start() first"
        return self._app

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        self.run(self._start())

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run `coro` on the gateway's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

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
            raw = request.raw_path.partition("?")[0]
            _, host, rest = raw.split("/", 2)
            self.seen.append(
                Seen(
                    request.method,
                    host,
                    "/" + rest,
                    request.raw_path.partition("?")[2],
                    {k.lower(): v for k, v in request.headers.items()},
                    await request.read(),
                )
            )
            return web.Response(text="ok")

        vendor = web.Application()
        vendor.router.add_route("*", "/{tail:.*}", record)
        vport = await self._serve(vendor)
        overrides = {f"https://{h}": f"http://127.0.0.1:{vport}/{h}" for h in self.hosts}
        cfg = make_config(self.tmp, overrides, self.extra, self.env)
        self._app = build_app(cfg, self.rules)
        self.port = await self._serve(self._app)

    def stop(self) -> None:
        async def _stop() -> None:
            for runner in reversed(self.runners):
                await runner.cleanup()

        try:
            self.run(_stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    def request(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """Send `target` exactly as given (raw path and query, nothing re-encoded)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, target, body=body or None, headers=dict(headers or {}))
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def settle(self) -> None:
        """Wait until every background forward queued so far has been sent (or failed):
        a negative check after this is exact."""

        async def _drain() -> None:
            await self.app[GATEWAY].upstream.drain()

        self.run(_drain())

    def arrived(self, found: Callable[[Seen], bool]) -> Seen | None:
        """The first request the vendor received for which `found` is true, once every
        forward has settled; None if none did."""
        self.settle()
        return next((s for s in list(self.seen) if found(s)), None)

    def wait_for(self, found: Callable[[Seen], bool], timeout: float = 10) -> Seen:
        """The first request `found` accepts, waiting for it (a positive check)."""
        deadline = time.monotonic() + timeout
        while True:
            hit = next((s for s in list(self.seen) if found(s)), None)
            if hit is not None:
                return hit
            if time.monotonic() >= deadline:
                raise AssertionError("the vendor never received the expected request")
            time.sleep(0.005)


# --- the whole catalogue behind one gateway ---------------------------------------------------

#: a query parameter no rule names, carrying a marker that finds a request at the vendor
PROBE = "zz_probe"
#: the header server-to-server events name their subject in (store.subject_header)
SUBJECT_HEADER = "X-Consent-Subject"


def concrete_host(rule: VendorRule) -> str:
    """A host the rule lists: its first exact one, else a name under its first wildcard."""
    for h in rule.hosts:
        if not h.startswith("*."):
            return h
    return "probe" + rule.hosts[0][1:]


def catalogue_gateway(
    tmp: Path, rules: RuleSet, *, hosts_from_examples: bool = False
) -> LiveGateway:
    """Every rule's host (and its examples' hosts, when asked) on the fake vendor, server
    events named by SUBJECT_HEADER: the invariant's, the corpus' and the fuzzer's gateway."""
    hosts = {concrete_host(r) for r in rules.rules}
    if hosts_from_examples:
        hosts |= {ex.host for r in rules.rules for ex in r.examples}
    return LiveGateway(tmp, hosts, extra={"store": {"subject_header": SUBJECT_HEADER}}, rules=rules)


def probed(marker: str) -> Callable[[Seen], bool]:
    """Finds the vendor request that carried `marker` in the PROBE parameter."""
    return lambda s: f"{PROBE}={marker}" in s.query
