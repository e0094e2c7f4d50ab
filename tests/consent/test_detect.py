"""gateway.consent.detect: `consent-gateway decode` recognises every kind by shape."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.consent.detect import decode_any, render_table
from gateway.errors import SignalError, TCFError

# iabtcf-java TCStringV2Test.testCanConstructTCModelFromBase64String
TCF = "COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA"


@pytest.mark.parametrize(
    ("value", "kind", "check"),
    [
        (TCF, "tcf", lambda f: f["cmp_id"] == 675 and f["purpose_consents"] == [2, 10]),
        ("DBABMA~" + TCF, "gpp", lambda f: f["header"]["section_ids"] == [2]),
        ("1YNN", "us_privacy", lambda f: f["opt_out_sale"] == "N"),
        ("G101", "gcs", lambda f: f == {"ad_storage": "denied", "analytics_storage": "granted"}),
        ("11r1q1q1q5", "gcd", lambda f: f["ad_storage"]["effective"] == "granted"),
        (
            "consentid:x,consent:yes,action:yes,necessary:yes,analytics:no",
            "cookieyes",
            lambda f: f["categories"]["analytics"] is False,
        ),
        (
            "groups=C0001%3A1%2CC0002%3A0&interactionCount=1",
            "onetrust",
            lambda f: f["categories"] == {"C0001": True, "C0002": False},
        ),
    ],
)
def test_detects_and_decodes(value: str, kind: str, check: object) -> None:
    got_kind, fields = decode_any(value)
    assert got_kind == kind
    assert check(fields)  # type: ignore[operator]


def test_v1_tc_string_is_refused_with_a_reason() -> None:
    # TCF v1.1 spec example
    with pytest.raises(TCFError) as info:
        decode_any("BOEFEAyOEFEAyAHABDENAI4AAAB9vABAASA")
    assert "v1" in info.value.reason


@given(st.text(max_size=300))
def test_never_raises_anything_but_signal_error(value: str) -> None:
    try:
        kind, fields = decode_any(value)
    except SignalError:
        return
    assert isinstance(fields, dict) and kind


def test_render_table_aligns_and_nests() -> None:
    lines = render_table({"a": 1, "long_name": [1, 2], "nested": {"x": True}, "none": None})
    assert lines == ["a          1", "long_name  1, 2", "nested", "  x  true", "none       -"]
