"""CMP cookies.

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

import base64
import json
from collections.abc import Callable
from urllib.parse import quote

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import SignalsConfig
from gateway.consent import cmp as cmp_mod
from gateway.consent.cmp import (
    CMP_COOKIES,
    FORMATS,
    MAX_COOKIE_LENGTH,
    CMPConsent,
    CMPFailure,
    decode_cmp_cookies,
    decode_commanders_act,
    decode_complianz,
    decode_cookiebot,
    decode_cookieyes,
    decode_didomi,
    decode_klaro,
    decode_onetrust,
    decode_onetrust_tc,
    detect_cmp_value,
)
from gateway.errors import CMPError, SignalError
from gateway.model import CMP, SIGNALS
from tests.conftest import ROOT

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
    "malformed version",
    "missing category",
    "no consentid",
    "no groups",
    "not a didomi token",
    "not an object literal",
    "not an object",
}

Decoder = Callable[[str], CMPConsent]
DECODERS: list[Decoder] = [
    decode_onetrust,
    decode_onetrust_tc,
    decode_cookiebot,
    decode_didomi,
    decode_klaro,
    decode_cookieyes,
    decode_commanders_act,
]


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


def test_exports() -> None:
    assert all(hasattr(cmp_mod, name) for name in cmp_mod.__all__)


def test_cmp_error_is_a_signal_error() -> None:
    assert issubclass(CMPError, SignalError)


# --- OneTrust -----------------------------------------------------------------------------

# reference §5, with the fields a current OneTrust SDK writes around `groups`
ONETRUST = (
    "isGpcEnabled=0&datestamp=Tue+Sep+12+2023+10%3A00%3A00+GMT%2B0200+(Central+European"
    "+Summer+Time)&version=202308.1.0&browserGpcFlag=0&isIABGlobal=false&hosts=&consentId="
    "00000000-0000-0000-0000-000000000000&interactionCount=1&landingPath=NotLandingPage"
    "&groups=C0001%3A1%2CC0002%3A0%2CC0003%3A1%2CC0004%3A1%2CC0005%3A1"
    "&geolocation=AT%3B9&AwaitingReconsent=false"
)
ONETRUST_GROUPS = {"C0001": True, "C0002": False, "C0003": True, "C0004": True, "C0005": True}


@pytest.mark.parametrize("times", [0, 1, 2])
def test_onetrust(times: int) -> None:
    got = decode_onetrust(enc(ONETRUST, times))
    assert got == CMPConsent(
        cmp=CMP.ONETRUST,
        categories=ONETRUST_GROUPS,
        interacted=True,
        at=1694505600.0,  # 2023-09-12T08:00:00Z
        gpc=False,
    )


@pytest.mark.parametrize(
    ("value", "categories", "interacted", "at", "gpc"),
    [
        # captured: localised zone name (UTF-8, percent-encoded), interacted
        (
            (
                "isGpcEnabled=0&datestamp=Tue+Oct+19+2021+11%3A31%3A41+GMT%2B0800+(%E5%8F%B0%E5%8C"
                "%97%E6%A8%99%E6%BA%96%E6%99%82%E9%96%93)&version=6.20.0&interactionCount=1&groups="
                "C0001%3A1%2CC0003%3A1%2CC0002%3A1%2CC0004%3A1&geolocation=TW%3BTPE"
            ),
            {"C0001": True, "C0003": True, "C0002": True, "C0004": True},
            True,
            1634614301.0,
            False,
        ),
        # captured: numeric group ids, V2STACK42, a landingPath holding "%26"
        (
            (
                "isGpcEnabled=1&interactionCount=0&landingPath=https%3A%2F%2Fexample.com%2F%23q%3D"
                "%26rows%3D20&groups=2%3A1%2C3%3A0%2C1%3A1%2CV2STACK42%3A0%2CSPD_BG%3A0"
            ),
            {"2": True, "3": False, "1": True, "V2STACK42": False, "SPD_BG": False},
            False,  # interactionCount=0: defaults only
            None,
            True,
        ),
        # a trailing comma (as OneTrust writes in genVendors), no optional fields
        ("groups=C0001%3A1%2CC0004%3A0%2C", {"C0001": True, "C0004": False}, None, None, None),
        # an empty groups list says nothing, but is a OneTrust cookie
        ("groups=&interactionCount=3", {}, True, None, None),
        # a datestamp that does not parse gives no time, not an error
        ("datestamp=yesterday&groups=C0001%3A1", {"C0001": True}, None, None, None),
        (
            "datestamp=Tue+Feb+31+2023+10%3A00%3A00+GMT%2B0200&groups=C0001:1",
            {"C0001": True},
            None,
            None,
            None,
        ),
    ],
)
def test_onetrust_values(
    value: str,
    categories: dict[str, bool],
    interacted: bool | None,
    at: float | None,
    gpc: bool | None,
) -> None:
    got = decode_onetrust(value)
    assert (dict(got.categories), got.interacted, got.at, got.gpc) == (
        categories,
        interacted,
        at,
        gpc,
    )


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "empty"),
        ("isGpcEnabled=0&interactionCount=1", "no groups"),
        ("groups=C0001", "malformed groups"),
        ("groups=C0001%3Ayes", "malformed groups"),
        ("groups=C0001%3A2", "malformed groups"),
        ("groups=C%200001%3A1", "malformed groups"),
        ("groups=C0001%253A1", "malformed groups"),  # encoded once too often inside
        ("groups=C0001%3A1%2CC0001%3A0", "duplicate category"),
        ("groups=C0001%3A1&groups=C0002%3A1", "duplicate field"),
        ("groups=C0001%3A1&interactionCount=-1", "malformed interactionCount"),
        ("groups=C0001%3A1&interactionCount=" + "9" * 20, "malformed interactionCount"),
        ("groups=C0001%3A1&isGpcEnabled=true", "malformed isGpcEnabled"),
        ("groups=C0001%3A1&garbage", "malformed query"),
        ("groups=C0001%3A1&x=%FF", "bad percent-encoding"),
        ("groups=C0001%3A1&x=\u00e9", "malformed"),  # cookies arrive as ASCII
        (enc(ONETRUST, 3), "malformed query"),  # three rounds of encoding are not undone
        ("groups=" + "C0001%3A1%2C" * 400, "malformed"),  # longer than a browser keeps
    ],
)
def test_onetrust_rejects(value: str, why: str) -> None:
    assert reason(decode_onetrust, value) == why


# reference §1.8: iabtcf-java TCStringV2Test
TC_STRING = "COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA"


@pytest.mark.parametrize(
    ("value", "tc_string"),
    [
        (TC_STRING, TC_STRING),
        (TC_STRING + ".YAAAAAAAAAAA", TC_STRING + ".YAAAAAAAAAAA"),
        (TC_STRING + "==", TC_STRING + "=="),
        (enc(TC_STRING + "=="), TC_STRING + "=="),
    ],
)
def test_onetrust_tc(value: str, tc_string: str) -> None:
    got = decode_onetrust_tc(value)
    assert got == CMPConsent(cmp=CMP.ONETRUST, categories={}, tc_string=tc_string)
    # SECURITY: the consent string stays out of reprs (and so out of logs)
    assert tc_string not in repr(got)


@pytest.mark.parametrize("value", ["", "CO tybn", "CO~tybn", "CO%00", "{}"])
def test_onetrust_tc_rejects(value: str) -> None:
    reason(decode_onetrust_tc, value)


# --- Cookiebot ----------------------------------------------------------------------------

# reference §5
COOKIEBOT = (
    "{stamp:'AbCdEfGhIjKlMnOpQrStUvWxYz0123456789+/AbCdEfGhIjKlMn==',necessary:true,"
    "preferences:false,statistics:true,marketing:false,method:'explicit',ver:1,"
    "utc:1698057791350,region:'gb'}"
)
COOKIEBOT_CATEGORIES = {
    "necessary": True,
    "preferences": False,
    "statistics": True,
    "marketing": False,
}


def cookiebot_encoded(value: str) -> str:
    """As Cookiebot writes it: only `'` and `,` encoded (the reference's `%27`, `%2C`)."""
    return value.replace("'", "%27").replace(",", "%2C")


@pytest.mark.parametrize(
    "value",
    [
        COOKIEBOT,
        cookiebot_encoded(COOKIEBOT),
        enc(cookiebot_encoded(COOKIEBOT)),  # encoded twice
        enc(COOKIEBOT),
        enc(COOKIEBOT, 2),
    ],
)
def test_cookiebot(value: str) -> None:
    assert decode_cookiebot(value) == CMPConsent(
        cmp=CMP.COOKIEBOT,
        categories=COOKIEBOT_CATEGORIES,
        interacted=True,
        at=1698057791.35,
    )


@pytest.mark.parametrize(
    ("value", "expect"),
    [
        # envato/cookie-consent: outside the targeted area
        (
            "-1",
            CMPConsent(
                cmp=CMP.COOKIEBOT,
                categories=dict.fromkeys(COOKIEBOT_CATEGORIES, True),
                interacted=False,
                others=True,
                no_consent_required=True,
            ),
        ),
        # captured: the same as a literal, with an empty iab2
        (
            (
                "{stamp:%27-1%27%2Cnecessary:true%2Cpreferences:true%2Cstatistics:true%2Cmarketing:"
                "true%2Cmethod:%27implied%27%2Cver:1%2Cutc:1709627572438%2Ciab2:%27%27%2Cregion:"
                "%27VN%27}"
            ),
            CMPConsent(
                cmp=CMP.COOKIEBOT,
                categories=dict.fromkeys(COOKIEBOT_CATEGORIES, True),
                interacted=False,
                at=1709627572.438,
                others=True,
                no_consent_required=True,
            ),
        ),
        # envato/cookie-consent: no method, no utc
        (
            "{stamp:'X',necessary:true,preferences:false,statistics:false,marketing:true,ver:1}",
            CMPConsent(
                cmp=CMP.COOKIEBOT,
                categories={
                    "necessary": True,
                    "preferences": False,
                    "statistics": False,
                    "marketing": True,
                },
            ),
        ),
        # captured: TCF mode carries the TC string in iab2; newer keys are ignored
        (
            cookiebot_encoded(
                "{stamp:'s',necessary:true,preferences:false,statistics:false,marketing:false,"
                f"method:'explicit',ver:2,utc:1715723726358,iab2:'{TC_STRING}.YAAAAAAAAAAA',"
                "gacm:'2~AA==fmR2Lg=',region:'us-34'}"
            ),
            CMPConsent(
                cmp=CMP.COOKIEBOT,
                categories=dict.fromkeys(COOKIEBOT_CATEGORIES, False) | {"necessary": True},
                interacted=True,
                at=1715723726.358,
                tc_string=TC_STRING + ".YAAAAAAAAAAA",
            ),
        ),
        # whitespace and double quotes are tolerated
        (
            (
                '{ stamp : "x" , necessary : true , preferences : true , statistics : false , '
                "marketing : true }"
            ),
            CMPConsent(
                cmp=CMP.COOKIEBOT,
                categories={
                    "necessary": True,
                    "preferences": True,
                    "statistics": False,
                    "marketing": True,
                },
            ),
        ),
    ],
)
def test_cookiebot_values(value: str, expect: CMPConsent) -> None:
    assert decode_cookiebot(value) == expect


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "empty"),
        ("-2", "not an object literal"),
        ('{bad: "json}', "malformed object literal"),  # envato/cookie-consent
        ('{"stamp":"x","necessary":true}', "malformed object literal"),  # JSON is not it
        ("{stamp:'x'}", "missing category"),
        (COOKIEBOT.replace("marketing:false", "marketing:'false'"), "missing category"),
        (COOKIEBOT.replace("marketing:false", "marketing:1"), "missing category"),
        (COOKIEBOT.replace("necessary:true,", ""), "missing category"),
        (COOKIEBOT.replace("ver:1", "ver:1,ver:2"), "duplicate field"),
        (COOKIEBOT.replace("1698057791350", "1698057791350.5"), "bad timestamp"),
        (COOKIEBOT.replace("1698057791350", "9" * 40), "bad timestamp"),
        (COOKIEBOT.replace("region:'gb'", "iab2:'not a tc string'"), "malformed tc string"),
        (COOKIEBOT[:-1], "not an object literal"),
        ("{" + "a:1," * 1100 + "}", "malformed"),
        (enc(COOKIEBOT, 3), "not an object literal"),
    ],
)
def test_cookiebot_rejects(value: str, why: str) -> None:
    assert reason(decode_cookiebot, value) == why


# --- Didomi -------------------------------------------------------------------------------

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


@pytest.mark.parametrize(
    "value",
    [
        didomi_token(DIDOMI),
        didomi_token(DIDOMI, padded=True),
        didomi_token(DIDOMI, urlsafe=True),
        enc(didomi_token(DIDOMI, padded=True)),
        enc(didomi_token(DIDOMI, padded=True), 2),
    ],
)
def test_didomi(value: str) -> None:
    assert decode_didomi(value) == CMPConsent(
        cmp=CMP.DIDOMI,
        categories={
            "cookies": True,
            "analytics": True,
            "geolocation_data": True,
            "select_personalized_ads": False,
        },
        at=1712918128.345,
    )


@pytest.mark.parametrize(
    ("data", "categories", "at"),
    [
        # captured: no purposes at all, only vendors
        (
            {k: v for k, v in DIDOMI.items() if k != "purposes"},
            {},
            1712918128.345,
        ),
        ({"user_id": "u", "purposes": None}, {}, None),
        ({"user_id": "u", "purposes": {"disabled": ["analytics"]}}, {"analytics": False}, None),
        # no `updated`: `created`; an unreadable time is no time
        ({"user_id": "u", "created": "2024-04-12T10:35:28.345+00:00"}, {}, 1712918128.345),
        ({"user_id": "u", "updated": "2024-04-12T10:35:28.345"}, {}, 1712918128.345),
        ({"user_id": "u", "updated": "soon"}, {}, None),
        ({"user_id": "u", "updated": 1712918128}, {}, None),
    ],
)
def test_didomi_values(
    data: dict[str, object], categories: dict[str, bool], at: float | None
) -> None:
    got = decode_didomi(didomi_token(data))
    assert (dict(got.categories), got.at) == (categories, at)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "empty"),
        ("not base64!", "bad base64"),
        ("eyJ1c2VyX2lkIjoi=a", "bad base64"),
        ("a", "bad token"),  # one character cannot be base64
        (base64.b64encode(b"\xff\xfe").decode(), "bad token"),
        (didomi_token("just a string"), "not a didomi token"),
        (didomi_token({"purposes": {"enabled": ["cookies"]}}), "not a didomi token"),
        (didomi_token({"user_id": 1}), "not a didomi token"),
        (didomi_token({"user_id": "u", "purposes": ["cookies"]}), "malformed purposes"),
        (didomi_token({"user_id": "u", "purposes": {"enabled": "cookies"}}), "malformed purposes"),
        (didomi_token({"user_id": "u", "purposes": {"enabled": [1]}}), "malformed purposes"),
        (didomi_token({"user_id": "u", "purposes": {"enabled": [""]}}), "malformed purposes"),
        (didomi_token({"user_id": "u", "purposes": {"enabled": ["a\nb"]}}), "malformed purposes"),
        (
            didomi_token({"user_id": "u", "purposes": {"enabled": ["a"], "disabled": ["a"]}}),
            "duplicate category",
        ),
        (didomi_token([[[[]]]] * 2), "not a didomi token"),
        (didomi_token({"user_id": "u" * 4000}), "malformed"),  # longer than a browser keeps
    ],
)
def test_didomi_rejects(value: str, why: str) -> None:
    assert reason(decode_didomi, value) == why


# --- Klaro --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "categories"),
    [
        ("%7B%22matomo%22%3Afalse%7D", {"matomo": False}),  # reference §5 (ill.)
        ('{"matomo":false}', {"matomo": False}),
        (enc('{"matomo":true}', 2), {"matomo": True}),
        # captured: hyphenated service names
        (
            (
                "%7B%22necessary-cookies%22%3Atrue%2C%22preferences%22%3Afalse%2C%22google-analytics"
                "%22%3Afalse%2C%22google-ads%22%3Afalse%7D"
            ),
            {
                "necessary-cookies": True,
                "preferences": False,
                "google-analytics": False,
                "google-ads": False,
            },
        ),
        # Klaro service names are free text
        (
            enc('{"Necessary cookies":true,"Statistik \u00e4":false}'),
            {"Necessary cookies": True, "Statistik \u00e4": False},
        ),
        ("%7B%7D", {}),
    ],
)
def test_klaro(value: str, categories: dict[str, bool]) -> None:
    assert decode_klaro(value) == CMPConsent(cmp=CMP.KLARO, categories=categories)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "empty"),
        ("%7B%22matomo%22%3Afalse", "bad json"),
        ("{matomo:false}", "bad json"),
        ("[true]", "not an object"),
        ("true", "not an object"),
        ('{"matomo":1}', "malformed service"),
        ('{"matomo":"true"}', "malformed service"),
        ('{"matomo":null}', "malformed service"),
        ('{"":true}', "malformed service"),
        ('{"a\\u0000b":true}', "malformed service"),
        ('{"' + "x" * 200 + '":true}', "malformed service"),
        ("%7B%22a%22%3A%ff%7D", "bad percent-encoding"),
        (enc('{"matomo":true}', 3), "bad json"),
        ("[" * 1200 + "]" * 1200, "bad json"),  # nested deeper than any parser follows
    ],
)
def test_klaro_rejects(value: str, why: str) -> None:
    assert reason(decode_klaro, value) == why


# --- CookieYes ----------------------------------------------------------------------------

COOKIEYES = (  # reference §5
    "consentid:AbCdEfGhIjKlMnOpQrStUvWxYz012345,consent:yes,action:yes,necessary:yes,"
    "functional:no,analytics:no,performance:no,advertisement:no,other:no"
)


@pytest.mark.parametrize(
    ("value", "categories", "interacted"),
    [
        (
            COOKIEYES,
            {
                "necessary": True,
                "functional": False,
                "analytics": False,
                "performance": False,
                "advertisement": False,
                "other": False,
            },
            True,
        ),
        (enc(COOKIEYES), None, True),
        (enc(COOKIEYES, 2), None, True),
        # captured: before any choice every flag is empty
        (
            (
                "consentid:AbCd,consent:,action:,necessary:,functional:,analytics:,performance:,"
                "advertisement:,other:"
            ),
            {},
            False,
        ),
        # captured: no action recorded, some categories answered
        (
            "consentid:AbCd,consent:no,action:,necessary:yes,functional:yes,analytics:no",
            {"necessary": True, "functional": True, "analytics": False},
            False,
        ),
        ("consentid:,consent:yes,action:no,necessary:yes,custom-1:yes", None, False),
    ],
)
def test_cookieyes(value: str, categories: dict[str, bool] | None, interacted: bool) -> None:
    got = decode_cookieyes(value)
    assert got.cmp == "cookieyes"
    if categories is not None:
        assert dict(got.categories) == categories
    assert "consentid" not in got.categories and "action" not in got.categories
    assert got.interacted is interacted


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "empty"),
        ("consent:yes,action:yes,necessary:yes", "no consentid"),
        ("consentid:x,necessary", "malformed item"),
        ("consentid:x,,necessary:yes", "malformed item"),
        ("consentid:x,necess ary:yes", "malformed item"),
        ("consentid:x,necessary:true", "malformed flag"),
        ("consentid:x,action:maybe", "malformed flag"),
        ("consentid:x,necessary:yes,necessary:no", "duplicate field"),
        ("consentid:x%2Cnecessary:yes%FF", "bad percent-encoding"),
        (enc(COOKIEYES, 3), "malformed item"),
    ],
)
def test_cookieyes_rejects(value: str, why: str) -> None:
    assert reason(decode_cookieyes, value) == why


# --- Complianz ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cookies", "expect"),
    [
        ({}, None),
        ({"cmplz_banner-status": "dismissed", "cmplz_policy_id": "14"}, None),
        # reference §5 and captured request headers
        (
            {
                "cmplz_consented_services": "",
                "cmplz_policy_id": "14",
                "cmplz_marketing": "allow",
                "cmplz_statistics": "allow",
                "cmplz_preferences": "allow",
                "cmplz_functional": "allow",
                "cmplz_banner-status": "dismissed",
            },
            CMPConsent(
                cmp=CMP.COMPLIANZ,
                categories=dict.fromkeys(
                    ["functional", "preferences", "statistics", "marketing"], True
                ),
                interacted=True,
            ),
        ),
        (
            {"cmplz_functional": "allow", "cmplz_marketing": "deny", "cmplz_statistics": "deny"},
            CMPConsent(
                cmp=CMP.COMPLIANZ,
                categories={"functional": True, "statistics": False, "marketing": False},
            ),
        ),
    ],
)
def test_complianz(cookies: dict[str, str], expect: CMPConsent | None) -> None:
    assert decode_complianz(cookies) == expect


@pytest.mark.parametrize("flag", ["", "yes", "Allow", "allow ", "%FF", "a" * 5000])
def test_complianz_rejects(flag: str) -> None:
    with pytest.raises(CMPError) as e:
        decode_complianz({"cmplz_functional": "allow", "cmplz_marketing": flag})
    assert e.value.reason in REASONS


# --- Commanders Act -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "categories", "others", "at"),
    [
        # consent-cookie.md example 1: opted in to 1 and 3; 4 is blocked on (required)
        (
            "0@002|12|3441@1%2C3@4@1592900933049@1592900933049",
            {"1": True, "3": True, "4": True},
            False,
            1592900933.049,
        ),
        # example 2: opted out of everything; 4 is still blocked on
        ("1@012|26|4221@@4@1592900933049@1592900933049", {"4": True}, False, 1592900933.049),
        # the field table's form: timestamps comma-separated, and a vendor string
        (
            (
                "0@008|2|2|42|12|34@2%2C12%2C13@5@1592900933049%2C1592900933049%2C1624436933049"
                "@AAAAAjkb23"
            ),
            {"2": True, "12": True, "13": True, "5": True},
            False,
            1592900933.049,
        ),
        # the older page's layout: banner and site in fields of their own
        (
            "0@002@12@34@1%2C3@4@1592900933049,1592900933049,1624436933049",
            {"1": True, "3": True, "4": True},
            False,
            1592900933.049,
        ),
        ("0@002|2|2|42@12@34@1%2C3@@1592900933049", {"1": True, "3": True}, False, 1592900933.049),
        # opted out of the listed categories only: of the others nothing is said
        (
            "1@002|12|3441@2%2C5@4@1592900933049",
            {"2": False, "5": False, "4": True},
            None,
            1592900933.049,
        ),
        # old banners: ALL opted out
        ("1@002|12|3441@ALL@@1592900933049", {}, False, 1592900933.049),
        # no timestamps; timestamps in seconds
        ("0@002|12|3441@1@", {"1": True}, False, None),
        ("0@002|12|3441@1@@1592900933", {"1": True}, False, 1592900933.0),
        # the whole value encoded once more (%40 "@", %7C "|", %252C)
        (
            enc("0@002|12|3441@1%2C3@4@1592900933049"),
            {"1": True, "3": True, "4": True},
            False,
            1592900933.049,
        ),
    ],
)
def test_commanders_act(
    value: str, categories: dict[str, bool], others: bool | None, at: float | None
) -> None:
    assert decode_commanders_act(value) == CMPConsent(
        cmp=CMP.COMMANDERS_ACT, categories=categories, others=others, at=at
    )


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "empty"),
        ("0@002|12|3441", "malformed"),
        ("2@002|12|3441@1@4", "malformed"),
        ("0@002|12@1@4", "malformed version"),  # two parts: neither layout
        ("0@00a|12|3441@1@4", "malformed version"),
        ("0@002@12@1@4", "malformed version"),  # older layout needs six fields
        ("0@002@1x@34@1@4", "malformed banner"),
        ("0@002|12|3441@1%2C3%2C@4", "malformed categories"),
        ("0@002|12|3441@1;3@4", "malformed categories"),
        ("0@002|12|3441@ALL@4", "malformed categories"),  # ALL only means opted out
        ("0@002|12|3441@1%2C4@4", "duplicate category"),  # never in both lists
        ("0@002|12|3441@1@4@not-a-time!", "malformed timestamps"),
        ("0@002|12|3441@1@4@AAAA@1592900933049", "malformed timestamps"),
        ("0@002|12|3441@1@4@1592900933049@", "malformed timestamps"),
        ("0@002|12|3441@1@4@" + "9" * 30, "malformed timestamps"),
        (enc("0@002|12|3441@1%2C3@4", 3), "malformed"),
        # the cookie's own %2C plus two more rounds: three, one too many
        (enc("0@002|12|3441@1%2C3@4", 2), "malformed categories"),
    ],
)
def test_commanders_act_rejects(value: str, why: str) -> None:
    assert reason(decode_commanders_act, value) == why


# --- everything together ------------------------------------------------------------------


def test_decode_cmp_cookies() -> None:
    cookies = {
        "OptanonConsent": ONETRUST,
        "eupubconsent-v2": TC_STRING,
        "CookieConsent": '{bad: "json}',  # fails: reported, not raised
        "didomi_token": didomi_token(DIDOMI),
        "klaro": "%7B%22matomo%22%3Afalse%7D",
        "cookieyes-consent": "consent:yes",  # fails
        "TC_PRIVACY": "1@012|26|4221@@4@1592900933049@1592900933049",
        "cmplz_marketing": "maybe",  # fails
        "_ga": "GA1.1.1.1",
    }
    decoded, failures = decode_cmp_cookies(cookies)
    assert [c.cmp for c in decoded] == ["onetrust", "onetrust", "didomi", "klaro", "commanders_act"]
    assert decoded[0].categories == ONETRUST_GROUPS
    assert decoded[1].tc_string == TC_STRING
    assert failures == [
        CMPFailure(cmp=CMP.COOKIEBOT, reason="malformed object literal"),
        CMPFailure(cmp=CMP.COOKIEYES, reason="no consentid"),
        CMPFailure(cmp=CMP.COMPLIANZ, reason="malformed flag"),
    ]
    assert [(cmp, why) for cmp, why in failures][0] == ("cookiebot", "malformed object literal")
    # SECURITY: failures carry names and reasons, never values
    assert not any(v and v in repr(failures) for v in cookies.values())


def test_decode_cmp_cookies_without_cmp_cookies() -> None:
    assert decode_cmp_cookies({}) == ([], [])
    assert decode_cmp_cookies({"optanonconsent": ONETRUST, "_ga": "x"}) == ([], [])


def test_decode_cmp_cookies_complianz() -> None:
    decoded, failures = decode_cmp_cookies({"cmplz_statistics": "deny"})
    assert decoded == [CMPConsent(cmp=CMP.COMPLIANZ, categories={"statistics": False})]
    assert failures == []


def test_cmp_cookies_table() -> None:
    assert dict(CMP_COOKIES) == {
        "OptanonConsent": "onetrust",
        "eupubconsent-v2": "onetrust",
        "CookieConsent": "cookiebot",
        "didomi_token": "didomi",
        "klaro": "klaro",
        "cookieyes-consent": "cookieyes",
        "TC_PRIVACY": "commanders_act",
    }


@pytest.mark.parametrize(
    ("value", "expect"),
    [
        (ONETRUST, "onetrust"),
        (enc(ONETRUST), "onetrust"),
        (COOKIEBOT, "cookiebot"),
        (cookiebot_encoded(COOKIEBOT), "cookiebot"),
        ("-1", "cookiebot"),
        (COOKIEYES, "cookieyes"),
        ("0@002|12|3441@1%2C3@4@1592900933049@1592900933049", "commanders_act"),
        (didomi_token(DIDOMI), "didomi"),
        ("%7B%22matomo%22%3Afalse%7D", "klaro"),
        (TC_STRING, None),  # a TC string is not a CMP format
        ("", None),
        ("hello", None),
        ("{}", "klaro"),
        ("x" * (MAX_COOKIE_LENGTH + 1), None),
    ],
)
def test_detect_cmp_value(value: str, expect: str | None) -> None:
    assert detect_cmp_value(value) == expect


# --- properties ---------------------------------------------------------------------------

VALID: list[tuple[Callable[[str], CMPConsent], str]] = [
    (decode_onetrust, ONETRUST),
    (decode_onetrust_tc, TC_STRING),
    (decode_cookiebot, cookiebot_encoded(COOKIEBOT)),
    (decode_didomi, didomi_token(DIDOMI)),
    (decode_klaro, "%7B%22matomo%22%3Afalse%2C%22youtube%22%3Atrue%7D"),
    (decode_cookieyes, COOKIEYES),
    (decode_commanders_act, "0@008|2|2|42|12|34@2%2C12@5@1592900933049%2C1592900933049@AAAA"),
]
PIECES = st.sampled_from(
    [
        "%",
        "%2",
        "%25",
        "%2C",
        "%27",
        "%3A",
        "%40",
        "%7C",
        "%FF",
        "%C3",
        ",",
        ":",
        "@",
        "|",
        "=",
        "&",
        "'",
        '"',
        "{",
        "}",
        "[",
        "]",
        "-1",
        "ALL",
        "true",
        "yes",
        "\x00",
        "\u00e9",
        "groups=",
        "consentid:",
        " ",
    ]
)
TEXT = st.one_of(st.text(), st.lists(st.one_of(PIECES, st.text(max_size=3))).map("".join))


def check_total(decode: Decoder, value: str) -> None:
    try:
        got = decode(value)
    except CMPError as e:
        assert str(e) == e.reason
        assert e.reason in REASONS
    else:
        assert isinstance(got, CMPConsent)
        assert all(isinstance(k, str) and type(v) is bool for k, v in got.categories.items())


@pytest.mark.parametrize("decode", DECODERS)
@given(value=TEXT)
def test_decoders_raise_only_cmp_error(decode: Decoder, value: str) -> None:
    check_total(decode, value)


@pytest.mark.parametrize(("decode", "valid"), VALID)
@given(data=st.data())
def test_mutated_values_raise_only_cmp_error(
    decode: Decoder, valid: str, data: st.DataObject
) -> None:
    decode(valid)  # the base value is valid
    value = valid
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(value)))
        op = data.draw(st.sampled_from(["insert", "delete", "replace", "truncate"]))
        piece = data.draw(st.one_of(PIECES, st.text(max_size=2)))
        if op == "insert":
            value = value[:pos] + piece + value[pos:]
        elif op == "delete":
            value = value[:pos] + value[pos + 1 :]
        elif op == "replace":
            value = value[:pos] + piece + value[pos + 1 :]
        else:
            value = value[:pos]
    check_total(decode, value)


# The values with none of the CMP's own encoding (OneTrust's values always carry theirs).
PLAIN = [
    (decode_onetrust, ONETRUST),
    (decode_onetrust_tc, TC_STRING + "=="),
    (decode_cookiebot, COOKIEBOT),
    (decode_didomi, didomi_token(DIDOMI, padded=True)),
    (decode_klaro, '{"matomo":false,"youtube":true}'),
    (decode_cookieyes, COOKIEYES),
    (decode_commanders_act, "0@008|2|2|42|12|34@2,12@5@1592900933049,1592900933049@AAAA"),
]


@pytest.mark.parametrize(("decode", "plain"), PLAIN)
def test_two_rounds_of_encoding_are_undone_not_three(decode: Decoder, plain: str) -> None:
    expect = decode(plain)
    assert decode(enc(plain)) == expect
    assert decode(enc(plain, 2)) == expect
    with pytest.raises(CMPError):
        decode(enc(plain, 3))


@given(st.dictionaries(st.sampled_from([*CMP_COOKIES, "cmplz_marketing", "x"]), TEXT))
def test_decode_cmp_cookies_never_raises(cookies: dict[str, str]) -> None:
    decoded, failures = decode_cmp_cookies(cookies)
    assert all(f.reason in REASONS for f in failures)
    assert len(decoded) + len(failures) <= len(cookies)


@given(TEXT)
def test_detect_never_raises(value: str) -> None:
    assert detect_cmp_value(value) in {None, *CMP_COOKIES.values()} - {"complianz"}


def test_the_registry_covers_every_cmp_config_and_the_example_name() -> None:
    # One name per CMP: the enum, the decoders' registry, config's defaults and the
    # example config all agree (the drift that made Commanders Act silently ignored).
    assert set(FORMATS) == set(CMP) == set(SignalsConfig().cmp)
    assert set(SignalsConfig().read) == set(SIGNALS)
    example = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    signals = example["consent"]["signals"]
    assert set(signals["read"]) == set(SIGNALS)
    assert set(signals["cmp"]) == set(CMP)
    valid = dict(VALID)
    for f in FORMATS.values():
        assert f.cookies or f.read_all is not None, f.cmp
        for _, decoder in f.cookies:  # each decoder names the CMP whose entry holds it
            assert decoder(valid[decoder]).cmp is f.cmp
