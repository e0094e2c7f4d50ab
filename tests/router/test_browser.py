"""/cg.js in a real browser: Debian's Chromium driven by Playwright, on a page whose tags
are unmodified (three vendor SDKs from npm, a pixel <img>, a fetch and a sendBeacon) and
whose only addition is `<script src="/cg/cg.js">` first in <head>.

The site serves the gateway under its own /cg/ path (the same-origin deployment,
tests/router/browser_harness.py); every vendor is a local fake. For each consent state
the tests assert what reached each vendor; hold and replay is tested on plain tags.

Without /usr/bin/chromium or the `playwright` package these tests skip locally and FAIL
under CI (`CI=true`), as the admin page's browser tests do.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from tests.admin.browser_harness import CHROMIUM, CHROMIUM_ARGS, require_browser
from tests.conftest import Seen
from tests.router.browser_harness import (
    HOST_RULES,
    MOUNT,
    SDKS,
    VENDOR_HOSTS,
    RouterSite,
    Visit,
    readable,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser

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
<script src="{mount}/cg.js"{attrs}></script>
{head}
</head><body><h1>Shop</h1>
{body}
</body></html>"""
#: a pixel as Meta's snippet makes it (markup <img> tags: see test_markup_added_later)
PIXEL = (
    "<script>new Image().src = "
    "'https://www.facebook.com/tr?id=123&ev=PageView&cd[probe]={m}'</script>"
)


def _page(head: str = "", body: str = "", attrs: str = "") -> str:
    return PAGE.format(mount=MOUNT, attrs=attrs, head=head, body=body)


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_browser()
    assert SDKS.is_dir(), "run `make tests/router/sdks/node_modules/.installed` (npm ci)"
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[*CHROMIUM_ARGS, HOST_RULES],
            headless=True,
            timeout=30_000,
        )
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


@pytest.fixture(scope="module")
def site(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterSite]:
    s = RouterSite(tmp_path_factory.mktemp("router-browser"))
    s.pages["blank"] = _page()
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def visit(browser: Browser) -> Iterator[Visit]:
    v = Visit.open(browser)
    try:
        yield v
    finally:
        v.close()


def _consent(visit: Visit, site: RouterSite, state: str) -> None:
    """Answer the banner as the visitor would, on a page of the site, before the shop."""
    if state == "none":
        return
    visit.page.goto(f"{site.site}/page/blank")
    grant = {"analytics": True, "advertising": state != "analytics"}
    visit.js("p => consentGateway.set(p)", grant)
    if state == "withdrawn":
        visit.js("() => consentGateway.withdraw()")


# -- each consent state ---------------------------------------------------------------------

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


@pytest.mark.parametrize("state", list(REACHES))
def test_each_vendor_gets_what_the_consent_allows(
    site: RouterSite, visit: Visit, state: str
) -> None:
    _consent(visit, site, state)
    marker = f"m{state}"
    site.pages[state] = _page(TAGS.format(m=marker), PIXEL.format(m=marker))
    visit.page.goto(f"{site.site}/page/{state}")
    # Every tag's hit was answered by the gateway: what the vendors got is now known.
    for host, (path, _) in HITS.items():
        visit.wait_answered(site, host, path)
    assert not visit.direct(VENDOR_HOSTS), "a request left the page past the gateway"
    for host, (_path, identifier) in HITS.items():
        if host in REACHES[state]:
            hit = site.wait_for(_hit_of(host, marker))
            assert identifier in readable(hit), (host, readable(hit)[:300])
        else:
            assert not [s for s in site.carrying(marker) if s.host == host], (state, host)


def _hit_of(host: str, marker: str) -> Callable[[Seen], bool]:
    """The visit's hit at `host`: an SDK's is its `probe` event (not its start-up calls)."""
    sdk = host in (POSTHOG, MIXPANEL, AMPLITUDE)
    return lambda s: s.host == host and marker in (t := readable(s)) and (not sdk or "probe" in t)


def test_unlisted_hosts_are_left_alone_and_reported_once(site: RouterSite, visit: Visit) -> None:
    site.pages["unlisted"] = _page(
        "<script>for (let i = 0; i < 3; i++) fetch('https://tracker.unlisted.test/p?i=' + i)"
        ".catch(() => {})</script>"
    )
    visit.page.goto(f"{site.site}/page/unlisted?secret=1")
    mine = {"kind": "unlisted", "host": UNLISTED, "page": "/page/unlisted"}
    visit.wait(lambda: len(visit.direct((UNLISTED,))) == 3, "the three fetches")
    visit.wait(lambda: mine in _reports(site), "the report")
    # once per host per page, without the query; left alone: sent as written
    assert _reports(site).count(mine) == 1
    assert not [u for u in visit.requests if f"/t/{UNLISTED}/" in u]


def _reports(site: RouterSite) -> list[object]:
    return [json.loads(r) for r in list(site.reports)]
