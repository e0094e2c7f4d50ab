"""gateway.consent.gpp: the GPP container (header, sections, limits), `us_opt_outs` and
`applicable`, and the whole decoder's properties.

Vectors and the test encoder: tests/consent/gpp_harness.py (where each vector comes from).
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.consent import gpp, gpp_us
from gateway.consent.gpp import (
    MAX_GPP_LENGTH,
    OPT_OUTS,
    GPPString,
    applicable,
    decode_gpp,
    us_opt_outs,
)
from gateway.errors import GPPError
from tests.consent.gpp_harness import (
    ALPHABET,
    CA,
    CA_VECTORS,
    TC,
    US_VECTORS,
    b64,
    fib,
    gpp_string,
    header,
    ints,
)

# --- header ---------------------------------------------------------------------------


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


# --- us_opt_outs and applicable -------------------------------------------------------


def usnat(**values: int) -> str:
    """A usnat section (16/3 layout): every field 0 unless given; gpc=None leaves no GPC."""
    order = [name for name, _, _ in gpp_us._USNAT_NOTICES[1:]]
    bits = ints(2, width=6) + ints(*(values.get(name, 0) for name in order))
    bits += ints(*[0] * 19) + ints(0, values.get("mspa_covered_transaction", 1), 0, 0)
    text = b64(bits)
    if "gpc" in values:
        text += "." + b64("01" + str(values["gpc"]))
    return text


def state(sid: int, **values: int) -> str:
    """A state section: every field 0 (MspaCoveredTransaction 1) unless given."""
    spec = gpp_us.US_SPECS[sid]
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
    for sid in gpp_us.US_SPECS:
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
GPP_CHARS = ALPHABET + "~.=%1YN- "


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
