"""Helpers for the router's real-browser tests (tests/router/test_browser.py).

- `RouterSite`: tests/harness.py's live gateway (fake vendors for every host the pages
  call) and, on the same event loop, a site: its pages, the vendor SDKs from npm
  (tests/router/sdks, pinned by its lock file) served from node_modules, and the gateway
  behind the site's own `/cg/` path, as a reverse proxy mounts it (the same-origin
  deployment: the page, /cg/cg.js, /cg/consent and /cg/t/... share one origin).
- `Visit`: one page in its own browser context, with every request the page made and
  every answer it got, so a test can wait on "the gateway answered this" before it
  checks what reached a vendor.

Chromium resolves no name but 127.0.0.1 (`--host-resolver-rules`): a request the router
failed to rewrite cannot reach the internet, and shows in `Visit.requests`.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

import aiohttp
from aiohttp import hdrs, web

from tests.conftest import ROOT, Seen
from tests.harness import LiveGateway

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Request, Response

SDKS = ROOT / "tests" / "router" / "sdks" / "node_modules"
#: the path the site's reverse proxy serves the gateway under
MOUNT = "/cg"
#: every vendor host the test pages and their SDKs call: all go to the fake vendor
VENDOR_HOSTS = (
    "us.i.posthog.com",
    "us-assets.i.posthog.com",
    "api-js.mixpanel.com",
    "cdn.mxpnl.com",
    "api2.amplitude.com",
    "sr-client-cfg.amplitude.com",
    "www.google-analytics.com",
    "region1.google-analytics.com",
    "www.facebook.com",
)
#: no name resolves but the machine's own address: nothing can leave for the internet
HOST_RULES = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36"
)
_HOP = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"}
)


class RouterSite(LiveGateway):
    """The live gateway plus a site that proxies `MOUNT` to it. `pages[name]` is served
    at /page/<name>; `reports` are the bodies POSTed to /cg/cg-report."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(
            tmp,
            VENDOR_HOSTS,
            # One forwarding worker: background forwards reach the vendor in the order
            # the gateway received them (hold and replay promises the order).
            extra={"upstream": {"queue_workers": 1}},
        )
        self.pages: dict[str, str] = {}
        self.reports: list[bytes] = []
        self.site_port = 0
        self._session: aiohttp.ClientSession | None = None

    @property
    def site(self) -> str:
        return f"http://127.0.0.1:{self.site_port}"

    def start(self) -> None:
        super().start()
        self.site_port = self.run(self._start_site())

    def stop(self) -> None:
        async def _close() -> None:
            if self._session is not None:
                await self._session.close()

        self.run(_close())
        super().stop()

    async def _start_site(self) -> int:
        # The site's reverse proxy: a test fixture, not gateway code (which sends through
        # gateway.upstream's gate only).
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application()
        app.router.add_get("/page/{name}", self._page)
        app.router.add_get("/sdk/{path:.+}", self._sdk)
        app.router.add_route("*", MOUNT + "/{tail:.*}", self._proxy)
        return await self._serve(app)

    async def _page(self, request: web.Request) -> web.Response:
        html = self.pages.get(request.match_info["name"])
        if html is None:
            raise web.HTTPNotFound()
        return web.Response(text=html, content_type="text/html")

    async def _sdk(self, request: web.Request) -> web.StreamResponse:
        path = (SDKS / request.match_info["path"]).resolve()
        if not path.is_relative_to(SDKS.resolve()) or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={hdrs.CONTENT_TYPE: "text/javascript"})

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        """As nginx's `location /cg/ { proxy_pass http://gateway/; proxy_set_header Host
        $host; }`: the prefix goes, the path and query stay raw, Host is the site's."""
        assert self._session is not None
        raw = request.raw_path[len(MOUNT) :]
        body = await request.read()
        if raw.startswith("/cg-report"):
            self.reports.append(body)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        headers[hdrs.HOST] = request.host
        async with self._session.request(
            request.method,
            f"{self.base_url}{raw}",
            headers=headers,
            data=body or None,
            allow_redirects=False,
        ) as up:
            data = await up.read()
            resp = web.Response(status=up.status, body=data)
            for k, v in up.headers.items():
                if k.lower() not in _HOP:
                    resp.headers.add(k, v)
            return resp

    # -- what reached the vendors ------------------------------------------------------

    def carrying(self, marker: str) -> list[Seen]:
        """Every request the vendors received that carries `marker` anywhere (query,
        body, a form's base64 `data`), once every forward has settled."""
        self.settle()
        return [s for s in list(self.seen) if marker in readable(s)]

    def wait_carrying(self, marker: str, timeout: float = 15) -> Seen:
        return self.wait_for(lambda s: marker in readable(s), timeout)


def readable(s: Seen) -> str:
    """A vendor request as text to search: query and body raw, URL-decoded, and the
    base64 `data` parameters some SDKs send, decoded."""
    body = s.body.decode("utf-8", "replace")
    parts = [s.path, s.query, unquote_plus(s.query), body, unquote_plus(body)]
    for source in (s.query, body):
        for value in parse_qs(source).get("data", []):
            try:
                parts.append(base64.b64decode(value + "=" * (-len(value) % 4)).decode())
            except ValueError:
                pass
    return "\n".join(parts)


@dataclass
class Visit:
    """A page in its own context; what it asked for and what it was answered."""

    context: BrowserContext
    page: Page
    requests: list[str] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, browser: Browser) -> Visit:
        # SDKs ignore headless browsers as bots (posthog-js: "headlesschrome")
        context = browser.new_context(user_agent=USER_AGENT)
        page = context.new_page()
        visit = cls(context, page)

        def on_request(r: Request) -> None:
            visit.requests.append(r.url)

        def on_response(r: Response) -> None:
            visit.answered.append(r.url)

        page.on("request", on_request)
        page.on("response", on_response)
        page.on("pageerror", lambda e: visit.errors.append(str(e)))
        return visit

    def close(self) -> None:
        self.context.close()

    def wait(self, done: Callable[[], bool], what: str, timeout: float = 15) -> None:
        """Poll `done` while the page's own events are delivered (Playwright dispatches
        them only while it is called)."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; requests: {self.requests}")
            self.page.wait_for_timeout(20)

    def wait_answered(self, site: RouterSite, host: str, path: str = "/") -> None:
        """Until the gateway answered a request the page sent it for `host` (under
        `path`): a negative check at the vendor after this and a settle is exact."""
        prefix = f"{site.site}{MOUNT}/t/{host}{path}"
        self.wait(lambda: any(u.startswith(prefix) for u in self.answered), f"{prefix} answered")

    def direct(self, hosts: tuple[str, ...]) -> list[str]:
        """Requests the page sent straight to one of `hosts`, past the gateway."""
        return [u for u in self.requests if urlsplit(u).hostname in hosts]

    def js(self, expression: str, arg: Any = None) -> Any:
        return self.page.evaluate(expression, arg)
