"""gateway.consent.cmp_lists: OneTrust, CookieYes, Complianz and Commanders Act.

Sources of the examples: tests/consent/cmp_harness.py.
"""

from __future__ import annotations

import pytest

from gateway.consent.cmp_base import CMPConsent
from gateway.consent.cmp_lists import (
    decode_commanders_act,
    decode_complianz,
    decode_cookieyes,
    decode_onetrust,
    decode_onetrust_tc,
)
from gateway.errors import CMPError
from gateway.model import CMP
from tests.consent.cmp_harness import (
    COOKIEYES,
    ONETRUST,
    ONETRUST_GROUPS,
    REASONS,
    TC_STRING,
    enc,
    reason,
)

# --- OneTrust -----------------------------------------------------------------------------


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
    ("gen_vendors", "answers"),
    [
        ("V1%3A1%2CV2%3A0%2C", {"V1": True, "V2": False}),  # a trailing comma, as written
        ("", {}),
    ],
)
def test_onetrust_general_vendors(gen_vendors: str, answers: dict[str, bool]) -> None:
    got = decode_onetrust(f"groups=C0001%3A1&genVendors={gen_vendors}")
    assert dict(got.vendors) == answers


@pytest.mark.parametrize("gen_vendors", ["V1%3A2", "V%201%3A1", "V1"])
def test_onetrust_refuses_malformed_general_vendors(gen_vendors: str) -> None:
    with pytest.raises(CMPError) as caught:
        decode_onetrust(f"groups=C0001%3A1&genVendors={gen_vendors}")
    assert caught.value.reason == "malformed genVendors"


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


# --- CookieYes ----------------------------------------------------------------------------


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
