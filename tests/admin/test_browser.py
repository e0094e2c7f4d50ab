"""The operators' admin page (/_admin/) in a real browser: Debian's Chromium driven by
Playwright against a real gateway on 127.0.0.1.

One gateway and one browser per module; each test opens its own browser context and
leaves a full-page screenshot under test-artifacts/admin/. Visitor traffic is sent
with http.client from the test thread, as a site's pages would send it (no consent
cookie, no country: the default opt-in regime, so tracking requests are dropped).

Without /usr/bin/chromium or the `playwright` package these tests skip locally and
FAIL under CI (`CI=true`); see tests/admin/browser_harness.py.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from tests.admin.browser_harness import (
    CHROMIUM,
    CHROMIUM_ARGS,
    LiveAdminGateway,
    count,
    require_browser,
    screenshot_path,
)
from tests.conftest import make_record

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

GA4 = "google-analytics-4"
META = "meta-pixel"
TIKTOK = "tiktok-pixel"
GA4_HIT = "/t/www.google-analytics.com/g/collect?v=2&tid=G-X&cid=1.2&en=page_view"
META_HIT = "/t/www.facebook.com/tr?id=1&ev=PageView"
TIKTOK_HIT = "/t/analytics.tiktok.com/i18n/pixel/events.js?sdkid=C4ABCDEFGH&lib=ttq"
UNKNOWN_HOST = "evil.example"
SCRIPT = "<script>alert(1)</script>"
#: an element that would run script as soon as it is parsed into the DOM (innerHTML too)
IMG = "<img/src/onerror=alert(2)>"
#: sent raw (http.client does not re-encode): the log keeps the path as the visitor sent it
XSS_HIT = f"/t/xss.example/{SCRIPT}"
XSS_LIVE_HIT = f"/t/xss.example/{IMG}"
SENT = {GA4: 3, META: 2, UNKNOWN_HOST: 3}
TIMEOUT_MS = 10_000
#: `#live-status` once the live tail's EventSource is open
LIVE = re.compile(r"^\s*live\s*$", re.IGNORECASE)


@dataclass
class Tab:
    """A page in its own browser context, and the dialogs (alert, confirm) it raised."""

    page: Page
    dialogs: list[str] = field(default_factory=list)

    def shot(self, name: str) -> Path:
        path = screenshot_path(name)
        self.page.screenshot(path=str(path), full_page=True)
        return path


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_browser()
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, timeout=30_000
        )
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


@pytest.fixture(scope="module")
def gateway(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveAdminGateway]:
    gw = LiveAdminGateway(tmp_path_factory.mktemp("admin-browser"))
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def seeded(gateway: LiveAdminGateway) -> list[dict[str, Any]]:
    """Drops for two vendors, rejects to an unknown host and one path carrying a script
    tag, all in the decision log (read back through the JSON API) before any test looks."""
    for _ in range(SENT[GA4]):
        assert gateway.send(GA4_HIT) < 300  # dropped: answered locally, nothing forwarded
    for _ in range(SENT[META]):
        assert gateway.send(META_HIT) < 300
    for i in range(SENT[UNKNOWN_HOST]):
        assert gateway.send(f"/t/{UNKNOWN_HOST}/x?n={i}") == 404
    assert gateway.send(XSS_HIT) == 404
    records = gateway.wait_for_records(
        lambda rs: (
            count(rs, vendor=GA4, action="drop") >= SENT[GA4]
            and count(rs, vendor=META, action="drop") >= SENT[META]
            and count(rs, host=UNKNOWN_HOST, action="reject") >= SENT[UNKNOWN_HOST]
            and any(SCRIPT in r.get("path", "") for r in rs)
        )
    )
    assert not gateway.vendor_hits, "a request without consent reached a vendor"
    return records


@dataclass(frozen=True)
class Consented:
    """A visitor who answered the banner, then changed one purpose through a CMP."""

    subject: str
    record_ids: tuple[int, ...]


NOTICE = "We count visits with analytics."


def _post_consent(
    gateway: LiveAdminGateway, body: dict[str, Any], cookie: str | None
) -> tuple[dict[str, Any], str]:
    """POST /consent as a site's banner would: the answer, and the cookie it set."""
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        headers = {"Content-Type": "application/json", **({"Cookie": cookie} if cookie else {})}
        conn.request("POST", "/consent", body=orjson.dumps(body), headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        assert resp.status == 200, data[:200]
        set_cookie = resp.getheader("Set-Cookie")
        assert set_cookie, "POST /consent set no cookie"
        doc: dict[str, Any] = orjson.loads(data)
        return doc, set_cookie.split(";", 1)[0]
    finally:
        conn.close()


@pytest.fixture(scope="module")
def consented(gateway: LiveAdminGateway) -> Consented:
    first, cookie = _post_consent(
        gateway, {"purposes": {"analytics": True, "advertising": False}, "notice": NOTICE}, None
    )
    second, _ = _post_consent(gateway, {"purposes": {"advertising": True}, "source": "cmp"}, cookie)
    assert second["subject"] == first["subject"]  # the cookie names the same visitor
    return Consented(first["subject"], (first["record"]["id"], second["record"]["id"]))


def _open_tab(browser: Browser, gateway: LiveAdminGateway, **context: Any) -> Tab:
    ctx = browser.new_context(
        base_url=gateway.base_url, viewport={"width": 1280, "height": 900}, **context
    )
    ctx.set_default_timeout(TIMEOUT_MS)
    tab = Tab(ctx.new_page())

    def on_dialog(dialog: Any) -> None:
        tab.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    tab.page.on("dialog", on_dialog)
    return tab


def _login(tab: Tab, token: str) -> int:
    """Log in through the form as an operator would; the status of the form's POST."""
    page = tab.page
    page.goto("/_admin/login")
    page.locator("form#login input[name=token]").fill(token)
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/_admin/login")
    ) as posted:
        page.locator("form#login button[type=submit], form#login input[type=submit]").first.click()
    resp = posted.value
    page.wait_for_load_state()
    headers = resp.request.all_headers()
    assert resp.status != 403, (
        f"the browser's own login POST was refused ({page.locator('main').inner_text()!r}); "
        f"it sent Origin: {headers.get('origin')!r}, "
        f"Sec-Fetch-Site: {headers.get('sec-fetch-site')!r} "
        "(Chromium sends `Origin: null` on a same-origin POST from a page served with "
        "`Referrer-Policy: no-referrer`)"
    )
    return resp.status


@pytest.fixture(scope="module")
def session_state(browser: Browser, gateway: LiveAdminGateway) -> dict[str, Any]:
    """A logged-in browser's cookies, logged in once through the form."""
    tab = _open_tab(browser, gateway)
    try:
        _login(tab, gateway.token)
        tab.page.wait_for_url(f"{gateway.base_url}/_admin/")
        state: dict[str, Any] = dict(tab.page.context.storage_state())
        return state
    finally:
        tab.page.context.close()


@pytest.fixture
def anon(browser: Browser, gateway: LiveAdminGateway) -> Iterator[Tab]:
    """A browser tab without an admin session."""
    tab = _open_tab(browser, gateway)
    try:
        yield tab
    finally:
        tab.page.context.close()
    assert not tab.dialogs, f"a dialog fired: {tab.dialogs}"


@pytest.fixture
def admin(
    browser: Browser, gateway: LiveAdminGateway, session_state: dict[str, Any]
) -> Iterator[Tab]:
    """A browser tab logged in to the admin page."""
    tab = _open_tab(browser, gateway, storage_state=session_state)
    try:
        yield tab
    finally:
        tab.page.context.close()
    assert not tab.dialogs, f"a dialog fired: {tab.dialogs}"


def _texts(page: Page, selector: str) -> list[str]:
    return [t.strip() for t in page.locator(selector).all_inner_texts()]


def _vendors(page: Page) -> list[str]:
    """The vendor of each row: `td.vendor` reads `vendor/endpoint`, or
    `(unknown destination)` for a reject."""
    return [t.split("/", 1)[0] for t in _texts(page, "table#records tbody tr.record td.vendor")]


def _vendor_cell(vendor: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*{re.escape(vendor)}(/[^/\s]+)?\s*$")


def _path_of(page: Page) -> str:
    return re.sub(r"^https?://[^/]+", "", page.url)


# -- tests ---------------------------------------------------------------------------------


def test_login(anon: Tab, gateway: LiveAdminGateway) -> None:
    from playwright.sync_api import expect

    page = anon.page
    # Without a session, pages redirect to the login form and the API answers 401.
    page.goto("/_admin/rules")
    expect(page).to_have_url(re.compile(r"/_admin/login"))
    assert gateway.request("GET", "/_admin/api/records")[0] == 401
    expect(page.locator("form#login input[name=token]")).to_be_visible()
    anon.shot("login")

    # A wrong token: an error, and still the login page.
    _login(anon, "not-the-admin-token-at-all")
    expect(page).to_have_url(re.compile(r"/_admin/login"))
    expect(page.locator("form#login input[name=token]")).to_be_visible()
    error = page.locator(".error, [role=alert], #error").first
    expect(error).to_be_visible()
    anon.shot("login-wrong-token")
    assert not page.context.cookies(), "a wrong token got a cookie"

    # The right token: a session cookie (HttpOnly, admin paths only) and the Blocked page.
    assert 300 <= _login(anon, gateway.token) < 400
    expect(page).to_have_url(f"{gateway.base_url}/_admin/")
    cookies = page.context.cookies()
    assert len(cookies) == 1 and cookies[0]["httpOnly"], cookies
    assert cookies[0]["path"].startswith("/_admin"), cookies
    expect(page.locator("table#groups")).to_be_visible()
    expect(page.locator("form#filters")).to_be_visible()
    for href in (
        "/_admin/",
        "/_admin/overview",
        "/_admin/rules",
        "/_admin/unknown",
        "/_admin/subjects",
    ):
        expect(page.locator(f'a[href="{href}"]').first).to_be_visible()
    anon.shot("blocked")

    # Logging out ends the session: back to the login form, and pages redirect there again.
    page.locator("form#logout button[type=submit], form#logout input[type=submit]").first.click()
    expect(page).to_have_url(re.compile(r"/_admin/login"))
    page.goto("/_admin/")
    expect(page).to_have_url(re.compile(r"/_admin/login"))


def test_filter_blocked_by_vendor(admin: Tab, seeded: list[dict[str, Any]]) -> None:
    from playwright.sync_api import expect

    page = admin.page
    page.goto("/_admin/?view=records")
    rows = page.locator("table#records tbody tr.record")
    expect(rows.first).to_be_visible()
    vendors = _vendors(page)
    assert vendors.count(GA4) >= SENT[GA4] and vendors.count(META) >= SENT[META], vendors
    actions = _texts(page, "table#records tbody tr.record td.action")
    assert "drop" in actions and "reject" in actions, actions

    form = page.locator("form#filters")
    expect(form.locator("input[name=since]")).to_be_visible()
    form.locator("select[name=vendor]").select_option(META)
    with page.expect_navigation():
        form.locator("button[type=submit], input[type=submit]").first.click()
    assert "vendor=" + META in page.url, page.url

    vendors = _vendors(page)
    assert len(vendors) >= SENT[META], vendors
    assert set(vendors) == {META}, vendors
    assert GA4 not in page.locator("table#records").inner_text()
    # the filter stays chosen after the reload
    expect(form.locator("select[name=vendor]")).to_have_value(META)
    admin.shot("blocked-filtered-meta")

    # and the action filter: rejects only
    form.locator("select[name=vendor]").select_option("")
    form.locator("select[name=action]").select_option("reject")
    with page.expect_navigation():
        form.locator("button[type=submit], input[type=submit]").first.click()
    actions = _texts(page, "table#records tbody tr.record td.action")
    assert actions and set(actions) == {"reject"}, actions
    assert UNKNOWN_HOST in _texts(page, "table#records tbody tr.record td.host")


def test_live_record_appears(
    admin: Tab, gateway: LiveAdminGateway, seeded: list[dict[str, Any]]
) -> None:
    from playwright.sync_api import expect

    page = admin.page
    page.goto("/_admin/?view=records")
    expect(page.locator("#live-status")).to_have_text(LIVE)
    assert page.locator("tr.record.live").count() == 0
    page.evaluate("() => { window.__sameDocument = true; }")

    assert gateway.send(TIKTOK_HIT) in (200, 204)
    live = page.wait_for_selector("table#records tr.record.live", timeout=5_000)
    assert live is not None
    row = page.locator("table#records tr.record.live").first
    expect(row.locator("td.vendor")).to_have_text(_vendor_cell(TIKTOK))
    expect(row.locator("td.action")).to_have_text("drop")
    # the host as the server renders it: whole labels, a break only after a dot
    assert row.locator("td.host .label").all_inner_texts() == ["analytics", "tiktok", "com"]
    assert row.locator("td").count() == page.locator("table#records thead th").count()
    # prepended, in the same document (no reload)
    expect(page.locator("table#records tbody tr.record").first).to_have_class(
        re.compile(r"\blive\b")
    )
    assert page.evaluate("() => window.__sameDocument === true"), "the page reloaded"
    admin.shot("blocked-live")
    assert not gateway.vendor_hits, "a request without consent reached a vendor"


def test_unknown_destinations(admin: Tab, seeded: list[dict[str, Any]]) -> None:
    from playwright.sync_api import expect

    page = admin.page
    page.goto("/_admin/unknown")
    expect(page.locator("table#unknown")).to_be_visible()
    row = page.locator("table#unknown tr.host").filter(
        has=page.locator("td.host", has_text=re.compile(rf"^\s*{re.escape(UNKNOWN_HOST)}\s*$"))
    )
    expect(row).to_have_count(1)
    assert int(row.locator("td.count").inner_text().strip()) >= SENT[UNKNOWN_HOST]
    expect(row.locator("td.first-seen")).not_to_be_empty()
    expect(row.locator("td.last-seen")).not_to_be_empty()
    admin.shot("unknown")


def test_overview_and_rules(
    admin: Tab, gateway: LiveAdminGateway, seeded: list[dict[str, Any]]
) -> None:
    from playwright.sync_api import expect

    page = admin.page
    page.goto("/_admin/overview")
    expect(page.locator("svg.chart").first).to_be_visible()
    admin.shot("overview")

    page.goto("/_admin/rules")
    in_force = gateway.rule_vendors()
    assert GA4 in in_force and META in in_force
    expect(page.locator("section.rule")).to_have_count(len(in_force))
    for vendor in (GA4, META, TIKTOK):
        expect(page.locator("section.rule", has_text=vendor).first).to_be_visible()
    admin.shot("rules")


def test_markup_in_path_is_shown_as_text(
    admin: Tab, gateway: LiveAdminGateway, seeded: list[dict[str, Any]]
) -> None:
    """A visitor chooses the logged path: the page must show it as text, in the table the
    server renders and in the rows the live tail adds, and never run it."""
    from playwright.sync_api import expect

    page = admin.page
    page.goto("/_admin/?view=records&action=reject")
    expect(page.locator("table#records td.path", has_text=SCRIPT).first).to_be_visible()
    assert SCRIPT in page.locator("table#records").inner_text()

    expect(page.locator("#live-status")).to_have_text(LIVE)
    assert gateway.send(XSS_LIVE_HIT) == 404
    # the path is stored as a template: markup survives up to the value it carried
    live = page.locator("table#records tr.record.live td.path", has_text="<img/src/onerror=")
    expect(live.first).to_be_visible(timeout=5_000)
    page.wait_for_timeout(300)  # an onerror handler, had one been parsed, fires by now

    assert page.locator("table#records script, table#records img").count() == 0
    assert admin.dialogs == [], admin.dialogs
    admin.shot("escaped-markup")


def test_consent_records(admin: Tab, gateway: LiveAdminGateway, consented: Consented) -> None:
    """An operator looks up a visitor's proof of consent: from the nav, through the form."""
    from playwright.sync_api import expect

    page = admin.page
    page.goto("/_admin/")
    page.locator('nav.main a[href="/_admin/subjects"]').click()
    expect(page).to_have_url(f"{gateway.base_url}/_admin/subjects")
    form = page.locator("form#subject-search")
    form.locator("input[name=subject]").fill(consented.subject)
    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    assert "subject=" in page.url, page.url
    expect(page.locator('nav.main a[aria-current="page"]')).to_have_text("Consent records")
    expect(page.locator("#subject-id")).to_have_text(consented.subject)

    # the current state: the CMP's change on top of the banner's answer
    expect(page.locator("dl#current dd.source")).to_have_text("cmp")
    states = {
        p.strip(): s.strip()
        for p, s in zip(
            _texts(page, "table#current-purposes td.purpose"),
            _texts(page, "table#current-purposes td.state"),
            strict=True,
        )
    }
    assert states == {"analytics": "granted", "advertising": "granted"}, states

    # the history, oldest first
    rows = page.locator("table#history tbody tr.record")
    expect(rows).to_have_count(len(consented.record_ids))
    assert _texts(page, "table#history td.id") == [str(i) for i in consented.record_ids]
    assert _texts(page, "table#history td.source") == ["banner", "cmp"]
    assert _texts(page, "table#history td.denied") == ["advertising", ""]
    notice = rows.first.locator("td.notice-hash code")
    expect(notice).to_have_attribute("title", hashlib.sha256(NOTICE.encode()).hexdigest())
    expect(page.locator("#erase-howto")).to_be_visible()
    assert page.locator("form[method=post]").count() == 1  # the logout form only
    admin.shot("subjects")

    # the JSON export link answers with the same records, to the same session
    href = page.locator("a#export").get_attribute("href")
    assert href is not None
    export = page.context.request.get(href)
    assert export.status == 200, export.text()
    assert [r["id"] for r in export.json()["records"]] == list(consented.record_ids)

    # a subject with markup is shown as text, never run
    form.locator("input[name=subject]").fill(IMG)
    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    expect(page.locator("#subject-id")).to_have_text(IMG)
    expect(page.locator("#current-none")).to_be_visible()
    page.wait_for_timeout(300)  # an onerror handler, had one been parsed, fires by now
    assert page.locator("main img, main script").count() == 0


# -- the admin read at a glance: Overview, grouped Blocked, Rules search, two widths -------

#: a desktop and a phone
WIDTHS = (1280, 375)
#: what the stripped record (below) says was removed, by name
REMOVED = ("query:fbclid", "cookie:_fbp")
STRIP_REASON = "advertising not granted: identifiers stripped (browser test)"


@pytest.fixture(scope="module")
def at_a_glance(gateway: LiveAdminGateway, seeded: list[dict[str, Any]]) -> None:
    """Rollups for the overview (as the gateway's writer counts them) and one stripped
    Meta record with the fields it removed, next to the drops `seeded` sent."""
    gateway.add_rollups(
        [
            (300.0, GA4, "forward", "", "opt-out", 40),
            (300.0, GA4, "drop", "analytics", "opt-in", 12),
            (200.0, META, "strip", "advertising", "opt-in", 6),
            (200.0, META, "drop", "advertising", "opt-in", 6),
            (100.0, "", "reject", "", "", 3),
        ]
    )
    gateway.add_records(
        [
            make_record(
                "strip-1",
                ts=time.time() - 5,
                vendor=META,
                endpoint="pixel",
                action="strip",
                missing=("advertising",),
                sources={"advertising": "cookie", "analytics": "default:opt-in"},
                regime="opt-in",
                host="www.facebook.com",
                path="/tr",
                stripped=REMOVED,
                reason=STRIP_REASON,
            )
        ]
    )


def _sized(tab: Tab, width: int) -> Page:
    tab.page.set_viewport_size({"width": width, "height": 900})
    return tab.page


def _no_page_scroll(page: Page) -> None:
    """Nothing wider than the window: tables scroll inside their container instead."""
    sizes = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert sizes[0] <= sizes[1], f"the page scrolls sideways: {sizes} at {page.url}"


def _tab_to(page: Page, selector: str, presses: int = 60) -> int:
    """Press Tab from the top of the page until `selector` has the focus; how many."""
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    for n in range(1, presses + 1):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return n
    raise AssertionError(f"Tab never reached {selector} in {presses} presses on {page.url}")


def _focus_ring(page: Page) -> str:
    return str(page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle"))


@pytest.mark.parametrize("width", WIDTHS)
def test_overview_at_a_glance(admin: Tab, at_a_glance: None, width: int) -> None:
    from playwright.sync_api import expect

    page = _sized(admin, width)
    page.goto("/_admin/overview")
    # the first Tab stop skips the navigation, and its target takes the focus
    assert _tab_to(page, "a.skip") == 1
    expect(page.locator("a.skip")).to_be_visible()
    assert _focus_ring(page) != "none"
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main"

    timeline = page.locator("svg#chart-timeline")
    expect(timeline).to_be_visible()
    assert timeline.bounding_box()["width"] <= width  # type: ignore[index]
    # each action in its own colour, and named in text beside the chart
    colours = {
        a: page.locator(f"svg#chart-timeline rect.action-{a}").first.evaluate(
            "e => getComputedStyle(e).fill"
        )
        for a in ("forward", "strip", "drop", "reject")
    }
    assert len(set(colours.values())) == 4, colours
    # (at least: once the gateway writes rollups, the requests `seeded` sent count too)
    named = [t.split(" ", 1) for t in _texts(page, "#requests-total span.action")]
    assert [label for _, label in named] == ["forwarded", "stripped", "dropped", "rejected"]
    assert [int(n) >= least for (n, _), least in zip(named, (40, 6, 18, 3), strict=True)]

    # the largest blocked share first: every unknown destination is rejected
    vendors = _texts(page, "table#vendor-share tr.vendor td.vendor")
    order = [vendors.index(v) for v in ("(unknown destination)", META, GA4)]
    assert order == sorted(order), vendors
    assert _texts(page, "table#vendor-share tr.vendor td.share")[0] == "100.0 %"
    expect(page.locator("table#purpose-share")).to_be_visible()
    shares = dict(
        zip(
            _texts(page, "table#purpose-share td.purpose"),
            _texts(page, "table#purpose-share td.share"),
            strict=True,
        )
    )
    assert shares["necessary"] == "100.0 %", shares
    assert 0 < float(shares["analytics"].rstrip(" %")) < 100, shares
    # the windows are reachable from the keyboard
    _tab_to(page, "nav.windows a.window")
    _no_page_scroll(page)
    admin.shot(f"test_overview_at_a_glance-{width}")


@pytest.mark.parametrize("width", WIDTHS)
def test_blocked_groups_and_record_detail(admin: Tab, at_a_glance: None, width: int) -> None:
    from playwright.sync_api import expect

    page = _sized(admin, width)
    page.goto("/_admin/")
    groups = page.locator("table#groups tbody tr.group")
    expect(groups.first).to_be_visible()
    ga4 = groups.filter(has=page.locator("td.vendor", has_text=_vendor_cell(GA4)))
    expect(ga4).to_have_count(1)
    assert int(ga4.locator("td.count").inner_text()) >= SENT[GA4]
    _tab_to(page, "form#filters input[name=since]")
    _tab_to(page, "table#groups a.records-link")
    _no_page_scroll(page)
    admin.shot(f"test_blocked_groups_and_record_detail-{width}")

    # a group's raw rows, one click away: the stripped Meta request
    group = groups.filter(has=page.locator("td.reason", has_text=STRIP_REASON))
    with page.expect_navigation():
        group.locator("a.records-link").click()
    rows = page.locator("table#records tbody tr.record")
    expect(rows).to_have_count(1)
    expect(page.locator("#group-scope")).to_contain_text(STRIP_REASON)
    expect(rows.first.locator("td.action")).to_have_text("strip")
    # the host wraps after a dot at most, never inside a label
    host = rows.first.locator("td.host .label")
    assert host.all_inner_texts() == ["www", "facebook", "com"]
    _no_page_scroll(page)
    admin.shot(f"test_blocked_groups_and_record_detail-{width}-records")

    # its detail: the consent sources per purpose, the regime, the request id, what was removed
    with page.expect_navigation():
        rows.first.locator("a.detail-link").click()
    expect(page.locator("dd.request-id")).to_have_text("strip-1")
    expect(page.locator("dd.regime")).to_have_text("opt-in")
    assert _texts(page, "#stripped-fields li") == list(REMOVED)
    sources = dict(
        zip(
            _texts(page, "table#sources td.purpose"),
            _texts(page, "table#sources td.source"),
            strict=True,
        )
    )
    assert sources == {"analytics": "default:opt-in", "advertising": "cookie"}, sources
    _no_page_scroll(page)
    admin.shot(f"test_blocked_groups_and_record_detail-{width}-detail")


@pytest.mark.parametrize("width", WIDTHS)
def test_rules_search(admin: Tab, gateway: LiveAdminGateway, width: int) -> None:
    from playwright.sync_api import expect

    page = _sized(admin, width)
    page.goto("/_admin/rules")
    expect(page.locator("#reload-status")).to_contain_text("Rules in force since")
    assert page.locator("section.rule").count() == len(gateway.rule_vendors())
    # from the keyboard: Tab to the search field, type, submit with Enter
    _tab_to(page, "form#rule-search input[name=q]")
    assert _focus_ring(page) != "none"
    page.keyboard.type("facebook.com")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "q=facebook.com" in page.url, page.url
    vendors = _texts(page, "section.rule h2")
    assert vendors and META in vendors and GA4 not in vendors, vendors
    assert all("facebook.com" in t for t in _texts(page, "section.rule dd.hosts")), vendors
    expect(page.locator("#rule-count")).to_contain_text(f"{len(vendors)} of ")
    _no_page_scroll(page)
    admin.shot(f"test_rules_search-{width}")

    # by purpose, through the form again
    page.locator("form#rule-search input[name=q]").fill("analytics")
    with page.expect_navigation():
        page.locator("form#rule-search button[type=submit]").click()
    assert GA4 in _texts(page, "section.rule h2")
    _no_page_scroll(page)


@pytest.mark.parametrize("width", WIDTHS)
def test_every_page_fits_the_window(admin: Tab, at_a_glance: None, width: int) -> None:
    """No page of the admin scrolls sideways, on a desktop or a phone; the skip link
    comes first on each."""
    page = _sized(admin, width)
    for path in (
        "/_admin/?view=records&since=all",
        "/_admin/unknown",
        "/_admin/bypasses",
        "/_admin/explain",
        "/_admin/subjects",
        "/_admin/record?id=1",
    ):
        page.goto(path)
        _no_page_scroll(page)
        assert _tab_to(page, "a.skip") == 1, path
