"""gateway.consent.gpp: GPP and US Privacy strings.

Every vector names where it comes from and what there says it means:

- GPP spec: InteractiveAdvertisingBureau/Global-Privacy-Platform,
  `Core/Consent String Specification.md` (header examples, Fibonacci coding);
- es: IABTechLab/iabgpp-es (3.2.0, the reference the differential test runs),
  `modules/cmpapi/test/...`; where an es test's expectations are written as
  `expect(value, actual)` (chai: no assertion at all), the values here come from the bits
  and from iabgpp-java, and test_gpp_differential.py checks them against es itself;
- java: IABTechLab/iabgpp-java, `iabgpp-encoder/src/test/java/com/iab/gpp/encoder/...`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.consent import gpp
from gateway.consent.gpp import (
    MAX_GPP_LENGTH,
    OPT_OUTS,
    GPPString,
    USPrivacy,
    applicable,
    decode_gpp,
    decode_us_privacy,
    us_opt_outs,
    usp_opted_out,
)
from gateway.errors import GPPError

# --- a small encoder, for building strings in tests ---------------------------------

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def b64(bits: str) -> str:
    """Bits to base64url, zero-padded to a multiple of 6 only (es pads to 8 first)."""
    bits += "0" * (-len(bits) % 6)
    return "".join(_ALPHABET[int(bits[i : i + 6], 2)] for i in range(0, len(bits), 6))


def fib(n: int) -> str:
    """The Fibonacci code word of n >= 1 (Zeckendorf, least significant first, then 1)."""
    weights = [1, 2]
    while weights[-1] <= n:
        weights.append(weights[-1] + weights[-2])
    bits = ["0"] * len(weights)
    for i in range(len(weights) - 1, -1, -1):
        if weights[i] <= n:
            bits[i] = "1"
            n -= weights[i]
    return "".join(bits).rstrip("0") + "1"


def fib_range(ids: list[int]) -> str:
    """A Fibonacci range as es writes it: runs of consecutive ids become groups."""
    bits, previous, i = "", 0, 0
    groups = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j] + 1 == ids[j + 1]:
            j += 1
        if j == i:
            bits += "0" + fib(ids[i] - previous)
        else:
            bits += "1" + fib(ids[i] - previous) + fib(ids[j] - ids[i])
        previous, i, groups = ids[j], j + 1, groups + 1
    return f"{groups:012b}" + bits


def header(ids: list[int]) -> str:
    return b64("000011" + "000001" + fib_range(ids))


def gpp_string(*sections: tuple[int, str]) -> str:
    return "~".join([header([sid for sid, _ in sections]), *(text for _, text in sections)])


def ints(*values: int, width: int = 2) -> str:
    return "".join(f"{v:0{width}b}" for v in values)


def tupled(fields: Mapping[str, object]) -> dict[str, object]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}


TC = "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA"  # GPP spec, "URL-based services"
CA = "BPSG_8APSG_8AAyACAENGdCgf_gfgAfgfgBhADVqxGAD0AILVgAA.fHHHA4444ao"  # es TcfCaV1.test.ts


# --- header and Fibonacci coding ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ids"),
    [
        # GPP spec, "Header" examples
        (f"DBABM~{TC}", (2,)),
        (f"DBACNY~{TC}~1YNN", (2, 6)),
        (f"DBABjw~{CA}~1YNN", (5, 6)),  # a group: start 5, then end - start = 1
        # java HeaderV1Test.testDecode1 / es HeaderV1.test.ts "should decode DBAA"
        ("DBAA", ()),
        # es HeaderV1.test.ts "should decode DBABMA", "should decode DBACNYA"; the spec's
        # strings with es's zero padding to a multiple of 8 bits first
        (f"DBABMA~{TC}", (2,)),
        (f"DBACNYA~{TC}~1YNN", (2, 6)),
        # es GppModel.test.ts "should decode uspv1 section"
        ("DBABTA~1YNN", (6,)),
    ],
)
def test_header_section_ids(value: str, ids: tuple[int, ...]) -> None:
    decoded = decode_gpp(value)
    assert decoded.version == 1
    assert decoded.section_ids == ids
    assert tuple(decoded.raw_sections) == ids


def test_the_test_encoder_writes_the_spec_headers() -> None:
    # GPP spec: DBABM = 000011 000001 | 000000000001 | 0 011 00 -> [2]
    assert header([2]) == "DBABM"
    assert header([2, 6]) == "DBACNY"
    assert header([5, 6]) == "DBABjw"
    assert header([]) == "DBAA"


@pytest.mark.parametrize(
    ("n", "code"),
    # GPP spec, "Fibonacci Encoding" table (and its continuation)
    [(1, "11"), (2, "011"), (3, "0011"), (4, "1011"), (5, "00011"), (6, "10011")]
    + [(7, "01011"), (8, "000011"), (12, "101011"), (89, "00000000011")],
)
def test_fibonacci_code_words(n: int, code: str) -> None:
    assert fib(n) == code
    bits = gpp._Bits(b64(code + "0"), "test")
    assert bits.fib() == n
    assert bits.pos == len(code)


def test_fibonacci_word_longer_than_32_bits_is_refused() -> None:
    with pytest.raises(GPPError, match="Fibonacci integer too large"):
        gpp._Bits(b64("0" * 40 + "11"), "test").fib()


# --- the spec's worked example, tcfeuv2 -----------------------------------------------


def test_spec_example_carries_the_tc_string() -> None:
    # GPP spec, "URL-based services": gpp=DBABMA~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA
    decoded = decode_gpp(f"DBABMA~{TC}")
    assert decoded.raw_sections == {2: TC}
    tcfeuv2 = decoded.sections["tcfeuv2"]
    # the TC string's own fields (gateway.consent.tcf); es reads the same (differential test)
    assert tcfeuv2["version"] == 2
    assert tcfeuv2["cmp_id"] == 31
    assert tcfeuv2["vendor_list_version"] == 126
    assert tcfeuv2["consent_language"] == "EN"


def test_tcfeuv2_section_es_gppmodel_example() -> None:
    # es GppModel.test.ts "should decode uspv1 and tcfeuv2 sections"
    value = "DBACNYA~CPSG_8APSG_8ANwAAAENAwCAAAAAAAAAAAAAAAAAAAAA.QAAA.IAAA~1YNN"
    decoded = decode_gpp(value)
    tcfeuv2 = decoded.sections["tcfeuv2"]
    assert tcfeuv2["cmp_id"] == 880
    assert tcfeuv2["vendor_list_version"] == 48
    assert tcfeuv2["policy_version"] == 2
    assert tcfeuv2["publisher_country_code"] == "AA"
    assert tcfeuv2["created"] == tcfeuv2["last_updated"] == "2022-01-01T00:00:00Z"
    assert decoded.sections["uspv1"] == {
        "version": 1,
        "notice": "Y",
        "opt_out_sale": "N",
        "lspa_covered": "N",
    }


def test_a_bad_tc_string_fails_the_gpp_string() -> None:
    with pytest.raises(GPPError, match="^tcfeuv2: "):
        decode_gpp("DBABMA~BOEFEAyOEFEAyAHABDENAI4AAAB9vABAASA")  # a TCF v1.1 string


# --- US sections: vectors -------------------------------------------------------------

_MSPA_112 = {
    "mspa_covered_transaction": 1,
    "mspa_opt_out_option_mode": 1,
    "mspa_service_provider_mode": 2,
}
_USNAT_ALL_ONES = {
    "version": 1,
    **dict.fromkeys(
        [
            "sharing_notice",
            "sale_opt_out_notice",
            "sharing_opt_out_notice",
            "targeted_advertising_opt_out_notice",
            "sensitive_data_processing_opt_out_notice",
            "sensitive_data_limit_use_notice",
            "sale_opt_out",
            "sharing_opt_out",
            "targeted_advertising_opt_out",
        ],
        1,
    ),
}

US_VECTORS = [
    # java UsNatTest.testDecode1 (16/3 layout with Version 1; es 3.2.0 decodes the same bits
    # but, going by Version, returns only the first 12/2 entries)
    (
        7,
        "BVVVkkkkkpFY.YA",
        {
            **_USNAT_ALL_ONES,
            "sensitive_data_processing": [2, 1, 0] * 5 + [2],
            "known_child_sensitive_data_consents": [2, 1, 0],
            "personal_data_consents": 1,
            **_MSPA_112,
            "gpc_segment_included": True,
            "gpc": True,
        },
    ),
    # java UsNatTest.testDecode1 at 0a9d59a (the 12/2 layout, 11 characters): padded to 16/3
    (
        7,
        "BVVVkkkklWA.YA",
        {
            **_USNAT_ALL_ONES,
            "sensitive_data_processing": [2, 1, 0] * 4 + [0] * 4,
            "known_child_sensitive_data_consents": [2, 1, 0],
            "personal_data_consents": 1,
            **_MSPA_112,
            "gpc_segment_included": True,
            "gpc": True,
        },
    ),
    # java UsNatTest.testDecodeWithGpcSegmentExcluded at 0a9d59a
    (
        7,
        "BVVVkkkklWA",
        {
            **_USNAT_ALL_ONES,
            "sensitive_data_processing": [2, 1, 0] * 4 + [0] * 4,
            "known_child_sensitive_data_consents": [2, 1, 0],
            "personal_data_consents": 1,
            **_MSPA_112,
            "gpc_segment_included": False,
            "gpc": False,
        },
    ),
    # es UsNat.test.ts "should decode BVQqAAAACg" (its expectations are vacuous; values
    # from the bits: 01 01 01 01 00 00 | 10 10 10 | 12 x 00 | 00 00 | 10 | 10 00 00)
    (
        7,
        "BVQqAAAACg",
        {
            "version": 1,
            "sharing_notice": 1,
            "sale_opt_out_notice": 1,
            "sharing_opt_out_notice": 1,
            "targeted_advertising_opt_out_notice": 1,
            "sensitive_data_processing_opt_out_notice": 0,
            "sensitive_data_limit_use_notice": 0,
            "sale_opt_out": 2,
            "sharing_opt_out": 2,
            "targeted_advertising_opt_out": 2,
            "sensitive_data_processing": [0] * 16,
            "known_child_sensitive_data_consents": [0, 0, 0],
            "personal_data_consents": 2,
            "mspa_covered_transaction": 2,
            "mspa_opt_out_option_mode": 0,
            "mspa_service_provider_mode": 0,
            "gpc_segment_included": False,
            "gpc": False,
        },
    ),
    # java UsCaTest.testDecode1
    (
        8,
        "BVWSSSVY.YA",
        {
            "version": 1,
            "sale_opt_out_notice": 1,
            "sharing_opt_out_notice": 1,
            "sensitive_data_limit_use_notice": 1,
            "sale_opt_out": 1,
            "sharing_opt_out": 1,
            "sensitive_data_processing": [2, 1, 0, 2, 1, 0, 2, 1, 0],
            "known_child_sensitive_data_consents": [2, 1],
            "personal_data_consents": 1,
            **_MSPA_112,
            "gpc_segment_included": True,
            "gpc": True,
        },
    ),
    # java UsVaTest.testDecode1
    (
        9,
        "BVWSSVY",
        {
            "version": 1,
            "sharing_notice": 1,
            "sale_opt_out_notice": 1,
            "targeted_advertising_opt_out_notice": 1,
            "sale_opt_out": 1,
            "targeted_advertising_opt_out": 1,
            "sensitive_data_processing": [2, 1, 0, 2, 1, 0, 2, 1],
            "known_child_sensitive_data_consents": 1,
            **_MSPA_112,
        },
    ),
    # java UsCoTest.testDecode1
    (
        10,
        "BVWSSVg.YA",
        {
            "version": 1,
            "sharing_notice": 1,
            "sale_opt_out_notice": 1,
            "targeted_advertising_opt_out_notice": 1,
            "sale_opt_out": 1,
            "targeted_advertising_opt_out": 1,
            "sensitive_data_processing": [2, 1, 0, 2, 1, 0, 2],
            "known_child_sensitive_data_consents": 1,
            **_MSPA_112,
            "gpc_segment_included": True,
            "gpc": True,
        },
    ),
    # java UsUtTest.testDecode1 (es UsUt.test.ts says 3 for the last field, vacuously)
    (
        11,
        "BVVkklWA",
        {
            "version": 1,
            "sharing_notice": 1,
            "sale_opt_out_notice": 1,
            "targeted_advertising_opt_out_notice": 1,
            "sensitive_data_processing_opt_out_notice": 1,
            "sale_opt_out": 1,
            "targeted_advertising_opt_out": 1,
            "sensitive_data_processing": [2, 1, 0, 2, 1, 0, 2, 1],
            "known_child_sensitive_data_consents": 1,
            **_MSPA_112,
        },
    ),
    # java UsCtTest.testDecode1
    (
        12,
        "BVWSSZFg.YA",
        {
            "version": 1,
            "sharing_notice": 1,
            "sale_opt_out_notice": 1,
            "targeted_advertising_opt_out_notice": 1,
            "sale_opt_out": 1,
            "targeted_advertising_opt_out": 1,
            "sensitive_data_processing": [2, 1, 0, 2, 1, 0, 2, 1],
            "known_child_sensitive_data_consents": [2, 1, 0],
            **_MSPA_112,
            "gpc_segment_included": True,
            "gpc": True,
        },
    ),
    # es UsMd.test.ts "should decode" (BVVV.Y)
    (
        24,
        "BVVV.Y",
        {
            "mspa_version": 1,
            "mspa_covered_transaction": 1,
            "mspa_mode": 1,
            "processing_notice": 1,
            "sale_opt_out_notice": 1,
            "targeted_advertising_opt_out_notice": 1,
            "sale_opt_out": 1,
            "targeted_advertising_opt_out": 1,
            "additional_data_processing_consent": 1,
            "gpc_segment_included": True,
            "gpc": True,
        },
    ),
    # es UsRi.test.ts "should decode" (BVVV.kkk)
    (
        27,
        "BVVV.kkk",
        {
            "mspa_version": 1,
            "mspa_covered_transaction": 1,
            "mspa_mode": 1,
            "processing_notice": 1,
            "sale_opt_out_notice": 1,
            "targeted_advertising_opt_out_notice": 1,
            "sale_opt_out": 1,
            "targeted_advertising_opt_out": 1,
            "known_child_sensitive_data_consents": 1,
            "additional_data_processing_consent": 1,
            "sensitive_data_consent_segment_included": True,
            "sensitive_data_processing": [2, 1, 0, 2, 1, 0, 2, 1],
        },
    ),
    # es UsRi.test.ts "should encode default with sensitive data consent segment excluded"
    (
        27,
        "BQAA",
        {
            "mspa_version": 1,
            "mspa_covered_transaction": 1,
            **dict.fromkeys(
                [
                    "mspa_mode",
                    "processing_notice",
                    "sale_opt_out_notice",
                    "targeted_advertising_opt_out_notice",
                    "sale_opt_out",
                    "targeted_advertising_opt_out",
                    "known_child_sensitive_data_consents",
                    "additional_data_processing_consent",
                ],
                0,
            ),
            "sensitive_data_consent_segment_included": False,
            "sensitive_data_processing": [0] * 8,
        },
    ),
]


@pytest.mark.parametrize(("sid", "text", "fields"), US_VECTORS, ids=lambda v: str(v)[:16])
def test_us_section_vectors(sid: int, text: str, fields: dict[str, object]) -> None:
    decoded = decode_gpp(gpp_string((sid, text)))
    assert dict(decoded.sections[gpp.SECTION_NAMES[sid]]) == tupled(fields)


def test_usnat_layout_goes_by_length_not_version() -> None:
    # consent-signals §2.4: es 3.2 writes Version 2 with the same 16/3 bits (CVVV...)
    v1 = decode_gpp(gpp_string((7, "BVVVkkkkkpFY"))).sections["usnat"]
    v2 = decode_gpp(gpp_string((7, "CVVVkkkkkpFY"))).sections["usnat"]
    assert v2["version"] == 2
    assert {**v1, "version": 2} == dict(v2)


def test_es_gppmodel_defaults_of_every_early_section() -> None:
    # es GppModel.test.ts "should decode defaults from all sections" (0087a7e): the
    # all-zero sections of 2022, MspaCoveredTransaction 0 included, are read as encoded
    value = (
        "DBACOaw~CPSG_8APSG_8AAAAAAENAACAAAAAAAAAAAAAAAAAAAAA.QAAA.IAAA"
        "~CPSG_8APSG_8AAAAAAENAACAAAAAAAAAAAAAAAAA.YAAAAAAAAAA~1---~BAAAAAAAAAA.QA~BAAAAAAA.QA"
        "~BAAAAAA~BAAAAAA.QA~BAAAAAAA~BAAAAAAA.QA"
    )
    decoded = decode_gpp(value)
    assert decoded.section_ids == (2, 5, 6, 7, 8, 9, 10, 11, 12)
    assert decoded.sections["usnat"]["mspa_covered_transaction"] == 0
    assert decoded.sections["usct"]["gpc_segment_included"] is True
    assert us_opt_outs(decoded) == frozenset()


# --- tcfcav1 --------------------------------------------------------------------------

_CA_BASE = {
    "version": 1,
    "created": "2022-01-01T00:00:00Z",
    "last_updated": "2022-01-01T00:00:00Z",
    "cmp_id": 50,
    "cmp_version": 2,
    "consent_screen": 0,
    "consent_language": "EN",
    "vendor_list_version": 413,
    "tcf_policy_version": 2,
    "use_non_standard_stacks": True,
    "special_feature_express_consent": [False] * 6 + [True] * 6,
    "purposes_express_consent": ([True] * 6 + [False] * 6) * 2,
    "purposes_implied_consent": ([False] * 6 + [True] * 6) * 2,
    "vendor_express_consent": [12, 24, 48],
    "vendor_implied_consent": [18, 30],
    "pub_restrictions": [],
    "pub_purposes_segment_type": 3,
    "pub_purposes_express_consent": ([True] * 3 + [False] * 3) * 4,
    "pub_purposes_implied_consent": ([False] * 3 + [True] * 3) * 4,
    "num_custom_purposes": 3,
    "custom_purposes_express_consent": [False, True, False],
    "custom_purposes_implied_consent": [True, False, True],
    "disclosed_vendors_segment_type": 1,
    "disclosed_vendors": [],
}
_CA_DEFAULT = {
    **_CA_BASE,
    "cmp_id": 0,
    "cmp_version": 0,
    "vendor_list_version": 0,
    "use_non_standard_stacks": False,
    "special_feature_express_consent": [False] * 12,
    "purposes_express_consent": [False] * 24,
    "purposes_implied_consent": [False] * 24,
    "vendor_express_consent": [],
    "vendor_implied_consent": [],
    "pub_purposes_express_consent": [False] * 24,
    "pub_purposes_implied_consent": [False] * 24,
    "num_custom_purposes": 0,
    "custom_purposes_express_consent": [],
    "custom_purposes_implied_consent": [],
}
_CA_PUB_RESTRICTION = [{"key": 1, "type": 1, "ids": (1, 2, 3, 5, 6, 7, 9)}]

# es TcfCaV1.test.ts (3.2.0): the Fibonacci strings its encoder writes, and the strings of
# the encoder before it (Int(16) ranges) that it still decodes
CA_VECTORS = [
    ("BPSG_8APSG_8AAAAAAENAACAAAAAAAAAAAAAAAAAAA.YAAAAAAAAAA", _CA_DEFAULT),  # "should decode"
    (CA, _CA_BASE),  # "should decode BPSG_8APSG_8AAyACAENGdCgf_gfgAfgfgBhADVqxGAD0AILVgAA..."
    # "should decode a legacy fixed-range vendor string (backwards compatibility)"
    ("BPSG_8APSG_8AAyACAENGdCgf_gfgAfgfgBgABABAAABAB4AACACAAA.fHHHA4444ao", _CA_BASE),
    # "should decode BPSG_8APSG_8AAAAAAENAACAAAAAAAAAAAAAAAAACCgAS7o.YAAAAAAAAAA"
    (
        "BPSG_8APSG_8AAAAAAENAACAAAAAAAAAAAAAAAAACCgAS7o.YAAAAAAAAAA",
        {**_CA_DEFAULT, "pub_restrictions": _CA_PUB_RESTRICTION},
    ),
    # "should decode a legacy fixed-range PubRestrictions string (backwards compatibility)"
    (
        "BPSG_8APSG_8AAAAAAENAACAAAAAAAAAAAAAAAAACCgBwABAAOAAoADgAJA.YAAAAAAAAAA",
        {**_CA_DEFAULT, "pub_restrictions": _CA_PUB_RESTRICTION},
    ),
    # "should encode to ....IAGO5w" and "should decode a legacy ... DisclosedVendors string"
    (
        "BPSG_8APSG_8AAAAAAENAACAAAAAAAAAAAAAAAAAAA.YAAAAAAAAAA.IAGO5w",
        {**_CA_DEFAULT, "disclosed_vendors": [1, 2, 3, 5, 6, 7, 10, 11, 12]},
    ),
    (
        "BPSG_8APSG_8AAAAAAENAACAAAAAAAAAAAAAAAAAAA.YAAAAAAAAAA.IAGO5wAA",
        {**_CA_DEFAULT, "disclosed_vendors": [1, 2, 3, 5, 6, 7, 10, 11, 12]},
    ),
    # es TcfCaV1.test.ts at 0087a7e: version 2, ends before PubRestrictions (es tolerates it)
    (
        "CPSG_8APSG_8AAyACAENGdCgf_gfgAfgfgBgABABAAABAB4AACAC.fHHHA4444ao",
        {**_CA_BASE, "version": 2},
    ),
]


@pytest.mark.parametrize(("text", "fields"), CA_VECTORS, ids=lambda v: str(v)[-24:])
def test_tcfcav1_vectors(text: str, fields: dict[str, object]) -> None:
    decoded = decode_gpp(gpp_string((5, text))).sections["tcfcav1"]
    assert gpp._thaw(decoded) == gpp._thaw(fields)


def test_tcfcav1_segments_in_any_order_and_a_trailing_dot() -> None:
    core, purposes = CA.split(".")
    decoded = decode_gpp(gpp_string((5, f"{purposes}.{core}."))).sections["tcfcav1"]
    assert gpp._thaw(decoded) == gpp._thaw(_CA_BASE)


def _ca_core(pub_restrictions: str) -> str:
    """A tcfcav1 core with empty vendor fields and the given PubRestrictions bits."""
    fixed = ints(1, width=6) + "0" * 72 + "0" * 24 + "0" * 6 + "0" * 12 + "0" * 12 + "0" * 6
    fixed += "0" + "0" * 12 + "0" * 48
    empty_range = "0" * 16 + "0"
    return b64(fixed + empty_range * 2 + pub_restrictions)


def test_tcfcav1_range_expansion_is_capped() -> None:
    # every entry names ids 1..65535 in 41 bits: 7 of them would be 458,745 ids
    entry = ints(1, width=6) + "00" + ints(65535, width=16) + "1" + "0" * 11 + "1"
    entry += "1" + fib(1) + fib(65534)
    with pytest.raises(GPPError, match="too many ids"):
        decode_gpp(gpp_string((5, _ca_core(ints(7, width=12) + entry * 7))))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("QAAA", "unknown segment type"),  # type 2 is not a tcfcav1 segment
        ("YAAAAAAAAAA", "no core segment"),
        (f"{CA.split('.')[0]}.{CA.split('.')[0]}", "repeated segment"),
        ("BPSG_8APSG_8AAyACAENGdCgf_gfgAfgfgBg", "truncated"),
    ],
)
def test_tcfcav1_refused(text: str, reason: str) -> None:
    with pytest.raises(GPPError, match=reason):
        decode_gpp(gpp_string((5, text)))


# --- what is refused ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty"),
        (TC, "not a GPP v1 header"),  # a bare TC string is not a GPP string
        ("DBAB~1YNN", "header: truncated"),
        ("DBABMA", "section count"),
        ("DBAA~1YNN", "section count"),
        ("DBABTA~", "empty"),
        ("DB%A~1YNN", "not base64url"),
        ("ＤＢＡＡ", "not base64url"),
        ("DBABTA~1ynn", "not a US Privacy string"),
        ("DBABTA~1YNN~1YNN", "section count"),
        (gpp_string((7, "BVQqAAAA")), "usnat: truncated"),
        (gpp_string((7, "BVQqAAAACg.gA")), "unknown subsection type"),
        (gpp_string((7, "BVQqAAAACg.QA.QA")), "too many subsections"),
        (gpp_string((7, "BVQqAAAACg.")), "not base64url"),
        (gpp_string((9, "BVWSSVY.YA")), "usva: unexpected subsection"),
        (gpp_string((27, "BVVV.kkk.kkk")), "too many subsections"),
        (gpp_string((27, "BVVV.k")), "usri: truncated"),
        (gpp_string((8, "BVWSSSV")), "usca: truncated"),
        # a group naming ids 1..1,000,001 is refused before any of them exist
        (b64("000011000001" + "000000000001" + "1" + fib(1) + fib(10**6)) + "~x", "section"),
        ("x" * (MAX_GPP_LENGTH + 1), "too long"),
    ],
)
def test_refused(value: str, reason: str) -> None:
    with pytest.raises(GPPError, match=reason) as info:
        decode_gpp(value)
    # the reason never quotes the input
    assert all(part not in info.value.reason for part in value.split("~") if len(part) >= 4)


def test_not_a_string() -> None:
    with pytest.raises(GPPError, match="not a string"):
        decode_gpp(b"DBAA")  # type: ignore[arg-type]


def test_length_cap_is_exact() -> None:
    head = header([99]) + "~"
    at_cap = head + "A" * (MAX_GPP_LENGTH - len(head))
    assert decode_gpp(at_cap).section_ids == (99,)
    with pytest.raises(GPPError, match="too long"):
        decode_gpp(at_cap + "A")


def test_unknown_sections_are_kept_raw() -> None:
    decoded = decode_gpp(gpp_string((4, "not even base64!"), (6, "1YNN"), (40, "abc")))
    assert decoded.section_ids == (4, 6, 40)
    assert decoded.sections["4"] == {"undecoded": True, "raw": "not even base64!"}
    assert decoded.sections["40"] == {"undecoded": True, "raw": "abc"}
    assert decoded.sections["uspv1"]["opt_out_sale"] == "N"


def test_bits_after_the_last_field_are_ignored() -> None:
    plain = decode_gpp(gpp_string((9, "BVWSSVY"))).sections
    assert decode_gpp(gpp_string((9, "BVWSSVYAAAA"))).sections == plain
    assert decode_gpp(gpp_string((9, "BVWSSVY_"))).sections == plain


def test_reserved_values_are_reported_as_encoded() -> None:
    # SaleOptOut = 3 is reserved: decoded as is, judged by us_opt_outs
    bits = ints(1, width=6) + ints(1, 1, 1, 3, 2) + ints(*[0] * 8) + ints(0, 1, 0, 0)
    decoded = decode_gpp(gpp_string((9, b64(bits))))
    assert decoded.sections["usva"]["sale_opt_out"] == 3
    assert us_opt_outs(decoded) == {"sale"}


# --- to_json and immutability ---------------------------------------------------------


def test_to_json_is_json_ready() -> None:
    decoded = decode_gpp(gpp_string((7, "BVQqAAAACg"), (8, "BVWSSSVY.YA"), (99, "zz")))
    out = decoded.to_json()
    assert out["header"] == {"version": 1, "section_ids": [7, 8, 99]}
    sections = out["sections"]
    assert isinstance(sections, dict)
    assert sections["usnat"]["sensitive_data_processing"] == [0] * 16
    assert sections["usca"]["gpc"] is True
    assert sections["99"] == {"undecoded": True, "raw": "zz"}
    assert json.loads(json.dumps(out)) == out  # lists, ints, bools, strings only


def test_decoded_values_are_immutable() -> None:
    decoded = decode_gpp(gpp_string((7, "BVQqAAAACg")))
    with pytest.raises(dataclasses.FrozenInstanceError):
        decoded.version = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        decoded.sections["usnat"]["gpc"] = True  # type: ignore[index]
    assert isinstance(decoded.sections["usnat"]["sensitive_data_processing"], tuple)


# --- US Privacy -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "notice", "opt_out_sale", "lspa", "opted_out"),
    [
        ("1YNN", "Y", "N", "N", False),  # notice given, not opted out, not LSPA
        ("1---", "-", "-", "-", False),  # CCPA does not apply
        ("1YYY", "Y", "Y", "Y", True),
        ("1NYN", "N", "Y", "N", True),
        ("1Y-N", "Y", "-", "N", False),
    ],
)
def test_us_privacy(value: str, notice: str, opt_out_sale: str, lspa: str, opted_out: bool) -> None:
    usp = decode_us_privacy(value)
    assert usp == USPrivacy(1, notice, opt_out_sale, lspa)
    assert usp_opted_out(usp) is opted_out
    assert usp.to_json() == {
        "version": 1,
        "notice": notice,
        "opt_out_sale": opt_out_sale,
        "lspa_covered": lspa,
    }


@pytest.mark.parametrize(
    "value",
    ["", "1YN", "1YNNN", "2YNN", "0YNN", "1yNN", "1YXN", " 1YNN", "1YNN\n", "1ＹNN", "1Y N"],
)
def test_us_privacy_refused(value: str) -> None:
    with pytest.raises(GPPError):
        decode_us_privacy(value)


def test_us_privacy_not_a_string() -> None:
    with pytest.raises(GPPError):
        decode_us_privacy(None)  # type: ignore[arg-type]


# --- us_opt_outs and applicable -------------------------------------------------------


def usnat(**values: int) -> str:
    """A usnat section (16/3 layout): every field 0 unless given; gpc=None leaves no GPC."""
    order = [name for name, _, _ in gpp._USNAT_NOTICES[1:]]
    bits = ints(2, width=6) + ints(*(values.get(name, 0) for name in order))
    bits += ints(*[0] * 19) + ints(0, values.get("mspa_covered_transaction", 1), 0, 0)
    text = b64(bits)
    if "gpc" in values:
        text += "." + b64("01" + str(values["gpc"]))
    return text


def state(sid: int, **values: int) -> str:
    """A state section: every field 0 (MspaCoveredTransaction 1) unless given."""
    spec = gpp._US_SPECS[sid]
    bits = ""
    for name, width, count in spec.core:
        default = 1 if name in ("version", "mspa_version", "mspa_covered_transaction") else 0
        bits += ints(values.get(name, default), width=width) if not count else "00" * count
    text = b64(bits)
    if "gpc" in values:
        text += "." + b64("01" + str(values["gpc"]))
    return text


ALL = OPT_OUTS
OPT_OUT_CASES = [
    ("nothing", gpp_string((7, usnat())), frozenset()),
    ("did not opt out", gpp_string((7, usnat(sale_opt_out=2, sale_opt_out_notice=1))), set()),
    ("sale", gpp_string((7, usnat(sale_opt_out=1))), {"sale"}),
    ("sharing", gpp_string((7, usnat(sharing_opt_out=1))), {"sharing"}),
    ("targeted", gpp_string((7, usnat(targeted_advertising_opt_out=1))), {"targeted_advertising"}),
    ("no sale notice", gpp_string((7, usnat(sale_opt_out_notice=2))), {"sale"}),
    ("no sharing notice", gpp_string((7, usnat(sharing_opt_out_notice=2))), {"sharing"}),
    (
        "no targeting notice",
        gpp_string((7, usnat(targeted_advertising_opt_out_notice=2))),
        {"targeted_advertising"},
    ),
    ("reserved value 3", gpp_string((7, usnat(sharing_opt_out=3))), {"sharing"}),
    ("reserved notice 3", gpp_string((7, usnat(sale_opt_out_notice=3))), {"sale"}),
    ("other notices do not count", gpp_string((7, usnat(sharing_notice=2))), set()),
    ("gpc", gpp_string((7, usnat(gpc=1))), ALL),
    ("gpc false", gpp_string((7, usnat(gpc=0))), set()),
    ("usca sharing", gpp_string((8, state(8, sharing_opt_out=1))), {"sharing"}),
    (
        "usva targeted",
        gpp_string((9, state(9, targeted_advertising_opt_out=1))),
        {"targeted_advertising"},
    ),
    ("usmd gpc", gpp_string((24, state(24, gpc=1))), ALL),
    ("usri sale", gpp_string((27, state(27, sale_opt_out=1))), {"sale"}),
    ("uspv1 Y", gpp_string((6, "1YYN")), {"sale", "sharing"}),
    ("uspv1 N", gpp_string((6, "1YNN")), set()),
    ("tcf only", f"DBABMA~{TC}", set()),
    ("unknown only", gpp_string((99, "AAAA")), set()),
    (
        "union",
        gpp_string((6, "1NYN"), (7, usnat(targeted_advertising_opt_out=1)), (9, state(9))),
        {"sale", "sharing", "targeted_advertising"},
    ),
]


@pytest.mark.parametrize(
    ("value", "expected"), [c[1:] for c in OPT_OUT_CASES], ids=[c[0] for c in OPT_OUT_CASES]
)
def test_us_opt_outs(value: str, expected: set[str]) -> None:
    assert us_opt_outs(decode_gpp(value)) == expected


def test_us_opt_outs_reads_only_the_sections_in_force() -> None:
    decoded = decode_gpp(gpp_string((6, "1YNN"), (7, usnat(sale_opt_out=1))))
    assert applicable(decoded, None) == (6, 7)
    assert applicable(decoded, [7, 6, 99]) == (6, 7)
    assert applicable(decoded, [6]) == (6,)
    assert applicable(decoded, []) == ()
    assert us_opt_outs(decoded, applicable(decoded, [6])) == frozenset()
    assert us_opt_outs(decoded, applicable(decoded, [7])) == {"sale"}
    assert us_opt_outs(decoded, None) == {"sale"}


def test_state_helper_layouts_decode_as_built() -> None:
    for sid in gpp._US_SPECS:
        decoded = decode_gpp(gpp_string((sid, state(sid, sale_opt_out=1))))
        assert decoded.sections[gpp.SECTION_NAMES[sid]]["sale_opt_out"] == 1


# --- properties -----------------------------------------------------------------------

VALID = [
    f"DBABMA~{TC}",
    f"DBACNY~{TC}~1YNN",
    f"DBABjw~{CA}~1YNN",
    "DBACNYA~CPSG_8APSG_8ANwAAAENAwCAAAAAAAAAAAAAAAAAAAAA.QAAA.IAAA~1YNN",
    *(gpp_string((sid, text)) for sid, text, _ in US_VECTORS),
    *(gpp_string((5, text)) for text, _ in CA_VECTORS),
    gpp_string((6, "1YNN"), (7, "BVVVkkkkkpFY.YA"), (8, "BVWSSSVY.YA"), (27, "BVVV.kkk")),
]
GPP_CHARS = _ALPHABET + "~.=%1YN- "


def _total(value: str) -> None:
    try:
        result = decode_gpp(value)
    except GPPError as e:
        assert e.reason
    else:
        assert isinstance(result, GPPString)
        json.dumps(result.to_json())
        us_opt_outs(result)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300) | st.text(alphabet=GPP_CHARS, max_size=300))
def test_any_text_decodes_or_raises_gpp_error(value: str) -> None:
    _total(value)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    value = list(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(value)))
        op = draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
        c = draw(st.sampled_from(GPP_CHARS))
        if op == "replace" and i < len(value):
            value[i] = c
        elif op == "insert":
            value.insert(i, c)
        elif op == "delete" and i < len(value):
            del value[i]
        elif op == "truncate":
            del value[i:]
    return "".join(value)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_valid_strings_decode_or_raise_gpp_error(value: str) -> None:
    _total(value)


@settings(max_examples=300)
@given(st.sampled_from(sorted(gpp._US_SPECS)), st.data())
def test_state_sections_round_trip(sid: int, data: st.DataObject) -> None:
    spec = gpp._US_SPECS[sid]
    expected: dict[str, object] = {}
    bits = ""
    for name, width, count in spec.core:
        if count:
            values = data.draw(st.lists(st.integers(0, 3), min_size=count, max_size=count))
            expected[name] = tuple(values)
            bits += ints(*values)
        else:
            value = data.draw(st.integers(0, 2**width - 1))
            expected[name] = value
            bits += ints(value, width=width)
    text = b64(bits)
    if spec.sub == "gpc" and data.draw(st.booleans()):
        gpc = data.draw(st.booleans())
        text += "." + b64("01" + str(int(gpc)))
        expected |= {"gpc_segment_included": True, "gpc": gpc}
    elif spec.sub == "gpc":
        expected |= {"gpc_segment_included": False, "gpc": False}
    elif spec.sub == "sensitive":
        sdp = data.draw(st.lists(st.integers(0, 3), min_size=8, max_size=8))
        text += "." + b64(ints(*sdp))
        expected |= {"sensitive_data_consent_segment_included": True}
        expected["sensitive_data_processing"] = tuple(sdp)
    assert dict(decode_gpp(gpp_string((sid, text))).sections[spec.prefix]) == expected
