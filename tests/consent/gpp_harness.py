"""GPP strings for tests: a small encoder and the reference vectors.

Shared by the tests of gateway.consent.gpp and of its section modules (gpp_tcf, gpp_us):
the vectors are read there one section at a time, and here all together as the seeds of
the property tests of the whole decoder (tests/consent/test_gpp.py).

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

from collections.abc import Mapping

__all__ = [
    "ALPHABET",
    "CA",
    "CA_BASE",
    "CA_VECTORS",
    "TC",
    "US_VECTORS",
    "b64",
    "fib",
    "fib_range",
    "gpp_string",
    "header",
    "ints",
    "tupled",
]

# --- a small encoder, for building strings in tests ---------------------------------

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def b64(bits: str) -> str:
    """Bits to base64url, zero-padded to a multiple of 6 only (es pads to 8 first)."""
    bits += "0" * (-len(bits) % 6)
    return "".join(ALPHABET[int(bits[i : i + 6], 2)] for i in range(0, len(bits), 6))


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


# --- tcfcav1 --------------------------------------------------------------------------

CA_BASE = {
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
    **CA_BASE,
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
    (CA, CA_BASE),  # "should decode BPSG_8APSG_8AAyACAENGdCgf_gfgAfgfgBhADVqxGAD0AILVgAA..."
    # "should decode a legacy fixed-range vendor string (backwards compatibility)"
    ("BPSG_8APSG_8AAyACAENGdCgf_gfgAfgfgBgABABAAABAB4AACACAAA.fHHHA4444ao", CA_BASE),
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
        {**CA_BASE, "version": 2},
    ),
]
