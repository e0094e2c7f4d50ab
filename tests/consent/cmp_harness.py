"""CMP cookie values for tests: one valid value per CMP, the encoders that write them as
the CMPs do, and the reasons a decoder may give.

Shared by the tests of gateway.consent.cmp (the registry, and the properties of every
decoder) and of its decoder families (cmp_lists, cmp_objects, cmp_base).

Sources of the examples: the researched reference (shared/reference/consent-signals.md
§5: the OneTrust groups value, the Cookiebot literal and `-1`, the Didomi token shape,
the Klaro value, the CookieYes list, the Complianz cookies, the TC_PRIVACY layout; §1.8
for the TC string), envato/cookie-consent `src/index.test.ts` (Cookiebot values and
`-1`), CommandersAct/Platform-Documentation `features/consent-management/knowledge-base/
consent-cookie.md` (TC_PRIVACY examples 1 and 2, field table) and consent-object.md
("blocked on" = required), and cookie values captured in public code (OneTrust
datestamps with localised zone names, numeric and V2STACK42 groups, trailing commas;
Cookiebot `stamp:'-1'`, `iab2`, `ver:2`, `region:'us-34'`; Didomi tokens without
`purposes`; CookieYes values with empty flags; Klaro service names). Identifiers in
captured values (consent ids, user ids, stamps) are replaced by placeholders.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from urllib.parse import quote

import pytest

from gateway.consent.cmp_base import CMPConsent
from gateway.errors import CMPError

__all__ = [
    "COOKIEBOT",
    "COOKIEYES",
    "DIDOMI",
    "ONETRUST",
    "ONETRUST_GROUPS",
    "REASONS",
    "TC_STRING",
    "Decoder",
    "cookiebot_encoded",
    "didomi_token",
    "enc",
    "reason",
]

REASONS = {
    "bad base64",
    "bad json",
    "bad percent-encoding",
    "bad timestamp",
    "bad token",
    "duplicate category",
    "duplicate field",
    "empty",
    "malformed",
    "malformed banner",
    "malformed categories",
    "malformed flag",
    "malformed genVendors",
    "malformed groups",
    "malformed interactionCount",
    "malformed isGpcEnabled",
    "malformed item",
    "malformed object literal",
    "malformed purposes",
    "malformed query",
    "malformed service",
    "malformed tc string",
    "malformed timestamps",
    "malformed vendors",
    "malformed version",
    "missing category",
    "no consentid",
    "no groups",
    "not a didomi token",
    "not an object literal",
    "not an object",
}

Decoder = Callable[[str], CMPConsent]


def enc(value: str, times: int = 1) -> str:
    for _ in range(times):
        value = quote(value, safe="")
    return value


def reason(decode: Decoder, value: str) -> str:
    """The reason `decode(value)` fails with: a fixed phrase, never the input."""
    with pytest.raises(CMPError) as e:
        decode(value)
    assert str(e.value) == e.value.reason
    assert e.value.reason in REASONS
    return e.value.reason


# reference §5, with the fields a current OneTrust SDK writes around `groups`
ONETRUST = (
    "isGpcEnabled=0&datestamp=Tue+Sep+12+2023+10%3A00%3A00+GMT%2B0200+(Central+European"
    "+Summer+Time)&version=202308.1.0&browserGpcFlag=0&isIABGlobal=false&hosts=&consentId="
    "00000000-0000-0000-0000-000000000000&interactionCount=1&landingPath=NotLandingPage"
    "&groups=C0001%3A1%2CC0002%3A0%2CC0003%3A1%2CC0004%3A1%2CC0005%3A1"
    "&geolocation=AT%3B9&AwaitingReconsent=false"
)
ONETRUST_GROUPS = {"C0001": True, "C0002": False, "C0003": True, "C0004": True, "C0005": True}

TC_STRING = "COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA"

# reference §5
COOKIEBOT = (
    "{stamp:'AbCdEfGhIjKlMnOpQrStUvWxYz0123456789+/AbCdEfGhIjKlMn==',necessary:true,"
    "preferences:false,statistics:true,marketing:false,method:'explicit',ver:1,"
    "utc:1698057791350,region:'gb'}"
)


def cookiebot_encoded(value: str) -> str:
    """As Cookiebot writes it: only `'` and `,` encoded (the reference's `%27`, `%2C`)."""
    return value.replace("'", "%27").replace(",", "%2C")


DIDOMI = {
    "user_id": "00000000-0000-0000-0000-000000000000",
    "created": "2024-04-12T08:48:34.530Z",
    "updated": "2024-04-12T10:35:28.345Z",
    "vendors": {"enabled": ["google", "c:example-AbCd1234"], "disabled": []},
    "purposes": {
        "enabled": ["cookies", "analytics", "geolocation_data"],
        "disabled": ["select_personalized_ads"],
    },
    "vendors_li": {"enabled": ["google"]},
    "purposes_li": {"enabled": ["measure_ad_performance"], "disabled": []},
    "version": 2,
    "ac": "AFmACAFk.AFmACAFk",
}


def didomi_token(data: object, urlsafe: bool = False, padded: bool = False) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    token = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(raw).decode()
    return token if padded else token.rstrip("=")


COOKIEYES = (  # reference §5
    "consentid:AbCdEfGhIjKlMnOpQrStUvWxYz012345,consent:yes,action:yes,necessary:yes,"
    "functional:no,analytics:no,performance:no,advertisement:no,other:no"
)
