"""Standard consent signals, end to end through the gateway (issue: read every signal).

- a request carrying only a OneTrust cookie that denies targeting has its
  advertising pixels dropped (where the regime would otherwise allow them);
- a TC string granting the advertising purposes but not consent for vendor 755
  drops Google Ads; with vendor 755 it forwards;
- `Sec-GPC: 1` drops an advertising pixel the gateway's own cookie granted;
- a forwarded Google hit never claims more consent than the gateway resolved.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from aiohttp.test_utils import TestClient

from gateway.consent import gcm
from gateway.edges import TRANSPARENT_GIF
from tests.conftest import FakeVendor, cookie_for
from tests.consent.test_signals import ONETRUST_NO_TARGETING, TC_ADS_755, TC_ADS_NOT_755

META = "/t/www.facebook.com/tr?id=1234567890&ev=PageView&dl=https%3A%2F%2Fshop.example%2F"
ADS = "/t/www.googleadservices.com/pagead/conversion/987654321/?label=AbC&value=1"
US = {"server": {"country_header": "CF-IPCountry"}}
HOSTS = ["www.facebook.com", "www.googleadservices.com", "www.google-analytics.com"]


async def _nothing_sent(fake: FakeVendor) -> bool:
    await asyncio.sleep(0.1)
    return fake.seen == []


async def test_onetrust_cookie_denying_targeting_drops_advertising_pixels(
    gateway_factory: Callable[..., Any], fake_vendor: FakeVendor
) -> None:
    client: TestClient[Any, Any] = await gateway_factory(hosts=HOSTS, extra=US)
    us = {"CF-IPCountry": "US"}  # opt-out regime: without a signal, the pixel would go
    resp = await client.get(
        META, headers={**us, "Cookie": f"OptanonConsent={ONETRUST_NO_TARGETING}"}
    )
    assert await resp.read() == TRANSPARENT_GIF
    assert await _nothing_sent(fake_vendor)
    await client.get(META, headers=us)
    [seen] = await fake_vendor.wait_for(1)
    assert seen.host == "www.facebook.com"


async def test_tc_string_without_vendor_755_drops_google_ads(
    gateway_factory: Callable[..., Any], fake_vendor: FakeVendor
) -> None:
    client: TestClient[Any, Any] = await gateway_factory(hosts=HOSTS)
    resp = await client.get(ADS, headers={"Cookie": f"euconsent-v2={TC_ADS_NOT_755}"})
    assert await resp.read() == TRANSPARENT_GIF
    assert await _nothing_sent(fake_vendor)
    # The same purposes with vendor 755's consent: forwarded.
    await client.get(ADS, headers={"Cookie": f"euconsent-v2={TC_ADS_755}"})
    [seen] = await fake_vendor.wait_for(1)
    assert seen.path.startswith("/pagead/conversion/987654321")


async def test_gpc_drops_an_advertising_pixel_the_cookie_granted(
    gateway_factory: Callable[..., Any], fake_vendor: FakeVendor
) -> None:
    client: TestClient[Any, Any] = await gateway_factory(hosts=HOSTS, extra=US)
    cookie = {"Cookie": f"cg_consent={cookie_for({'advertising': 'granted'})}"}
    resp = await client.get(META, headers={**cookie, "Sec-GPC": "1", "CF-IPCountry": "US"})
    assert await resp.read() == TRANSPARENT_GIF
    assert await _nothing_sent(fake_vendor)
    await client.get(META, headers={**cookie, "Sec-GPC": "0", "CF-IPCountry": "US"})
    await fake_vendor.wait_for(1)


async def test_forwarded_google_hit_never_claims_more_consent(
    gateway_factory: Callable[..., Any], fake_vendor: FakeVendor
) -> None:
    client: TestClient[Any, Any] = await gateway_factory(hosts=HOSTS)
    cookie = {
        "Cookie": f"cg_consent={cookie_for({'analytics': 'granted', 'advertising': 'denied'})}"
    }
    # The page's tag claims everything granted; the gateway resolved advertising denied.
    hit = "/t/www.google-analytics.com/g/collect?v=2&tid=G-1&cid=1.2&en=x"
    hit += "&gcs=G111&gcd=11t1t1t1t5&npa=0"
    await client.get(hit, headers=cookie)
    [seen] = await fake_vendor.wait_for(1)
    q = dict(parse_qsl(seen.query))
    assert q["gcs"] == "G101" and q["npa"] == "1"
    effective = gcm.decode_gcd(q["gcd"]).effective
    assert effective["analytics_storage"].value == "granted"
    assert {effective[t].value for t in ("ad_storage", "ad_user_data", "ad_personalization")} == {
        "denied"
    }
    assert seen.query.count("gcs=") == 1


async def test_get_consent_names_each_source(gateway_factory: Callable[..., Any]) -> None:
    client: TestClient[Any, Any] = await gateway_factory(hosts=HOSTS)
    resp = await client.get(
        "/consent",
        headers={"Cookie": f"euconsent-v2={TC_ADS_755}; OptanonConsent={ONETRUST_NO_TARGETING}"},
    )
    state = await resp.json()
    assert state["purposes"]["advertising"]["state"] == "denied"
    assert state["purposes"]["advertising"]["source"] == "onetrust"
    # Both grant functional: the answer names one of them, never a default.
    assert state["purposes"]["functional"]["state"] == "granted"
    assert state["purposes"]["functional"]["source"] in ("tcf", "onetrust")
    # TCF (no consent for purposes 5, 6) denies personalization; OneTrust's C0004 too.
    assert state["purposes"]["personalization"]["state"] == "denied"
    bad = await (await client.get("/consent", headers={"Cookie": "euconsent-v2=CQzz"})).json()
    assert bad["signal_problems"][0]["signal"] == "tcf"
    assert "CQzz" not in str(bad)
