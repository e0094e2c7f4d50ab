"""Standard consent signals, end to end through the gateway (issue: read every signal).

- a request carrying only a OneTrust cookie that denies targeting has its
  advertising pixels dropped (where the regime would otherwise allow them);
- a TC string granting the advertising purposes but not consent for vendor 755
  drops Google Ads; with vendor 755 it forwards;
- `Sec-GPC: 1` drops an advertising pixel the gateway's own cookie granted;
- a forwarded Google hit never claims more consent than the gateway resolved.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson
import pytest
from aiohttp.test_utils import TestClient

from gateway.app import GATEWAY
from gateway.consent import gcm
from gateway.consent.cmp import FORMATS
from gateway.edges import TRANSPARENT_GIF
from gateway.model import CMP
from tests.conftest import FakeVendor, cookie_for, field_present
from tests.signal_values import ONETRUST_NO_TARGETING, TC_ADS_755, TC_ADS_NOT_755

META = "/t/www.facebook.com/tr?id=1234567890&ev=PageView&dl=https%3A%2F%2Fshop.example%2F"
ADS = "/t/www.googleadservices.com/pagead/conversion/987654321/?label=AbC&value=1"
US = {"server": {"country_header": "CF-IPCountry"}}
HOSTS = ["www.facebook.com", "www.googleadservices.com", "www.google-analytics.com"]


async def _nothing_sent(fake: FakeVendor, client: TestClient[Any, Any] | None = None) -> bool:
    if client is not None:
        await client.app[GATEWAY].upstream.drain()  # background forwards have all gone
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
    assert await _nothing_sent(fake_vendor, client)
    await client.get(META, headers=us)
    [seen] = await fake_vendor.wait_for(1)
    assert seen.host == "www.facebook.com"


async def test_tc_string_without_vendor_755_drops_google_ads(
    gateway_factory: Callable[..., Any], fake_vendor: FakeVendor
) -> None:
    client: TestClient[Any, Any] = await gateway_factory(hosts=HOSTS)
    resp = await client.get(ADS, headers={"Cookie": f"euconsent-v2={TC_ADS_NOT_755}"})
    assert await resp.read() == TRANSPARENT_GIF
    assert await _nothing_sent(fake_vendor, client)
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
    assert await _nothing_sent(fake_vendor, client)
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


GA4 = "/t/www.google-analytics.com/g/collect?v=2&tid=G-1&cid=1.2&en=page_view"
_NOW_MS = int(time.time() * 1000)


def _didomi(enabled: list[str], disabled: list[str]) -> str:
    doc = orjson.dumps(
        {
            "user_id": "00000000-0000-0000-0000-000000000000",
            "created": "2026-01-01T00:00:00.000Z",
            "updated": "2026-01-01T00:00:00.000Z",
            "purposes": {"enabled": enabled, "disabled": disabled},
        }
    )
    return base64.b64encode(doc).decode().rstrip("=")


#: cmp -> (cookies granting analytics, cookies denying it, the category mapping config needs)
CMP_CASES: dict[CMP, tuple[dict[str, str], dict[str, str], dict[str, list[str]] | None]] = {
    CMP.ONETRUST: (
        {"OptanonConsent": "isGpcEnabled=0&groups=C0001%3A1%2CC0002%3A1"},
        {"OptanonConsent": "isGpcEnabled=0&groups=C0001%3A1%2CC0002%3A0"},
        None,
    ),
    CMP.COOKIEBOT: (
        {
            "CookieConsent": "{stamp:'a',necessary:true,preferences:false,statistics:true,"
            "marketing:false,method:'explicit',ver:1}"
        },
        {
            "CookieConsent": "{stamp:'a',necessary:true,preferences:false,statistics:false,"
            "marketing:false,method:'explicit',ver:1}"
        },
        None,
    ),
    CMP.DIDOMI: (
        {"didomi_token": _didomi(["analytics"], [])},
        {"didomi_token": _didomi([], ["analytics"])},
        None,
    ),
    CMP.KLARO: (
        {"klaro": '{"google-analytics":true}'},
        {"klaro": '{"google-analytics":false}'},
        {"google-analytics": ["analytics"]},
    ),
    CMP.COOKIEYES: (
        {
            "cookieyes-consent": "consentid:abc,consent:yes,action:yes,necessary:yes,"
            "analytics:yes,performance:yes,advertisement:no"
        },
        {
            "cookieyes-consent": "consentid:abc,consent:no,action:yes,necessary:yes,"
            "analytics:no,performance:no,advertisement:no"
        },
        None,
    ),
    CMP.COMPLIANZ: ({"cmplz_statistics": "allow"}, {"cmplz_statistics": "deny"}, None),
    CMP.COMMANDERS_ACT: (
        {"TC_PRIVACY": f"0@002|12|3441@2@4@{_NOW_MS}@{_NOW_MS}"},
        {"TC_PRIVACY": f"1@002|12|3441@@4@{_NOW_MS}@{_NOW_MS}"},
        {"2": ["analytics"]},
    ),
}


def test_every_cmp_in_the_registry_has_an_end_to_end_case() -> None:
    assert set(CMP_CASES) == set(FORMATS) == set(CMP)


def _cookie_header(cookies: dict[str, str]) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}


@pytest.mark.parametrize("name", list(CMP_CASES), ids=str)
async def test_every_cmp_grants_and_denies_through_a_live_gateway(
    name: CMP, gateway_factory: Callable[..., Any], fake_vendor: FakeVendor
) -> None:
    granting, denying, mapping = CMP_CASES[name]
    extra = {"consent": {"signals": {"cmp": {str(name): mapping}}}} if mapping else None
    client: TestClient[Any, Any] = await gateway_factory(hosts=HOSTS, extra=extra)
    # Denied by the CMP (and by the opt-in default): dropped, and the answer names the CMP.
    state = await (await client.get("/consent", headers=_cookie_header(denying))).json()
    assert state["purposes"]["analytics"]["state"] == "denied"
    assert state["purposes"]["analytics"]["source"] == str(name)
    assert state.get("signal_problems", []) == []
    assert (await client.get(GA4, headers=_cookie_header(denying))).status == 204
    assert await _nothing_sent(fake_vendor, client)
    # Granted by the CMP alone: forwarded.
    state = await (await client.get("/consent", headers=_cookie_header(granting))).json()
    assert state["purposes"]["analytics"]["state"] == "granted"
    assert state["purposes"]["analytics"]["source"] == str(name)
    await client.get(GA4, headers=_cookie_header(granting))
    [seen] = await fake_vendor.wait_for(1)
    assert seen.path == "/g/collect"


@pytest.mark.parametrize("name", list(CMP_CASES), ids=str)
async def test_an_undecodable_cmp_cookie_is_reported_by_name(
    name: CMP, gateway_factory: Callable[..., Any]
) -> None:
    client: TestClient[Any, Any] = await gateway_factory(hosts=HOSTS)
    cookie = next(iter(CMP_CASES[name][0]))
    state = await (await client.get("/consent", headers={"Cookie": f"{cookie}=%%%broken"})).json()
    assert [p["signal"] for p in state["signal_problems"]] == [str(name)]
    assert "broken" not in str(state)


@pytest.mark.parametrize(
    ("query", "grant", "forwarded"),
    [
        ("gcs=G111", False, False),
        ("gcd=11r1r1r1r5", False, False),
        ("gcs=G111", True, True),
    ],
)
async def test_a_tag_hit_cannot_grant_itself_consent(
    gateway_factory: Callable[..., Any],
    fake_vendor: FakeVendor,
    query: str,
    grant: bool,
    forwarded: bool,
) -> None:
    # Defect 5 of issue 10: with no cookie and no CMP, `gcs=G111` made analytics
    # "granted from gcm" and the hit was forwarded.
    extra = {"consent": {"signals": {"request_params_grant": grant}}}
    client: TestClient[Any, Any] = await gateway_factory(hosts=HOSTS, extra=extra)
    resp = await client.get(f"{GA4}&{query}")
    if forwarded:
        [seen] = await fake_vendor.wait_for(1)
        assert seen.path == "/g/collect"
    else:
        assert resp.status == 204
        assert await _nothing_sent(fake_vendor, client)


# -- vendor by vendor: a CMP that asks per service, and the gateway's own vendor answers ------

POSTHOG = "/t/us.i.posthog.com/i/v0/e/?ip=1&_=1712345678901&ver=1.180.0"
MATOMO = (
    "/t/shopexample.matomo.cloud/matomo.php?idsite=3&rec=1&action_name=Kettle&_id=9f2c1a7b3e4d5f60"
)
GA4 = "/t/www.google-analytics.com/g/collect?v=2&tid=G-X&cid=1.2&en=page_view"
VENDOR_HOSTS = ["us.i.posthog.com", "shopexample.matomo.cloud", "www.google-analytics.com"]
# Klaro's services, each mapped to its analytics purpose and to the rule that is its vendor
KLARO_SERVICES = {
    "consent": {
        "signals": {
            "cmp": {
                "klaro": {
                    "posthog": ["analytics"],
                    "matomo": ["analytics"],
                    "vendors": {"posthog": ["posthog"], "matomo": ["matomo"]},
                }
            }
        }
    }
}
_EVENT = b'{"event":"$pageview","properties":{"distinct_id":"018ea2b4","token":"phc_x"}}'


async def _sent(client: TestClient[Any, Any], path: str, cookie: str) -> int:
    headers = {"Cookie": cookie, "Content-Type": "application/json"}
    if "posthog" in path:
        resp = await client.post(path, data=_EVENT, headers=headers)
    else:
        resp = await client.get(path, headers=headers)
    await resp.read()
    return resp.status


async def _dropped_capture(client: TestClient[Any, Any], cookie: str) -> bool:
    """A PostHog capture dropped as posthog-js takes success (rules' drop_answer): a 200
    with the capture API's own body, so the SDK does not keep and resend the event."""
    headers = {"Cookie": cookie, "Content-Type": "application/json"}
    resp = await client.post(POSTHOG, data=_EVENT, headers=headers)
    body = await resp.read()
    return (
        resp.status == 200
        and orjson.loads(body) == {"status": 1}
        and (resp.headers["Consent-Gateway-Decision"].startswith("drop"))
    )


async def test_a_cmp_that_grants_one_analytics_vendor_denies_the_others(
    gateway_factory: Callable[..., Any], fake_vendor: FakeVendor
) -> None:
    """Klaro: the visitor accepted PostHog and refused Matomo. PostHog gets its event
    whole; Matomo and GA4 (which the banner never offered) are treated as without
    analytics: Matomo's consent-free form (identifiers stripped), GA4 dropped. Accepting
    one analytics service is not analytics for every analytics vendor."""
    client: TestClient[Any, Any] = await gateway_factory(hosts=VENDOR_HOSTS, extra=KLARO_SERVICES)
    klaro = "klaro=" + "%7B%22posthog%22%3Atrue%2C%22matomo%22%3Afalse%7D"
    for path in (POSTHOG, MATOMO, GA4):
        assert await _sent(client, path, klaro) in (200, 204)
    await client.app[GATEWAY].upstream.drain()  # background forwards have all gone
    seen = {s.host: s for s in fake_vendor.seen}
    assert set(seen) == {"us.i.posthog.com", "shopexample.matomo.cloud"}
    assert field_present(seen["us.i.posthog.com"], "json:properties.distinct_id")
    assert not field_present(seen["shopexample.matomo.cloud"], "_id")
    assert field_present(seen["shopexample.matomo.cloud"], "action_name")
    state = await (await client.get("/consent", headers={"Cookie": klaro})).json()
    assert state["vendors"] == {
        "matomo": {"state": "denied", "source": "klaro", "grants": []},
        "posthog": {"state": "granted", "source": "klaro", "grants": ["analytics"]},
    }
    assert state["purposes"]["analytics"]["source"] == "default:opt-in"
    # With no answer for PostHog (the visitor refused it too), its event is dropped.
    refused = "klaro=" + "%7B%22posthog%22%3Afalse%2C%22matomo%22%3Afalse%7D"
    assert await _dropped_capture(client, refused)
    await client.app[GATEWAY].upstream.drain()
    assert len(fake_vendor.seen) == 2  # the two above, no more


async def test_a_visitor_who_denies_one_vendor_keeps_the_others(
    gateway_factory: Callable[..., Any], fake_vendor: FakeVendor
) -> None:
    """`POST /consent {"purposes": {"analytics": true}, "vendors": {"posthog": false}}`:
    analytics for every analytics vendor but PostHog; the record and the cookie hold it."""
    client: TestClient[Any, Any] = await gateway_factory(hosts=VENDOR_HOSTS)
    resp = await client.post(
        "/consent", json={"purposes": {"analytics": True}, "vendors": {"posthog": False}}
    )
    assert resp.status == 200, await resp.text()
    doc = await resp.json()
    assert doc["vendors"] == {"posthog": {"state": "denied", "source": "cookie", "grants": []}}
    cookie = f"cg_consent={resp.cookies['cg_consent'].value}"
    assert await _dropped_capture(client, cookie)
    assert await _nothing_sent(fake_vendor, client)
    assert await _sent(client, GA4, cookie) == 204
    [seen] = await fake_vendor.wait_for(1)
    assert seen.host == "www.google-analytics.com" and field_present(seen, "cid")
    unknown = await client.post("/consent", json={"purposes": {}, "vendors": {"nobody": True}})
    assert unknown.status == 400
