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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

import aiohttp
from aiohttp import hdrs, web

from tests.admin.browser_harness import CHROMIUM, CHROMIUM_ARGS, require_browser
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
    "www.googletagmanager.com",
)
#: the cross-origin deployment's names (every one resolved to 127.0.0.1 by Chromium)
SITE_HOST, GATEWAY_HOST, OTHER_HOST = "www.example.test", "cg.example.test", "evil.example.test"
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36"
)
_HOP = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"}
)


POSTHOG, MIXPANEL, AMPLITUDE = "us.i.posthog.com", "api-js.mixpanel.com", "api2.amplitude.com"
GA, GA_REGION, META = "www.google-analytics.com", "region1.google-analytics.com", "www.facebook.com"
UNLISTED = "tracker.unlisted.test"

#: the tags of the shop page, as a site would have them; {m} marks this visit's hits
TAGS = """
<script src="/sdk/mixpanel-browser/dist/mixpanel.umd.js"></script>
<script src="/sdk/@amplitude/analytics-browser/lib/scripts/amplitude-min.js"></script>
<script type="module">
import posthog from '/sdk/posthog-js/dist/module.full.no-external.js'
posthog.init('phc_{m}', {{api_host: 'https://us.i.posthog.com', disable_compression: true,
  autocapture: false, capture_pageview: false, disable_session_recording: true,
  disable_surveys: true, advanced_disable_flags: true, request_batching: false,
  opt_out_useragent_filter: true}})
posthog.capture('probe', {{probe: '{m}'}})
</script>
<script>
mixpanel.init('mp_{m}', {{batch_requests: false, track_pageview: false}})
mixpanel.track('probe', {{probe: '{m}'}})
amplitude.init('amp_{m}', {{flushQueueSize: 1, flushIntervalMillis: 50,
  autocapture: false, fetchRemoteConfig: false}})
amplitude.track('probe', {{probe: '{m}'}})
fetch('https://www.google-analytics.com/g/collect?v=2&tid=G-TEST&cid=555.{m}&en=page_view',
  {{method: 'POST', mode: 'no-cors', keepalive: true}})
navigator.sendBeacon('https://region1.google-analytics.com/g/collect?v=2&tid=G-TEST&cid=777.{m}&en=scroll')
fetch('https://tracker.unlisted.test/hit?x={m}').catch(() => {{}})
</script>
"""
PAGE = """<!doctype html><html><head><meta charset="utf-8">
<script src="{gateway}/cg.js"{attrs}></script>
{head}
</head><body><h1>Shop</h1>
{body}
</body></html>"""
#: a pixel as Meta's snippet makes it (markup <img> tags: see test_markup_added_later)
PIXEL = (
    "<script>new Image().src = "
    "'https://www.facebook.com/tr?id=123&ev=PageView&cd[probe]={m}'</script>"
)


#: consent state -> the tags whose hits reach their vendor, identifiers and all
REACHES = {
    "none": set[str](),
    "analytics": {POSTHOG, MIXPANEL, AMPLITUDE, GA, GA_REGION},
    "all": {POSTHOG, MIXPANEL, AMPLITUDE, GA, GA_REGION, META},
    "withdrawn": set[str](),
}
#: vendor host -> (path the page's hit goes to, an identifier the hit carries)
HITS = {
    POSTHOG: ("/", '"distinct_id"'),
    MIXPANEL: ("/track", '"distinct_id"'),
    AMPLITUDE: ("/2/httpapi", '"device_id"'),
    GA: ("/g/collect", "cid=555."),
    GA_REGION: ("/g/collect", "cid=777."),
    META: ("/tr", "id=123"),
}


class RouterSite(LiveGateway):
    """The live gateway plus a site that proxies `MOUNT` to it. `pages[name]` is served
    at /page/<name>; `reports` are the bodies POSTed to /cg/cg-report."""

    def __init__(self, tmp: Path, *, cross_origin: bool = False) -> None:
        extra: dict[str, object] = {
            # One forwarding worker: background forwards reach the vendor in the order
            # the gateway received them (hold and replay promises the order).
            "upstream": {"queue_workers": 1},
        }
        if cross_origin:
            extra["server"] = {"admin_port": None, "allowed_origins": [f"http://{SITE_HOST}"]}
        else:
            # the gateway mounted under the site's path, as the reverse proxy serves it
            extra["server"] = {"admin_port": None, "base_path": MOUNT}
        super().__init__(tmp, VENDOR_HOSTS, extra=extra)
        self.cross_origin = cross_origin
        self.pages: dict[str, str] = {}
        self.reports: list[bytes] = []
        self.site_port = 0
        self._session: aiohttp.ClientSession | None = None

    @property
    def site(self) -> str:
        """The site's origin."""
        if self.cross_origin:
            return f"http://{SITE_HOST}"
        return f"http://127.0.0.1:{self.site_port}"

    @property
    def gateway(self) -> str:
        """The gateway's base URL as the site's pages name it."""
        return f"http://{GATEWAY_HOST}" if self.cross_origin else self.site + MOUNT

    def host_rules(self) -> str:
        """Chromium's name resolution: the deployment's names to their servers, every
        other name to nothing, so nothing can leave for the internet."""
        site = f"127.0.0.1:{self.site_port}"
        return (
            f"MAP {SITE_HOST} {site}, MAP {OTHER_HOST} {site}, "
            f"MAP {GATEWAY_HOST} 127.0.0.1:{self.port}, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
        )

    def page(self, head: str = "", body: str = "", attrs: str = "") -> str:
        """A page of the site: /cg.js first in <head>, then `head`."""
        assert self.site_port, "start() first: the page names the servers' ports"
        return PAGE.format(gateway=self.gateway, attrs=attrs, head=head, body=body)

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
        """As nginx's `location /cg/ { proxy_pass http://gateway; proxy_set_header Host
        $host; }` in front of a gateway with `server.base_path: /cg`: the path and query
        go on raw, Host is the site's."""
        assert self._session is not None
        raw = request.raw_path
        body = await request.read()
        if raw.startswith(MOUNT + "/cg-report"):
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
        prefix = f"{site.gateway}/t/{host}{path}"
        self.wait(lambda: any(u.startswith(prefix) for u in self.answered), f"{prefix} answered")

    def direct(self, hosts: tuple[str, ...]) -> list[str]:
        """Requests the page sent straight to one of `hosts`, past the gateway."""
        return [u for u in self.requests if urlsplit(u).hostname in hosts]

    def js(self, expression: str, arg: Any = None) -> Any:
        return self.page.evaluate(expression, arg)


def answer_banner(visit: Visit, site: RouterSite, state: str) -> None:
    """Answer the banner as the visitor would, on a page of the site, before the shop."""
    if state == "none":
        return
    visit.page.goto(f"{site.site}/page/blank")
    grant = {"analytics": True, "advertising": state != "analytics"}
    visit.js("p => consentGateway.set(p)", grant)
    if state == "withdrawn":
        visit.js("() => consentGateway.withdraw()")


def hit_of(host: str, marker: str) -> Callable[[Seen], bool]:
    """The visit's hit at `host`: an SDK's is its `probe` event (not its start-up calls)."""
    sdk = host in (POSTHOG, MIXPANEL, AMPLITUDE)
    return lambda s: s.host == host and marker in (t := readable(s)) and (not sdk or "probe" in t)


def check_consent_state(site: RouterSite, visit: Visit, state: str) -> None:
    """The shop page's tags under `state` (a key of REACHES): each vendor in
    REACHES[state] gets its hit with its identifier, the others nothing, and no request
    leaves the page past the gateway."""
    answer_banner(visit, site, state)
    marker = f"m{state}"
    site.pages[state] = site.page(TAGS.format(m=marker), PIXEL.format(m=marker))
    visit.page.goto(f"{site.site}/page/{state}")
    # Every tag's hit was answered by the gateway: what the vendors got is now known.
    for host, (path, _) in HITS.items():
        visit.wait_answered(site, host, path)
    assert not visit.direct(VENDOR_HOSTS), "a request left the page past the gateway"
    for host, (_path, identifier) in HITS.items():
        if host in REACHES[state]:
            found = site.wait_for(hit_of(host, marker))
            assert identifier in readable(found), (host, readable(found)[:300])
        else:
            assert not [s for s in site.carrying(marker) if s.host == host], (state, host)


@contextmanager
def chromium(host_rules: str) -> Iterator[Browser]:
    """Debian's Chromium for one test module (skips, or fails under CI, without it)."""
    require_browser()
    assert SDKS.is_dir(), "run `make tests/router/sdks/node_modules/.installed` (npm ci)"
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[*CHROMIUM_ARGS, f"--host-resolver-rules={host_rules}"],
            headless=True,
            timeout=30_000,
        )
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()
