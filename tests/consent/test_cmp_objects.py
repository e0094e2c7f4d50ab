"""gateway.consent.cmp_objects: Cookiebot, Didomi and Klaro.

Sources of the examples: tests/consent/cmp_harness.py.
"""

from __future__ import annotations

import base64

import pytest

from gateway.consent.cmp_base import CMPConsent
from gateway.consent.cmp_objects import decode_cookiebot, decode_didomi, decode_klaro
from gateway.model import CMP
from tests.consent.cmp_harness import (
    COOKIEBOT,
    DIDOMI,
    TC_STRING,
    cookiebot_encoded,
    didomi_token,
    enc,
    reason,
)

# --- Cookiebot ----------------------------------------------------------------------------

COOKIEBOT_CATEGORIES = {
    "necessary": True,
    "preferences": False,
    "statistics": True,
    "marketing": False,
}


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
        # vendors: Didomi's own ids, enabled -> True (vendors_li is not consent)
        vendors={"google": True, "c:example-AbCd1234": True},
    )


@pytest.mark.parametrize(
    ("vendors", "answers"),
    [
        (
            {"enabled": ["c:posthog-Xy12"], "disabled": [755]},
            {"c:posthog-Xy12": True, "755": False},
        ),
        ({"disabled": ["google"]}, {"google": False}),
        (None, {}),
    ],
)
def test_didomi_vendors(vendors: object, answers: dict[str, bool]) -> None:
    got = decode_didomi(didomi_token({"user_id": "u", "vendors": vendors}))
    assert dict(got.vendors) == answers


@pytest.mark.parametrize(
    "vendors",
    [["google"], {"enabled": "google"}, {"enabled": [True]}, {"enabled": [""]}, {"enabled": [0]}],
)
def test_didomi_refuses_malformed_vendors(vendors: object) -> None:
    assert reason(decode_didomi, didomi_token({"user_id": "u", "vendors": vendors})) == (
        "malformed vendors"
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
    # Klaro's choices are per service: each is a category and a vendor answer at once
    assert decode_klaro(value) == CMPConsent(
        cmp=CMP.KLARO, categories=categories, vendors=categories
    )


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
