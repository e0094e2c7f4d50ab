"""gateway.consent.usp: the US Privacy string."""

from __future__ import annotations

import pytest

from gateway.consent.usp import USPrivacy, decode_us_privacy, usp_opted_out
from gateway.errors import GPPError


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
