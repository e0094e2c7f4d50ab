"""/cg.js with the site and the gateway on different origins, in Chromium: the site on
http://www.example.test, the gateway on http://cg.example.test (a sibling subdomain:
same site, so the consent cookie travels; `server.allowed_origins` names the site),
both resolved to 127.0.0.1 by Chromium's host-resolver rules.

The same shop page and consent states as tests/router/test_browser.py, plus what only
a cross-origin deployment has: CORS preflights for the SDKs' JSON POSTs, the decision
header readable by the page, and an origin the gateway does not allow, refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.router.browser_harness import (
    AMPLITUDE,
    OTHER_HOST,
    REACHES,
    RouterSite,
    Visit,
    answer_banner,
    check_consent_state,
    readable,
)

if TYPE_CHECKING:
    pass


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterSite]:
    s = RouterSite(tmp_path_factory.mktemp("router-cross-origin"), cross_origin=True)
    s.start()
    s.pages["blank"] = s.page()
    try:
        yield s
    finally:
        s.stop()


@pytest.mark.parametrize("state", list(REACHES))
def test_each_vendor_gets_what_the_consent_allows_from_another_origin(
    site: RouterSite, visit: Visit, state: str
) -> None:
    check_consent_state(site, visit, state)


JSON_POST = """async () => {
  const r = await fetch('https://api2.amplitude.com/2/httpapi', {method: 'POST',
    headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({api_key: 'k', events: [{device_id: 'dev-preflight'}]})})
  return [r.status, r.headers.get('Consent-Gateway-Decision')]
}"""


def test_a_json_post_passes_its_preflight_and_reads_the_decision(
    site: RouterSite, visit: Visit
) -> None:
    answer_banner(visit, site, "all")
    status, decision = visit.js(JSON_POST)
    assert status == 200
    assert decision is not None and "vendor=amplitude" in decision, decision
    assert decision.split(";")[0].strip() in ("forward", "strip"), decision
    hit = site.wait_for(lambda s: s.host == AMPLITUDE and "dev-preflight" in readable(s))
    assert '"device_id"' in readable(hit)


REFUSED = "() => consentGateway.{call}.then(() => 'answered', () => 'refused')"


def test_an_origin_not_allowed_is_refused(site: RouterSite, visit: Visit) -> None:
    site.pages["other"] = site.page()
    visit.page.goto(f"http://{OTHER_HOST}/page/other")
    assert visit.js(REFUSED.format(call="set({analytics: true, advertising: true})")) == "refused"
    assert visit.js(REFUSED.format(call="get()")) == "refused"
    # Nothing was recorded for this browser: on the allowed site it is still unanswered.
    visit.page.goto(f"{site.site}/page/blank")
    assert visit.js("() => consentGateway.get()")["analytics"] is None
