"""gateway.consent.gpp_bits: the bit reader's Fibonacci integers.

The range types, letters and dates are read through tcfcav1 (test_gpp_tcf.py).
"""

from __future__ import annotations

import pytest

from gateway.consent.gpp_bits import Bits
from gateway.errors import GPPError
from tests.consent.gpp_harness import b64, fib

# --- Fibonacci coding -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "code"),
    # GPP spec, "Fibonacci Encoding" table (and its continuation)
    [(1, "11"), (2, "011"), (3, "0011"), (4, "1011"), (5, "00011"), (6, "10011")]
    + [(7, "01011"), (8, "000011"), (12, "101011"), (89, "00000000011")],
)
def test_fibonacci_code_words(n: int, code: str) -> None:
    assert fib(n) == code
    bits = Bits(b64(code + "0"), "test")
    assert bits.fib() == n
    assert bits.pos == len(code)


def test_fibonacci_word_longer_than_32_bits_is_refused() -> None:
    with pytest.raises(GPPError, match="Fibonacci integer too large"):
        Bits(b64("0" * 40 + "11"), "test").fib()
