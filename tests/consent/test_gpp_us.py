"""gateway.consent.gpp_us: the US sections of GPP, usnat and the state sections, read
through `decode_gpp`.

Vectors and the test encoder: tests/consent/gpp_harness.py (where each vector comes from).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.consent import gpp
from gateway.consent.gpp import decode_gpp, us_opt_outs
from gateway.consent.gpp_us import US_SPECS
from tests.consent.gpp_harness import US_VECTORS, b64, gpp_string, ints, tupled

# --- vectors --------------------------------------------------------------------------


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


# --- properties -----------------------------------------------------------------------


@settings(max_examples=300)
@given(st.sampled_from(sorted(US_SPECS)), st.data())
def test_state_sections_round_trip(sid: int, data: st.DataObject) -> None:
    spec = US_SPECS[sid]
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
