"""gateway.consent.gpp_tcf: the TCF sections of GPP, tcfeuv2 and tcfcav1, read through
`decode_gpp`.

Vectors and the test encoder: tests/consent/gpp_harness.py (where each vector comes from).
"""

from __future__ import annotations

import pytest

from gateway.consent import gpp
from gateway.consent.gpp import decode_gpp
from gateway.errors import GPPError
from tests.consent.gpp_harness import CA, CA_BASE, CA_VECTORS, TC, b64, fib, gpp_string, ints

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


# --- tcfcav1 --------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "fields"), CA_VECTORS, ids=lambda v: str(v)[-24:])
def test_tcfcav1_vectors(text: str, fields: dict[str, object]) -> None:
    decoded = decode_gpp(gpp_string((5, text))).sections["tcfcav1"]
    assert gpp._thaw(decoded) == gpp._thaw(fields)


def test_tcfcav1_segments_in_any_order_and_a_trailing_dot() -> None:
    core, purposes = CA.split(".")
    decoded = decode_gpp(gpp_string((5, f"{purposes}.{core}."))).sections["tcfcav1"]
    assert gpp._thaw(decoded) == gpp._thaw(CA_BASE)


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
