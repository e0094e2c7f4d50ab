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
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.router.browser_harness import (
    AMPLITUDE,
    GA,
    HITS,
    META,
    MIXPANEL,
    PIXEL,
    REACHES,
    TAGS,
    UNLISTED,
    VENDOR_HOSTS,
    RouterSite,
    Visit,
    answer_banner,
    check_consent_state,
    hit_of,
    readable,
)

if TYPE_CHECKING:
    pass

# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterSite]:
    s = RouterSite(tmp_path_factory.mktemp("router-browser"))
    s.start()
    s.pages["blank"] = s.page()
    try:
        yield s
    finally:
        s.stop()


# -- each consent state ---------------------------------------------------------------------


@pytest.mark.parametrize("state", list(REACHES))
def test_each_vendor_gets_what_the_consent_allows(
    site: RouterSite, visit: Visit, state: str
) -> None:
    check_consent_state(site, visit, state)


def test_unlisted_hosts_are_left_alone_and_reported_once(site: RouterSite, visit: Visit) -> None:
    site.pages["unlisted"] = site.page(
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


# -- every way a page makes a request -----------------------------------------------------

ELEMENTS = """
<script>
const s = document.createElement('script')
s.src = 'https://us-assets.i.posthog.com/static/array.js?k={m}'
document.head.appendChild(s)
const f = document.createElement('iframe')
f.setAttribute('src', 'https://www.facebook.com/tr?id=5&ev=Frame&k={m}')
document.head.appendChild(f)
const l = document.createElement('link')
l.rel = 'stylesheet'
l.href = 'https://cdn.mxpnl.com/libs/site.css?k={m}'
document.head.appendChild(l)
const i = document.createElement('img')
i.srcset = 'https://www.facebook.com/tr?id=6&ev=Srcset&k={m} 1x'
document.head.appendChild(i)
fetch(new URL('https://www.google-analytics.com/g/collect?v=2&tid=G-URL&cid=9.{m}&en=u'),
  {{method: 'POST', mode: 'no-cors'}})
fetch(new Request('https://api2.amplitude.com/2/httpapi', {{method: 'POST',
  headers: {{'Content-Type': 'application/json'}},
  body: JSON.stringify({{api_key: 'k', events: [{{device_id: 'dev-{m}'}}]}})}}))
const x = new XMLHttpRequest()
x.open('POST', 'https://api-js.mixpanel.com/track/?k={m}')
x.setRequestHeader('Content-Type', 'application/x-www-form-urlencoded')
x.send('data=' + encodeURIComponent(JSON.stringify({{event: 'xhr', properties: {{k: '{m}'}}}})))
addEventListener('DOMContentLoaded', () => document.body.insertAdjacentHTML('beforeend',
  '<img alt="" src="https://www.facebook.com/tr?id=7&ev=Inner&k={m}">'))
</script>
"""
#: vendor host and path of each request ELEMENTS makes
ELEMENT_HITS = (
    ("us-assets.i.posthog.com", "/static/array.js"),
    (META, "/tr?id=5&"),
    ("cdn.mxpnl.com", "/libs/site.css"),
    (META, "/tr?id=6&"),
    (GA, "/g/collect?v=2&tid=G-URL&"),
    (AMPLITUDE, "/2/httpapi"),
    (MIXPANEL, "/track/"),
    (META, "/tr?id=7&"),
)


def test_every_kind_of_request_goes_through_the_gateway(site: RouterSite, visit: Visit) -> None:
    """Elements by property and by setAttribute, srcset, markup added later, fetch with a
    Request and a body, XMLHttpRequest: each reaches the gateway, none its vendor direct,
    and bodies arrive whole (consent for everything)."""
    answer_banner(visit, site, "all")
    site.pages["elements"] = site.page(ELEMENTS.format(m="mel"))
    visit.page.goto(f"{site.site}/page/elements")
    for host, path in ELEMENT_HITS:
        visit.wait_answered(site, host, path)
    assert not visit.direct(VENDOR_HOSTS), "a request left the page past the gateway"
    assert '"dev-mel"' in readable(
        site.wait_for(lambda s: s.host == AMPLITUDE and "dev-mel" in readable(s))
    )
    assert '"xhr"' in readable(site.wait_for(lambda s: s.host == MIXPANEL and "mel" in readable(s)))


def test_iframes_can_be_left_alone(site: RouterSite, visit: Visit) -> None:
    site.pages["frames"] = site.page(
        "<script>const f = document.createElement('iframe');"
        " f.src = 'https://www.facebook.com/plugins/page.php?x=frame';"
        " document.head.appendChild(f); new Image().src = 'https://www.facebook.com/tr?x=img'"
        "</script>",
        attrs=" data-no-frames",
    )
    visit.page.goto(f"{site.site}/page/frames")
    visit.wait_answered(site, META, "/tr?x=img")
    visit.wait(lambda: bool(visit.direct((META,))), "the iframe's own request")
    assert [u for u in visit.direct((META,)) if "x=frame" in u]


# -- the client API ------------------------------------------------------------------------

GTAG = (
    "<script>window.dataLayer = [];"
    " function gtag() { dataLayer.push(Array.from(arguments)) }</script>"
)


def test_client_api_records_consent_and_tells_the_page_and_consent_mode(
    site: RouterSite, visit: Visit
) -> None:
    site.pages["api"] = site.page(GTAG)
    visit.page.goto(f"{site.site}/page/api")
    visit.js(
        "() => { window.changes = []; consentGateway.onChange(p => changes.push(['cb', p]));"
        " addEventListener('consentgateway:change', e => changes.push(['event', e.detail])) }"
    )
    first = visit.js("() => consentGateway.get()")
    assert first["analytics"] is None and first["advertising"] is None
    assert first["necessary"] is True

    now = visit.js("() => consentGateway.set({analytics: true, advertising: false})")
    assert now["analytics"] is True and now["advertising"] is False
    assert visit.js("() => changes") == [["cb", now], ["event", now]]
    assert visit.js("() => dataLayer") == [
        [
            "consent",
            "update",
            {
                "ad_personalization": "denied",
                "ad_storage": "denied",
                "ad_user_data": "denied",
                "analytics_storage": "granted",
            },
        ]
    ]
    # the cookie is set: a new page knows
    visit.page.goto(f"{site.site}/page/api")
    assert visit.js("() => consentGateway.get()")["analytics"] is True

    gone = visit.js("() => consentGateway.withdraw()")
    assert gone["analytics"] is False and gone["advertising"] is False
    assert visit.js("() => dataLayer.at(-1)")[2]["analytics_storage"] == "denied"
    assert visit.js("() => consentGateway.get()")["analytics"] is False


# -- hold and replay -------------------------------------------------------------------------

#: five hits to one vendor, in order, by five kinds of request; {m} marks the visit
HELD = """
<script>
const ga = 'https://www.google-analytics.com/g/collect?v=2&tid=G-HOLD&cid=1.2'
const u = (n) => ga + '&en=e' + n + '&ep.seq={m}-' + n
fetch(u(1), {{method: 'POST', mode: 'no-cors', keepalive: true}})
navigator.sendBeacon(u(2))
new Image().src = u(3)
const x = new XMLHttpRequest(); x.open('GET', u(4)); x.send()
fetch(new Request(u(5)))
</script>
"""
SEQ = 5


def _held_page(site: RouterSite, visit: Visit, marker: str) -> None:
    """Open a page whose five hits are held: none left the page."""
    site.pages[marker] = site.page(HELD.format(m=marker), attrs=" data-hold")
    visit.page.goto(f"{site.site}/page/{marker}")
    visit.wait(lambda: visit.js("() => consentGateway.held") == SEQ, "five held hits")
    assert not [u for u in visit.requests if "/t/" in u], "a held hit left the page"


def _seq(site: RouterSite, marker: str) -> list[str]:
    return [
        m
        for s in site.carrying(marker)
        for m in [f"{marker}-{n}" for n in range(1, SEQ + 1)]
        if m in readable(s)
    ]


def test_held_hits_are_sent_on_grant_in_their_order(site: RouterSite, visit: Visit) -> None:
    _held_page(site, visit, "hgrant")
    visit.js("() => consentGateway.set({analytics: true, advertising: true})")
    for n in range(1, SEQ + 1):
        site.wait_carrying(f"hgrant-{n}")
    assert _seq(site, "hgrant") == [f"hgrant-{n}" for n in range(1, SEQ + 1)]
    assert visit.js("() => consentGateway.held") == 0


def test_held_hits_are_discarded_on_denial(site: RouterSite, visit: Visit) -> None:
    _held_page(site, visit, "hdeny")
    visit.js("() => consentGateway.set({analytics: false, advertising: false})")
    assert visit.js("() => consentGateway.held") == 0
    # The answer is in: any replay would have been issued by now, and none was.
    assert not [u for u in visit.requests if "/t/" in u]
    assert _seq(site, "hdeny") == []


def test_held_hits_are_discarded_on_unload(site: RouterSite, visit: Visit) -> None:
    _held_page(site, visit, "hgone")
    visit.page.goto(f"{site.site}/page/blank")
    visit.js("() => consentGateway.set({analytics: true, advertising: true})")
    assert visit.js("() => consentGateway.held") == 0
    assert not [u for u in visit.requests if "/t/" in u]
    assert _seq(site, "hgone") == []


def test_a_tag_that_needs_no_consent_is_never_held(site: RouterSite, visit: Visit) -> None:
    """GTM's loader (its rule asks only `necessary`) loads before the banner is answered."""
    site.pages["gtm"] = site.page(
        "<script>const g = document.createElement('script'); g.async = true;"
        " g.src = 'https://www.googletagmanager.com/gtm.js?id=GTM-HOLD';"
        " document.head.appendChild(g)</script>",
        attrs=" data-hold",
    )
    visit.page.goto(f"{site.site}/page/gtm")
    visit.wait_answered(site, "www.googletagmanager.com", "/gtm.js?id=GTM-HOLD")
    assert site.wait_carrying("GTM-HOLD").path == "/gtm.js"
    assert visit.js("() => consentGateway.held") == 0


def test_hold_is_bounded(site: RouterSite, visit: Visit) -> None:
    site.pages["bounded"] = site.page(
        "<script>for (let i = 0; i < 250; i++) navigator.sendBeacon("
        "'https://www.facebook.com/tr?id=1&ev=B' + i)</script>",
        attrs=" data-hold",
    )
    visit.page.goto(f"{site.site}/page/bounded")
    assert visit.js("() => consentGateway.held") == 200


# -- Service Worker mode ----------------------------------------------------------------------


def test_the_service_worker_routes_what_a_page_script_cannot(
    site: RouterSite, visit: Visit
) -> None:
    """Once the worker (same origin: the site's /cg/) is active, a CSS image, which no
    page script sees, goes through the gateway too."""
    answer_banner(visit, site, "all")
    site.pages["sw"] = site.page(attrs=" data-sw")
    visit.page.goto(f"{site.site}/page/sw")
    visit.wait(lambda: visit.js("() => !!navigator.serviceWorker.controller"), "the worker")
    site.pages["css"] = site.page(
        body='<div style="width:9px;height:9px;background-image:'
        'url(https://www.facebook.com/tr?id=8&ev=Css&k=msw)"></div>',
        attrs=" data-sw",
    )
    visit.page.goto(f"{site.site}/page/css")
    hit = site.wait_carrying("ev=Css&k=msw")
    assert hit.host == META and hit.path == "/tr"


def test_held_hits_are_discarded_on_withdrawal(site: RouterSite, visit: Visit) -> None:
    _held_page(site, visit, "hwithdraw")
    visit.js("() => consentGateway.withdraw()")
    assert visit.js("() => consentGateway.held") == 0
    assert not [u for u in visit.requests if "/t/" in u]
    assert _seq(site, "hwithdraw") == []


def test_sdk_hits_made_before_the_banner_reach_their_vendors_after_the_grant(
    site: RouterSite, visit: Visit
) -> None:
    site.pages["sdkhold"] = site.page(
        TAGS.format(m="mheld"), PIXEL.format(m="mheld"), attrs=" data-hold"
    )
    visit.page.goto(f"{site.site}/page/sdkhold")
    visit.wait(lambda: visit.js("() => consentGateway.held") >= len(HITS), "every tag's hit held")
    assert not [u for u in visit.requests if "/t/" in u], "a held hit left the page"
    visit.js("() => consentGateway.set({analytics: true, advertising: true})")
    for host, (_path, identifier) in HITS.items():
        hit = site.wait_for(hit_of(host, "mheld"))
        assert identifier in readable(hit), host
