"""Tests for gateway.consent.tcf: published vectors, crafted edge cases, decisions, fuzzing.

Vectors name their source as `repo path::test`. Where no published vector exists the string
is built bit by bit (tests/signal_values.py) and the test says so;
tests/consent/test_tcf_differential.py checks that IAB's reference
decoder (@iabtechlabtcf/core) reads such strings the same way.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from datetime import UTC, datetime
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.consent import tcf
from gateway.consent.tcf import (
    MAX_RANGE_IDS,
    MAX_TC_STRING_LENGTH,
    V1_REASON,
    RestrictionType,
    TCString,
    decode_tc_string,
    vendor_disclosed,
    vendor_may,
)
from gateway.consent.tcf_bits import BitReader
from gateway.errors import SignalError, TCFError
from tests.signal_values import (
    B64URL,
    EMPTY_SECTION,
    bitfield_section,
    bits,
    core,
    header,
    range_section,
    restrictions,
    uint,
)

JAVA = "InteractiveAdvertisingBureau/iabtcf-java iabtcf-decoder/src/test/java/com/iabtcf"
JAVA_V2 = f"{JAVA}/decoder/TCStringV2Test.java"
JAVA_DECODER = f"{JAVA}/decoder/TCStringDecoderTest.java"
ES_ISSUES = "InteractiveAdvertisingBureau/iabtcf-es modules/core/test/ReportedIssues.test.ts"
GO_META = "prebid/go-gdpr vendorconsent/tcf2/metadata_test.go"
GO_PUBR = "prebid/go-gdpr vendorconsent/tcf2/pubrestrict_test.go"
GO_CONSENT = "prebid/go-gdpr vendorconsent/tcf2/consent_test.go"
GO_DISCLOSED = "prebid/go-gdpr vendorconsent/tcf2/disclosed_vendors_test.go"
SPEC_V1 = (
    "InteractiveAdvertisingBureau/GDPR-Transparency-and-Consent-Framework "
    "Consent string and vendor list formats v1.1 Final.md (example string)"
)

# Every reason decode_tc_string may give: fixed phrases, never a piece of the input.
REASON_RE = re.compile(
    "|".join(
        [
            re.escape(V1_REASON),
            r"unsupported version \d+",
            *(
                re.escape(r)
                for r in (
                    "not a string",
                    "too long",
                    "empty",
                    "empty segment",
                    "bad padding",
                    "not base64url",
                    "too many segments",
                    "truncated",
                    "letter out of range",
                    "vendor id 0",
                    "range ends before it starts",
                    "vendor id above MaxVendorId",
                    "restriction for purpose 0",
                    "too many vendor ids in ranges",
                    "duplicate segment",
                    "core segment out of place",
                    "core segment not first",
                    "unknown segment type",
                )
            ),
        ]
    )
)


def refused(value: str) -> str:
    """The reason `value` is refused (it must be)."""
    with pytest.raises(TCFError) as e:
        decode_tc_string(value)
    # SECURITY: the message is the reason and nothing of the value
    assert str(e.value) == e.value.reason
    assert REASON_RE.fullmatch(e.value.reason), e.value.reason
    return e.value.reason


MINIMAL = core()


# --- published vectors ---------------------------------------------------------------------


def test_java_constructs_model_from_base64_string() -> None:
    # JAVA_V2::testCanConstructTCModelFromBase64String
    tc = decode_tc_string("COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA")
    assert tc.version == 2
    assert tc.created == datetime(2020, 1, 26, 17, 1, tzinfo=UTC)
    assert tc.last_updated == datetime(2021, 2, 2, 17, 1, tzinfo=UTC)
    assert (tc.cmp_id, tc.cmp_version, tc.consent_screen) == (675, 2, 1)
    assert (tc.vendor_list_version, tc.policy_version) == (15, 2)
    assert (tc.consent_language, tc.publisher_country_code) == ("EN", "AA")
    assert not tc.is_service_specific
    assert tc.purpose_one_treatment
    assert not tc.use_non_standard_texts
    assert tc.special_feature_optins == {1}
    assert tc.purpose_consents == {2, 10}
    assert tc.purpose_legitimate_interests == {2, 9}
    assert tc.disclosed_vendors is None
    assert tc.allowed_vendors is None
    assert tc.publisher_consents == tc.custom_purpose_consents == frozenset()


GO_LARGE_CMP_ID = (
    "COyiBqdOyiBqdObAAAENAfCIAP8AAH-AAAAAB4AXQQgEAAAgoAAAAABAIYQUAAAAAAAAAAAAAAAIQIQC"
    "xIvkgQMAAAABgAIAAAAAAAAAAABAZAkAAA"
)
GO_WITHOUT_DISCLOSED = (
    "CQc78IAQc78IAAHABAFRCPFsAP_gAAAAAAAAKlwJ4AFgAYABUAC4AGQAQAAnABaADIAGgAWwAwgBzAD8AIQAT"
    "gAuABlADjAIQARAAicBHAEdAJKAYoA0ACIgETAKWAXUAvMBgIDFgGMgMsAf2BAECMwEdgKlgAAAGKQAYAAgvw"
    "OgAwABBfghABgACC_BKADAAEF-AkAGAAIL8FoAMAAQX4A"
)
COREV = "COrEAV4OrXx94ACABBENAHCIAD-AAAAAAACAAxAAAAgAIAwgAgAAAAEAgQAAAAAEAYQAQAAAACAAAABAAA"


@pytest.mark.parametrize(
    ("source", "value", "field", "expected"),
    [
        (
            f"{JAVA_V2}::testConstructConsentsFromBitFields",
            COREV,
            "purpose_consents",
            {3, 4, 5, 6, 7, 8, 9},
        ),
        (
            f"{JAVA_V2}::testConstructConsentsFromBitFields",
            COREV,
            "vendor_consents",
            {23, 37, 47, 48, 53, 65, 98},
        ),
        (
            f"{JAVA_V2}::testConstructConsentsFromBitFields",
            COREV,
            "vendor_legitimate_interests",
            {37, 47, 48, 53, 65, 98, 129},
        ),
        (
            f"{JAVA_V2}::testCanParseDisclosedAndAllowedVendors",
            COREV + ".IBAgAAAgAIAwgAgAAAAEAAAACA.QAagAQAgAIAwgA",
            "allowed_vendors",
            {12, 23, 37, 47, 48, 53},
        ),
        (
            f"{JAVA_V2}::testCanParseDisclosedAndAllowedVendors",
            COREV + ".IBAgAAAgAIAwgAgAAAAEAAAACA.QAagAQAgAIAwgA",
            "disclosed_vendors",
            {23, 37, 47, 48, 53, 65, 98, 129},
        ),
        # `=` padding on the last segment
        (
            f"{JAVA_V2}::testCanParseAllParts",
            COREV + ".IBAgAAAgAIAwgAgAAAAEAAAACA.QAagAQAgAIAwgA.cAAAAAAAITg=",
            "publisher_consents",
            {1},
        ),
        (
            f"{JAVA_V2}::testCanParseRangeEncodedVendorLegitimateInterests",
            "COv__-wOv__-wC2AAAENAPCgAAAAAAAAAAAAA_wAQA_gEBABAEAAAA",
            "vendor_legitimate_interests",
            {128},
        ),
        # range encoding: one range entry, then a single-id entry
        (
            f"{JAVA_V2}::testRange",
            "COwBOpCOwBOpCLqAAAENAPCAAAAAAAAAAAAAFfwAYFfAV-BVkAGBVYFWAAA",
            "vendor_consents",
            {702, 703},
        ),
        (
            f"{JAVA_V2}::testRange",
            "COwBOpCOwBOpCLqAAAENAPCAAAAAAAAAAAAAFfwAQFfgUbABAUaAAA",
            "vendor_consents",
            {703},
        ),
        (
            f"{JAVA_V2}::testPurposesConsent",
            "COwxsONOwxsONKpAAAENAdCAAMAAAAAAAAAAAAAAAAAA",
            "purpose_consents",
            {1, 2},
        ),
        (
            f"{GO_META}::TestLargeCmpID",
            GO_LARGE_CMP_ID,
            "cmp_id",
            923,
        ),
        (
            f"{GO_META}::TestLargeCmpVersion",
            "COyiCPlOyiCPlKxMIAENAfCAAAAAAAAAAAAAAAAAAAAA",
            "cmp_version",
            776,
        ),
        (
            f"{GO_META}::TestLargeConsentScreen",
            "COyiFYuOyiFYuDKAA4ENAfCAAAAAAAAAAAAAAAAAAAAA",
            "consent_screen",
            56,
        ),
        (
            f"{GO_META}::TestLanguageExtremes",
            "COyiHgFOyiHgFN4ABABGAPCAAAAAAAAAAAAAAFAAAAoAAAA",
            "consent_language",
            "BG",
        ),
        (
            f"{GO_META}::TestLanguageExtremes",
            "COyiHgFOyiHgFN4ABASVAPCAAAAAAAAAAAAAAFAAAAoAAAA",
            "consent_language",
            "SV",
        ),
        (
            f"{GO_META}::TestTCF2Fields",
            "COx3XOeOx3XOeLkAAAENAfCIAAAAAHgAAIAAAAAAAAAA",
            "special_feature_optins",
            {1},
        ),
        (
            f"{GO_META}::TestTCF2Fields",
            "COx3XOeOx3XOeLkAAAENAfCIAAAAAHgAAIAAAAAAAAAA",
            "purpose_one_treatment",
            True,
        ),
        # LI bits are reported as encoded, even for purposes 3-5 (policy is vendor_may's job)
        (
            f"{GO_META}::TestLITransparency",
            "COx3XOeOx3XOeLkAAAENAfCIAAAAAHgAAIAAAAAAAAAA",
            "purpose_legitimate_interests",
            {2, 3, 4, 5},
        ),
        (
            f"{GO_CONSENT}::TestParseStringWithDisclosedVendors",
            "CQSbk4AQSbk4ANwAAAENAwCgAAAAAAAAAAYgACPAAAAA.IDKQA4AAgAKAGQAygAAA.YAAAAAAAAAAA",
            "disclosed_vendors",
            {1, 2, 3, 4, 5, 100, 404},
        ),
        (
            f"{GO_CONSENT}::TestParseStringWithoutDisclosedVendors",
            GO_WITHOUT_DISCLOSED,
            "disclosed_vendors",
            None,
        ),
        (
            f"{GO_DISCLOSED}::TestEmptyDisclosedVendorsSegment (one trailing '.')",
            "COyiILmOyiILmADACHENAPCAAAAAAAAAAAAAE5QBgALgAqgD8AQACSwEygJyAAAAAA.",
            "disclosed_vendors",
            None,
        ),
    ],
)
def test_published_vectors(source: str, value: str, field: str, expected: object) -> None:
    assert getattr(decode_tc_string(value), field) == expected, source


def test_created_is_deciseconds() -> None:
    # GO_META::TestCreatedDate checks 2020-02-27 19:51:49 to the second; the bits say .6 more
    tc = decode_tc_string(
        "COvcSpYOvcSpYC9AAAENAPCAAAAAAAAAAAAACvwDQABAAIAAYABIAC4AJQAagA9ACEAPgAjIBJoCvAK-AAAAAA"
    )
    assert tc.created == datetime(2020, 2, 27, 19, 51, 49, 600_000, tzinfo=UTC)
    assert tc.to_json()["created"] == "2020-02-27T19:51:49.6Z"


@pytest.mark.parametrize(
    ("char", "policy"), [("A", 0), ("B", 1), ("C", 2), ("E", 4), ("I", 8), ("Q", 16), ("_", 63)]
)
def test_policy_version_is_six_bits_at_character_22(char: str, policy: int) -> None:
    # GO_META::TestTCFPolicyVersion
    base = "CPtGDMAPtGDMALMAAAENA_C_AAAAAAAAACiQAAAAAAAA"
    assert decode_tc_string(base[:22] + char + base[23:]).policy_version == policy


def test_java_publisher_purposes_segment_with_padding() -> None:
    # JAVA_V2::testPublisherPurposes: the segment bits from the test, base64url-encoded as
    # java.util.Base64.getUrlEncoder does (whole bytes, `=` padding)
    segment = (
        "011"  # SegmentType 3
        "100000000000000000000000"  # PubPurposesConsent
        "000000000000000000000001"  # PubPurposesLITransparency
        "000010"  # NumCustomPurposes
        "01"  # CustomPurposesConsent
        "11"  # CustomPurposesLITransparency
        "000"
    )
    raw = int(segment, 2).to_bytes(len(segment) // 8, "big")
    padded = base64.urlsafe_b64encode(raw).decode()
    assert padded.endswith("=")
    tc = decode_tc_string("COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA." + padded)
    assert tc.publisher_consents == {1}
    assert tc.publisher_legitimate_interests == {24}
    assert tc.custom_purpose_consents == {2}
    assert tc.custom_purpose_legitimate_interests == {1, 2}


def test_java_publisher_restrictions_without_vendors() -> None:
    # JAVA_V2::testPublisherRestrictions: three restrictions (1, 1), (2, 0), (3, 2), each
    # with NumEntries 0. A restriction that lists no vendor restricts nothing, so none is kept.
    bitstring = (
        "0000100011101011100"
        "1000000000000001010"
        "0000001110101110010"
        "0000000000000101000"
        "0000110011111000000"
        "0000000000000000100"
        "0011010000000011110"
        "0001000000000000000"
        "0000000000000000000"
        "0000000000000000000"
        "0000000000000000000"
        "0000000000000000000"
        "0000000000000000000"
        "000000000011"  # NumPubRestrictions (3)
        "000001"
        "01"
        "000000000000"  # purpose 1, require consent, no entries
        "000010"
        "00"
        "000000000000"  # purpose 2, not allowed, no entries
        "000011"
        "10"
        "000000000000"  # purpose 3, require LI, no entries
        "0"  # padding
    )
    tc = decode_tc_string(bits(bitstring))
    assert tc.version == 2
    assert tc.publisher_restrictions == {}


@pytest.mark.parametrize(
    ("purpose", "kind", "vendor", "expected"),
    [
        (7, 1, 32, True),
        (7, 1, 7, False),
        (5, 1, 32, False),
    ],
)
def test_go_pub_restrictions(purpose: int, kind: int, vendor: int, expected: bool) -> None:
    # GO_PUBR::TestPubRestrictions
    tc = decode_tc_string("COwAdDhOwAdDhN4ABAENAPCgAAQAAv___wAAAFP_AAp_4AI6ACACAA")
    assert (tc.cmp_id, tc.cmp_version, tc.consent_language, tc.vendor_list_version) == (
        888,
        1,
        "EN",
        15,
    )
    assert (vendor in tc.publisher_restrictions.get((purpose, kind), ())) is expected


GO_PUBR2 = (
    "COxPe2TOxPe2TALABAENAPCgAAAAAAAAAAAAAFAAAAoAAA4IACACAIABgACAFA4ADACAAIygAGADwAQBIAIAIB0AEAEB"
    "SACACAA"
)


@pytest.mark.parametrize(
    ("purpose", "kind", "vendor", "expected"),
    [
        (1, 0, 32, True),
        (1, 1, 32, False),
        (2, 0, 32, True),
        (2, 0, 5, True),
        (2, 0, 11, True),
        (2, 0, 44, False),
        (2, 0, 500, False),
        (2, 1, 32, True),
        (2, 1, 42, False),
    ],
)
def test_go_pub_restrictions2(purpose: int, kind: int, vendor: int, expected: bool) -> None:
    # GO_PUBR::TestPubRestrictions2
    tc = decode_tc_string(GO_PUBR2)
    assert not tc.purpose_one_treatment
    assert 3 not in tc.special_feature_optins
    assert (vendor in tc.publisher_restrictions.get((purpose, kind), ())) is expected


def test_es_issue_201_vendor_restricted_for_many_purposes() -> None:
    # ES_ISSUES::'201 unable to decode valid TCF2 String'
    tc = decode_tc_string(
        "CO4VGswO4VGswAfZCBDEAzCsAP_AAH_AAAigGUNf_X9fb2vj-_599_t0eY1f9_63t-wzjheMs-8NyZ-X_J4Wv2MyvB34"
        "JqQKGRgkunLBAQdtHGncTQgBwIlViTLMY02MjzNKJrJEilsbe2dYGH9vn8XT_ZKZ70-_v__7v3___33_5Ayhr_6_r7"
        "e18f3_Pvv9ujzGr_v_W9v2GccLxln3huTPy_5PC1-xmV4O_BNSBQyMEl05YICDto407iaEAOBEqsSZZjGmxkeZpRNZ"
        "IkUtjb2zrAw_t8_i6f7JTPen39___d-___--__ICgKAOAAcAA4AFAAjgB6AEYALcGACAW0AtoJAHAAOAAcACgARwA9"
        "ACMAFuFABALaAW0GgDgAHAAOABQAI4AegBGAC3DgAgFtALaEQBwADgAHAAoAEcAPQAjABbiQAQC2gFtCoA4ABwADgA"
        "UACOAHoARgAtxYAIBbQC2hkAcAA4ABwAKABHAD0AIwAW40AEAtoBbQ6AOAAcAA4AFAAjgB6AEYALceACAW0AtohAHA"
        "AOAAcACgARwA9ACMAFuRABALaAW0SgDgAHAAOABQAI4AegBGAC3JgAgFtALaKQBwADgAHAAoAEcAPQAjABblQAQC2g"
        "FtA"
    )
    assert tc.version == 2
    assert sorted(tc.publisher_restrictions[(1, 1)]) == [7, 20, 71, 122, 140, 183]


def test_repeated_restriction_pairs_are_merged() -> None:
    # No published vector repeats a (purpose, type) pair (go-gdpr TestPubRestrictions2 lists
    # each pair once), and the reference encoder cannot write one (it keys restrictions by
    # pair), so this string is built here; the reference decoder also merges it (see
    # test_tcf_differential.py::test_python_encoded_strings_agree).
    value = core(
        pubr=restrictions(
            [
                (2, 0, [(5, 7)]),
                (3, 1, [(1, 1)]),
                (2, 0, [(6, 9), (40, 40)]),
                (2, 3, [(11, 12)]),  # type 3: kept, ignored by decisions
                (4, 2, []),  # no vendors: nothing to keep
            ]
        )
    )
    tc = decode_tc_string(value)
    assert dict(tc.publisher_restrictions) == {
        (2, 0): {5, 6, 7, 8, 9, 40},
        (2, 3): {11, 12},
        (3, 1): {1},
    }
    assert list(tc.publisher_restrictions) == sorted(tc.publisher_restrictions)


def go_disclosed_segment() -> str:
    # GO_DISCLOSED::TestSegmentsInAnyOrder: bytes of a DisclosedVendors segment
    # (MaxVendorId 26, bitfield), encoded as Go's base64.RawURLEncoding does
    return base64.urlsafe_b64encode(
        bytes([0x20, 0x03, 0x4A, 0x80, 0x20, 0x80, 0x50, 0x9F])
    ).decode()


GO_CORE = "COwGVJOOwGVJOADACHENAOCAAO6as_-AAAhoAFNLAAoAAAA"
# A complete, empty PublisherTC segment (GO_CONSENT::TestParseStringWithDisclosedVendors)
PUBLISHER_TC = "YAAAAAAAAAAA"


@pytest.mark.parametrize("order", ["DP", "PD"])
def test_segments_in_any_order(order: str) -> None:
    segments = {"D": go_disclosed_segment().rstrip("="), "P": PUBLISHER_TC}
    tc = decode_tc_string(".".join([GO_CORE, *(segments[k] for k in order)]))
    assert tc.disclosed_vendors == frozenset({1, 3, 5, 15, 21})
    assert vendor_disclosed(tc, 21)
    assert not vendor_disclosed(tc, 27)  # above the segment's MaxVendorId


def test_go_minimal_publisher_segment_is_truncated() -> None:
    # GO_DISCLOSED::TestSegmentsInAnyOrder calls `YAAA` (0x60 0x00 0x00, 24 bits) a "minimal
    # valid" PublisherTC segment; it needs at least 57 bits. go-gdpr ignores the segment;
    # iabtcf-es refuses the string, and so do we.
    disclosed = go_disclosed_segment().rstrip("=")
    assert refused(f"{GO_CORE}.{disclosed}.YAAA") == "truncated"


# --- refused strings -----------------------------------------------------------------------


ES_156 = (
    "BOhwdphOxFC7tAHABBFRC--AAAAuhr_7__7-_9_-_f__9uj3Or_v_f__32ccL59v_h_7v-_7fi_20nV4u_1vft9"
    "yfk1-5ctDztp507iakivXmqdeb9v_nz3_5pxP78k89r7337Ew_v8_v-b7BCON_YxEiA"
)
ES_142 = (
    "CLSYjTaOngnCIAOABBENAXCMAGOAABBAAA7IA5n-m7fP6_3fbqVv6E__PoA5Aqff3aJx8tv_1967rfnQEQoAIAAQCrwk"
    "AEABAcACABIMACAAuApEVABABUSABgBCAVSAtIoACACIArYQAHACgAFgAVwBJgDcAI7AWgMAAgBiKgAgBMgFfKQAQBRk"
    "QAQA4AFiBAAoA-AEVAJlAVgAtYcACAJcAr4eABAK8OgBgFzAOmAqwgABAWyA.IFukWSQh"
)


@pytest.mark.parametrize(
    ("source", "value", "reason"),
    [
        (SPEC_V1, "BOEFEAyOEFEAyAHABDENAI4AAAB9vABAASA", V1_REASON),
        (
            f"{ES_ISSUES}::'156 it should auto detect 1 version'",
            ES_156,
            V1_REASON,
        ),
        (
            f"{ES_ISSUES}::'191 vendorConsents empty when decoding TCF 1.1 ... vendorRangeList'",
            "BO2e4qiO2e4qiB9ABADEDS-AAAAxKABgACBiQA",
            V1_REASON,
        ),
        # "Bg" is 000001 100000: a version-1 prefix, then nothing
        (f"{JAVA_DECODER}::testReadBeyondBuffer", "Bg", V1_REASON),
        # the byte 13 (0b00001101, version 3), as the test builds it with Base64.getUrlEncoder
        (
            f"{JAVA_DECODER}::shouldFailIfANonSupportedVersionIsPassed",
            "DQ==",
            "unsupported version 3",
        ),
        # the byte 8 (version 2, then nothing), as iabtcf-java BitReaderTest::testCapacity
        (f"{JAVA}/decoder/BitReaderTest.java::testCapacity (byte 8)", "CA==", "truncated"),
        # a DisclosedVendors segment whose bitfield is shorter than its MaxVendorId (733)
        (f"{ES_ISSUES}::'142 ... bitfield length does not match the maxId'", ES_142, "truncated"),
        # the core ends after the vendor consent section: no LI section
        (
            f"{GO_CONSENT}::TestParseLegitIntSetWithBitField",
            "COvcSpYOvcSpYC9AAAENAPCAAAAAAAAAAAAAAFAAAAA",
            "truncated",
        ),
        (
            f"{GO_CONSENT}::TestParseLegitIntSetWithRangeSection",
            "COvcSpYOvcSpYC9AAAENAPCAAAAAAAAAAAAAAFQBgAAgABAACAAEAAQAAgAA",
            "truncated",
        ),
    ],
)
def test_published_refusals(source: str, value: str, reason: str) -> None:
    assert refused(value) == reason, source


def test_v1_reason_is_clear() -> None:
    assert "v1" in V1_REASON and "no longer valid" in V1_REASON


@pytest.mark.parametrize(
    ("case", "value", "reason"),
    [
        ("empty", "", "empty"),
        ("only a dot", ".", "empty segment"),
        ("empty core", "." + PUBLISHER_TC, "empty segment"),
        ("empty middle segment", f"{MINIMAL}..{PUBLISHER_TC}", "empty segment"),
        ("two trailing dots", f"{MINIMAL}..", "empty segment"),
        ("too long", "C" * (MAX_TC_STRING_LENGTH + 1), "too long"),
        ("non-ASCII letter", MINIMAL[:-1] + "é", "not base64url"),
        ("non-ASCII digit", MINIMAL[:-1] + "٣", "not base64url"),
        ("standard base64 +", MINIMAL[:-1] + "+", "not base64url"),
        ("standard base64 /", MINIMAL[:-1] + "/", "not base64url"),
        ("space", " " + MINIMAL, "not base64url"),
        ("newline", MINIMAL + "\n", "not base64url"),
        ("NUL", MINIMAL + "\x00", "not base64url"),
        ("= inside", "CA=A", "not base64url"),
        ("three =", "C===", "bad padding"),
        ("= not completing a group", "CAA==", "bad padding"),
        ("only =", "==", "bad padding"),
        ("version 0", bits("000000" + "0" * 300), "unsupported version 0"),
        ("version 3", bits("000011" + "0" * 300), "unsupported version 3"),
        ("version 63", "_" + "A" * 60, "unsupported version 63"),
        ("v1 prefix alone", "B", V1_REASON),
        ("truncated in the header", MINIMAL[:20], "truncated"),
        ("truncated before restrictions", bits(header() + EMPTY_SECTION * 2), "truncated"),
        (
            "bitfield shorter than MaxVendorId",
            bits(header() + uint(40, 16) + "0" + "1" * 20),
            "truncated",
        ),
        (
            "range entry runs out",
            bits(header() + uint(10, 16) + "1" + uint(2, 12) + "0" + uint(3, 16)),
            "truncated",
        ),
        ("language letter 26", core(language=(26, 0)), "letter out of range"),
        ("country letter 63", core(country=(0, 63)), "letter out of range"),
        ("vendor id 0", core(consents=range_section([(0, 3)], 10)), "vendor id 0"),
        (
            "range end before start",
            core(li=range_section([(9, 4)], 10)),
            "range ends before it starts",
        ),
        (
            "range end above MaxVendorId",
            core(consents=range_section([(5, 11)], 10)),
            "vendor id above MaxVendorId",
        ),
        (
            "single id above MaxVendorId",
            core(consents=range_section([(11, 11)], 10)),
            "vendor id above MaxVendorId",
        ),
        (
            "MaxVendorId 0 with an entry",
            core(consents=range_section([(1, 1)], 0)),
            "vendor id above MaxVendorId",
        ),
        ("restriction vendor 0", core(pubr=restrictions([(1, 0, [(0, 0)])])), "vendor id 0"),
        (
            "restriction range backwards",
            core(pubr=restrictions([(1, 0, [(3, 2)])])),
            "range ends before it starts",
        ),
        (
            "restriction purpose 0",
            core(pubr=restrictions([(0, 1, [])])),
            "restriction for purpose 0",
        ),
        ("segment type 0 after the core", f"{MINIMAL}.{MINIMAL}", "core segment out of place"),
        ("a segment before the core", f"{PUBLISHER_TC}.{MINIMAL}", "core segment not first"),
        ("no core", go_disclosed_segment(), "core segment not first"),
        ("segment type 4", f"{MINIMAL}.{bits('100' + '0' * 60)}", "unknown segment type"),
        ("segment type 7", f"{MINIMAL}.{bits('111' + '0' * 60)}", "unknown segment type"),
        ("duplicate PublisherTC", f"{MINIMAL}.{PUBLISHER_TC}.{PUBLISHER_TC}", "duplicate segment"),
        (
            "duplicate DisclosedVendors",
            f"{MINIMAL}.{bits('001' + EMPTY_SECTION)}.{PUBLISHER_TC}.{bits('001' + EMPTY_SECTION)}",
            "duplicate segment",
        ),
        ("five segments", ".".join([MINIMAL] + [PUBLISHER_TC] * 4), "too many segments"),
        ("truncated segment", f"{MINIMAL}.{bits('001' + uint(5, 16))}", "truncated"),
        ("segment type alone", f"{MINIMAL}.I", "truncated"),
        (
            "custom purposes run out",
            f"{MINIMAL}.{bits('011' + '0' * 48 + uint(63, 6) + '1' * 70)}",
            "truncated",
        ),
    ],
)
def test_refused(case: str, value: str, reason: str) -> None:
    assert refused(value) == reason, case


def test_refused_non_strings() -> None:
    for value in (None, b"COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA", 2):
        with pytest.raises(TCFError, match="not a string"):
            decode_tc_string(value)  # type: ignore[arg-type]


def test_tcf_error_is_a_signal_error() -> None:
    with pytest.raises(SignalError):
        decode_tc_string("nope")


# --- accepted edge cases -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "value"),
    [
        ("no padding", "COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA"),
        ("trailing zero characters", "COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA" + "A" * 9),
        ("one trailing dot", "COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA."),
        ("padding on a middle segment", f"{GO_CORE}.{go_disclosed_segment()}.{PUBLISHER_TC}"),
    ],
)
def test_accepted_forms(case: str, value: str) -> None:
    assert decode_tc_string(value).version == 2, case


@pytest.mark.parametrize("chars", [41, 42, 43, 44, 45])
def test_any_length_in_characters(chars: int) -> None:
    # 6 bits per character, whatever the length modulo 4 (the reference decoder reads
    # characters, not bytes); 213 + 17 + 17 + 12 = 259 bits fit in 44 characters
    value = (MINIMAL + "A" * 10)[:chars]
    if chars < 44:
        assert refused(value) == "truncated"
    else:
        assert decode_tc_string(value).vendor_consents == frozenset()


def test_padding_equivalence() -> None:
    # The same bits with and without `=`: 2 characters + "==" and 3 + "=" complete a group.
    base = MINIMAL + "A" * (-len(MINIMAL) % 4)
    assert decode_tc_string(base + "AA==") == decode_tc_string(base + "AA")
    assert decode_tc_string(base + "AAA=") == decode_tc_string(base + "AAA")


def test_all_zero_string_of_the_maximum_length() -> None:
    tc = decode_tc_string("C" + "A" * (MAX_TC_STRING_LENGTH - 1))
    assert tc.created == datetime(1970, 1, 1, tzinfo=UTC)
    assert (tc.consent_language, tc.publisher_country_code) == ("AA", "AA")
    assert tc.vendor_consents == tc.vendor_legitimate_interests == frozenset()


def test_largest_values() -> None:
    tc = decode_tc_string(
        core(
            created=(1 << 36) - 1,
            cmp_id=4095,
            language=(25, 25),
            country=(25, 25),
            policy=63,
            consents=bitfield_section({1, 65535}),
            li=range_section([(65535, 65535), (1, 1)], 65535),
            pubr=restrictions([(63, 3, [(65535, 65535)])]),
        )
    )
    assert tc.to_json()["created"] == "2187-10-06T10:21:13.5Z"  # (2**36 - 1) deciseconds
    assert (tc.cmp_id, tc.policy_version) == (4095, 63)
    assert (tc.consent_language, tc.publisher_country_code) == ("ZZ", "ZZ")
    assert tc.vendor_consents == tc.vendor_legitimate_interests == {1, 65535}
    assert tc.publisher_restrictions == {(63, 3): {65535}}


def test_overlapping_and_unsorted_ranges_are_merged() -> None:
    tc = decode_tc_string(core(consents=range_section([(8, 10), (1, 3), (2, 9), (5, 5)], 12)))
    assert tc.vendor_consents == set(range(1, 11))


def test_bitfield_longer_than_needed() -> None:
    tc = decode_tc_string(core(consents=bitfield_section({3}, max_id=500)))
    assert tc.vendor_consents == {3}


def test_allowed_vendors_segment() -> None:
    allowed = bits("010" + range_section([(3, 5)], 9))
    tc = decode_tc_string(f"{MINIMAL}.{allowed}")
    assert tc.allowed_vendors == frozenset({3, 4, 5})
    assert tc.disclosed_vendors is None


def test_empty_disclosed_segment_is_not_absent() -> None:
    tc = decode_tc_string(f"{MINIMAL}.{bits('001' + EMPTY_SECTION)}")
    assert tc.disclosed_vendors == frozenset()
    assert tc.to_json()["disclosed_vendors"] == []


# --- to_json -------------------------------------------------------------------------------


FIELDS = [f.name for f in dataclasses.fields(TCString)]


def test_to_json_keys_are_the_fields_in_order() -> None:
    assert list(decode_tc_string(MINIMAL).to_json()) == FIELDS
    assert FIELDS == [
        "version",
        "created",
        "last_updated",
        "cmp_id",
        "cmp_version",
        "consent_screen",
        "consent_language",
        "vendor_list_version",
        "policy_version",
        "is_service_specific",
        "use_non_standard_texts",
        "special_feature_optins",
        "purpose_consents",
        "purpose_legitimate_interests",
        "purpose_one_treatment",
        "publisher_country_code",
        "vendor_consents",
        "vendor_legitimate_interests",
        "publisher_restrictions",
        "disclosed_vendors",
        "allowed_vendors",
        "publisher_consents",
        "publisher_legitimate_interests",
        "custom_purpose_consents",
        "custom_purpose_legitimate_interests",
    ]


def test_to_json_values() -> None:
    value = COREV + ".IBAgAAAgAIAwgAgAAAAEAAAACA.QAagAQAgAIAwgA.cAAAAAAAITg="
    out = decode_tc_string(value).to_json()
    assert out["created"] == "2019-12-04T18:53:00Z"
    assert out["vendor_consents"] == [23, 37, 47, 48, 53, 65, 98]
    assert out["allowed_vendors"] == [12, 23, 37, 47, 48, 53]
    assert out["publisher_consents"] == [1]
    assert decode_tc_string(MINIMAL).to_json()["disclosed_vendors"] is None
    pubr = decode_tc_string(
        core(pubr=restrictions([(3, 2, [(9, 9)]), (1, 0, [(4, 6)]), (3, 0, [(2, 2), (1, 1)])]))
    ).to_json()["publisher_restrictions"]
    assert pubr == [
        {"purpose_id": 1, "restriction_type": 0, "vendors": [4, 5, 6]},
        {"purpose_id": 3, "restriction_type": 0, "vendors": [1, 2]},
        {"purpose_id": 3, "restriction_type": 2, "vendors": [9]},
    ]


@pytest.mark.parametrize(
    ("deciseconds", "text"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (15_800_580_600, "2020-01-26T17:01:00Z"),
        (15_100_821_554, "2017-11-07T19:15:55.4Z"),
        (1, "1970-01-01T00:00:00.1Z"),
    ],
)
def test_to_json_times(deciseconds: int, text: str) -> None:
    assert decode_tc_string(core(created=deciseconds)).to_json()["created"] == text


def test_tc_string_is_frozen_and_hashable() -> None:
    tc = decode_tc_string(GO_PUBR2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        tc.cmp_id = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        tc.publisher_restrictions[(9, 9)] = frozenset()  # type: ignore[index]
    assert hash(tc) == hash(decode_tc_string(GO_PUBR2))
    assert tc == decode_tc_string(GO_PUBR2)


def test_exports() -> None:
    assert set(tcf.__all__) == {
        "KEPT_STRINGS",
        "MAX_RANGE_IDS",
        "MAX_TC_STRING_LENGTH",
        "RestrictionType",
        "TCString",
        "V1_REASON",
        "decode_tc_string",
        "decode_tc_string_kept",
        "vendor_disclosed",
        "vendor_may",
    }
    assert all(hasattr(tcf, name) for name in tcf.__all__)


# --- decisions -----------------------------------------------------------------------------


BASE = dataclasses.replace(
    decode_tc_string(MINIMAL),
    policy_version=4,
    purpose_consents=frozenset({1, 2, 3, 7}),
    purpose_legitimate_interests=frozenset({2, 3, 7, 8}),
    vendor_consents=frozenset({10, 11}),
    vendor_legitimate_interests=frozenset({10, 12}),
)


def with_restrictions(*items: tuple[int, int, set[int]]) -> TCString:
    return dataclasses.replace(
        BASE, publisher_restrictions={(p, k): frozenset(v) for p, k, v in items}
    )


@pytest.mark.parametrize(
    ("case", "tc", "vendor", "purpose", "li_allowed", "expected"),
    [
        ("consent: both bits", BASE, 10, 1, False, True),
        ("consent: purpose bit missing", BASE, 10, 4, False, False),
        ("consent: vendor bit missing", BASE, 12, 1, False, False),
        ("LI not declared: consent only", BASE, 12, 8, False, False),
        ("LI declared: both LI bits", BASE, 12, 8, True, True),
        ("LI declared: vendor LI bit missing", BASE, 11, 8, True, False),
        ("LI declared: purpose LI bit missing", BASE, 12, 9, True, False),
        ("LI never for purpose 3 (bits as encoded)", BASE, 12, 3, True, False),
        ("LI declared, consent also there", BASE, 10, 7, True, True),
        ("not allowed beats consent", with_restrictions((1, 0, {10})), 10, 1, False, False),
        ("not allowed for another vendor", with_restrictions((1, 0, {11})), 10, 1, False, True),
        ("not allowed for another purpose", with_restrictions((2, 0, {10})), 10, 1, False, True),
        ("not allowed beats LI", with_restrictions((8, 0, {12})), 12, 8, True, False),
        ("require consent, consent there", with_restrictions((7, 1, {10})), 10, 7, True, True),
        ("require consent, only LI there", with_restrictions((8, 1, {12})), 12, 8, True, False),
        ("require LI, LI there", with_restrictions((8, 2, {12})), 12, 8, False, True),
        ("require LI, only consent there", with_restrictions((7, 2, {11})), 11, 7, True, False),
        ("require LI never for purpose 3", with_restrictions((3, 2, {10})), 10, 3, True, False),
        (
            "both require restrictions: both bases needed",
            with_restrictions((7, 1, {10}), (7, 2, {10})),
            10,
            7,
            False,
            True,
        ),
        (
            "both require restrictions, consent only",
            with_restrictions((7, 1, {11}), (7, 2, {11})),
            11,
            7,
            True,
            False,
        ),
        ("type 3 is ignored", with_restrictions((1, 3, {10})), 10, 1, False, True),
        ("type 3 does not grant", with_restrictions((4, 3, {10})), 10, 4, True, False),
        ("unknown vendor", BASE, 999, 1, True, False),
    ],
)
def test_vendor_may(
    case: str, tc: TCString, vendor: int, purpose: int, li_allowed: bool, expected: bool
) -> None:
    assert vendor_may(tc, vendor, purpose, legitimate_interest_allowed=li_allowed) is expected, case


def test_vendor_may_on_a_published_vector() -> None:
    tc = decode_tc_string(COREV)  # purposes 3-9 consented, LI bits none
    assert vendor_may(tc, 23, 3)
    assert not vendor_may(tc, 23, 1)
    assert not vendor_may(tc, 129, 7)  # LI vendor bit only; purpose LI bit not set
    assert not vendor_may(tc, 129, 7, legitimate_interest_allowed=True)


def test_restriction_type_values() -> None:
    assert [t.value for t in RestrictionType] == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("case", "disclosed", "policy", "vendor", "expected"),
    [
        ("segment lists the vendor", frozenset({5, 7}), 5, 7, True),
        ("segment lacks the vendor", frozenset({5, 7}), 5, 6, False),
        ("empty segment", frozenset(), 5, 7, False),
        ("segment present, old policy, vendor absent", frozenset({5}), 4, 7, False),
        ("no segment, TCF 2.3 (policy 5)", None, 5, 7, False),
        ("no segment, later policy", None, 6, 7, False),
        ("no segment, TCF 2.2 (policy 4)", None, 4, 7, True),
        ("no segment, TCF 2.0 (policy 2)", None, 2, 7, True),
    ],
)
def test_vendor_disclosed(
    case: str, disclosed: frozenset[int] | None, policy: int, vendor: int, expected: bool
) -> None:
    tc = dataclasses.replace(BASE, disclosed_vendors=disclosed, policy_version=policy)
    assert vendor_disclosed(tc, vendor) is expected, case


# --- bounded work --------------------------------------------------------------------------


def test_range_expansion_is_capped_before_expanding() -> None:
    # 252 restrictions each naming every vendor: 2,226 characters that would expand to
    # 16.5 million ids. Refused when the running total passes MAX_RANGE_IDS.
    value = core(pubr=restrictions([(p, k, [(1, 65535)]) for p in range(1, 64) for k in range(4)]))
    assert len(value) < 2300
    with mock.patch.object(
        tcf._RangeBudget, "take", autospec=True, side_effect=tcf._RangeBudget.take
    ) as take:
        assert refused(value) == "too many vendor ids in ranges"
    assert take.call_count == MAX_RANGE_IDS // 65535 + 1


def test_range_expansion_up_to_the_cap_is_accepted() -> None:
    value = core(pubr=restrictions([(1, 0, [(1, 65535)]), (2, 0, [(1, 65535)])]))
    assert MAX_RANGE_IDS >= 2 * 65535
    assert len(decode_tc_string(value).publisher_restrictions[(2, 0)]) == 65535


class ReadCounter:
    """Counts `BitReader.read` calls, and the bits every reader moved past (reads, and
    range entries read in place: `tcf._range_entries`)."""

    def __init__(self) -> None:
        self.calls = 0
        self.readers: list[BitReader] = []

    @property
    def bits(self) -> int:
        return sum(r.pos for r in self.readers)


def counted(value: str) -> tuple[ReadCounter, bool]:
    """Decode `value` with `BitReader` instrumented; (counts, decoded?)."""
    counter = ReadCounter()
    original_read, original_init = BitReader.read, BitReader.__init__

    def init(reader: BitReader, segment: str) -> None:
        original_init(reader, segment)
        counter.readers.append(reader)

    def read(reader: BitReader, width: int) -> int:
        counter.calls += 1
        return original_read(reader, width)  # a read past the end raises before any work

    with mock.patch.object(BitReader, "read", read), mock.patch.object(BitReader, "__init__", init):
        try:
            decode_tc_string(value)
            ok = True
        except TCFError:
            ok = False
    return counter, ok


def assert_linear(value: str, counter: ReadCounter) -> None:
    # Each read moves forward and costs O(width) (it touches only the bytes it needs), and
    # range entries read in place move forward 17 or 33 bits each at O(1), so bits moved
    # past <= bits present means the work of reading is linear in the input. Zero-width
    # reads (an empty bitfield, no custom purposes) are a bounded handful per segment.
    assert counter.bits <= 6 * len(value)
    assert counter.calls <= 6 * len(value) + 8


def test_reads_are_linear_in_the_input() -> None:
    # Linearity is shown by structure, not by a stopwatch: see assert_linear. The biggest
    # inputs the cap allows are read once, bit by bit at most.
    big_bitfield = core(consents=bitfield_section(set(range(1, 65536, 3))))
    many_entries = core(consents=range_section([(i, i) for i in range(1, 4096)], 4095))
    for value in (big_bitfield, many_entries, "C" + "A" * (MAX_TC_STRING_LENGTH - 1)):
        assert len(value) <= MAX_TC_STRING_LENGTH
        counter, ok = counted(value)
        assert ok
        assert_linear(value, counter)


@given(st.text(alphabet=B64URL + ".=", max_size=400))
def test_reads_are_linear_for_any_input(value: str) -> None:
    counter, _ = counted(value)
    assert_linear(value, counter)


def test_oversized_garbage_is_refused_before_any_work() -> None:
    counter, ok = counted("C" * (MAX_TC_STRING_LENGTH + 1))
    assert not ok
    assert counter.calls == 0
    counter, ok = counted("x" * (10 * MAX_TC_STRING_LENGTH))
    assert (counter.calls, ok) == (0, False)


# --- fuzzing: only TCFError, and whatever decodes is sane ----------------------------------

VALID = [
    "COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA",
    COREV + ".IBAgAAAgAIAwgAgAAAAEAAAACA.QAagAQAgAIAwgA.cAAAAAAAITg=",
    "COwBOpCOwBOpCLqAAAENAPCAAAAAAAAAAAAAFfwAYFfAV-BVkAGBVYFWAAA",
    GO_PUBR2,
    "CQSbk4AQSbk4ANwAAAENAwCgAAAAAAAAAAYgACPAAAAA.IDKQA4AAgAKAGQAygAAA.YAAAAAAAAAAA",
    core(pubr=restrictions([(2, 0, [(5, 7)]), (2, 0, [(6, 9)]), (4, 3, [(1, 2)])])),
]


def check(value: str) -> None:
    """Decoding `value` either fails with a known reason or gives a sane TCString."""
    try:
        tc = decode_tc_string(value)
    except TCFError as e:
        assert REASON_RE.fullmatch(e.reason), e.reason
        return
    assert tc.version == 2
    assert re.fullmatch("[A-Z]{2}", tc.consent_language)
    assert re.fullmatch("[A-Z]{2}", tc.publisher_country_code)
    assert tc.created.tzinfo is UTC
    for ids, top in (
        (tc.special_feature_optins, 12),
        (tc.purpose_consents, 24),
        (tc.purpose_legitimate_interests, 24),
        (tc.publisher_consents, 24),
        (tc.custom_purpose_consents, 63),
        (tc.vendor_consents, 65535),
        (tc.vendor_legitimate_interests, 65535),
        (tc.disclosed_vendors or frozenset(), 65535),
        *((v, 65535) for v in tc.publisher_restrictions.values()),
    ):
        assert all(1 <= i <= top for i in ids)
    assert all(v for v in tc.publisher_restrictions.values())
    assert all(1 <= p <= 63 and 0 <= k <= 3 for p, k in tc.publisher_restrictions)
    out = tc.to_json()
    assert list(out) == FIELDS


@given(st.text(max_size=300))
def test_fuzz_any_text(value: str) -> None:
    check(value)


@given(st.binary(max_size=600), st.booleans())
def test_fuzz_any_bytes_as_base64url(raw: bytes, version_2: bool) -> None:
    if version_2 and raw:
        raw = bytes([0b00001000 | (raw[0] & 0b11)]) + raw[1:]  # version field = 2
    check(base64.urlsafe_b64encode(raw).decode().rstrip("="))


@given(st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=5))
def test_fuzz_segments_of_any_bytes(parts: list[bytes]) -> None:
    first = bytes([0b00001000]) + parts[0]
    segments = [first, *parts[1:]]
    check(".".join(base64.urlsafe_b64encode(p).decode().rstrip("=") for p in segments))


MUTATIONS = st.sampled_from(["flip", "insert", "delete", "truncate", "dup", "swap"])


@given(
    st.sampled_from(VALID),
    st.lists(
        st.tuples(MUTATIONS, st.integers(0, 10_000), st.sampled_from(B64URL + ".=")), max_size=4
    ),
)
def test_fuzz_mutated_valid_strings(value: str, edits: list[tuple[str, int, str]]) -> None:
    for op, at, char in edits:
        i = at % (len(value) or 1)
        if op == "flip":
            value = value[:i] + char + value[i + 1 :]
        elif op == "insert":
            value = value[:i] + char + value[i:]
        elif op == "delete":
            value = value[:i] + value[i + 1 :]
        elif op == "truncate":
            value = value[:i]
        else:
            parts = value.split(".")
            j = at % len(parts)
            if op == "dup":
                parts.insert(j, parts[j])
            else:
                parts[0], parts[j] = parts[j], parts[0]
            value = ".".join(parts)
    check(value)


def test_a_kept_string_decodes_as_afresh_and_a_bad_one_raises_again() -> None:
    from gateway.consent.tcf import decode_tc_string_kept

    good = core(purposes={1, 8})
    assert decode_tc_string_kept(good) == decode_tc_string(good)
    assert decode_tc_string_kept(good) is decode_tc_string_kept(good)
    for _ in range(2):  # the second answer comes from the cache: the same error
        with pytest.raises(TCFError) as e:
            decode_tc_string_kept("not a tc string!")
        with pytest.raises(TCFError) as fresh:
            decode_tc_string("not a tc string!")
        assert e.value.reason == fresh.value.reason
