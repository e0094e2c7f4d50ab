import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.consent import gpc as gpc_mod
from gateway.consent.gpc import gpc_signal
from gateway.model import Headers


def test_exports() -> None:
    assert all(hasattr(gpc_mod, name) for name in gpc_mod.__all__)


@pytest.mark.parametrize(
    ("headers", "expect"),
    [
        ((), False),
        ((("Sec-GPC", "1"),), True),
        ((("sec-gpc", "1"),), True),
        ((("SEC-GPC", "1"),), True),
        ((("Sec-GPC", " 1 "),), True),
        ((("Sec-GPC", "\t1"),), True),
        ((("Sec-GPC", "0"),), False),  # explicitly no preference
        ((("Sec-GPC", ""),), False),
        ((("Sec-GPC", "true"),), False),
        ((("Sec-GPC", "TRUE"),), False),
        ((("Sec-GPC", "yes"),), False),
        ((("Sec-GPC", "01"),), False),
        ((("Sec-GPC", "1.0"),), False),
        ((("Sec-GPC", "1, 1"),), False),
        ((("Sec-GPC", "11"),), False),
        ((("Sec-GPC", "\u0661"),), False),  # ARABIC-INDIC DIGIT ONE is not "1"
        ((("Sec-GPC", "\u00a01"),), False),  # only HTTP whitespace (SP, HTAB) is optional
        ((("DNT", "1"),), False),  # DNT is not GPC
        ((("X-Sec-GPC", "1"),), False),
        ((("Sec-GPC", "0"), ("Sec-GPC", "1")), True),  # any copy of 1 is a signal
        ((("Sec-GPC", "1"), ("Sec-GPC", "0")), True),
    ],
)
def test_gpc_signal(headers: tuple[tuple[str, str], ...], expect: bool) -> None:
    assert gpc_signal(Headers(headers)) is expect


@given(st.text())
def test_only_one_means_a_signal(value: str) -> None:
    assert gpc_signal(Headers((("Sec-GPC", value),))) is (value.strip(" \t") == "1")
