"""gateway.consent.cmp: the registry of CMPs, `decode_cmp_cookies` and `detect_cmp_value`,
and the properties of every decoder it holds.

Sources of the examples: tests/consent/cmp_harness.py.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import SignalsConfig
from gateway.consent import cmp as cmp_mod
from gateway.consent.cmp import (
    CMP_COOKIES,
    FORMATS,
    CMPFailure,
    decode_cmp_cookies,
    detect_cmp_value,
)
from gateway.consent.cmp_base import MAX_COOKIE_LENGTH, CMPConsent
from gateway.consent.cmp_lists import (
    decode_commanders_act,
    decode_cookieyes,
    decode_onetrust,
    decode_onetrust_tc,
)
from gateway.consent.cmp_objects import decode_cookiebot, decode_didomi, decode_klaro
from gateway.errors import CMPError
from gateway.model import CMP, SIGNALS
from tests.conftest import ROOT
from tests.consent.cmp_harness import (
    COOKIEBOT,
    COOKIEYES,
    DIDOMI,
    ONETRUST,
    ONETRUST_GROUPS,
    REASONS,
    TC_STRING,
    Decoder,
    cookiebot_encoded,
    didomi_token,
    enc,
)

DECODERS: list[Decoder] = [
    decode_onetrust,
    decode_onetrust_tc,
    decode_cookiebot,
    decode_didomi,
    decode_klaro,
    decode_cookieyes,
    decode_commanders_act,
]


def test_exports() -> None:
    assert all(hasattr(cmp_mod, name) for name in cmp_mod.__all__)


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
