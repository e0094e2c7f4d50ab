"""gateway.consent.cmp_base: the errors and the percent-encoding every decoder shares.

Sources of the examples: tests/consent/cmp_harness.py.
"""

from __future__ import annotations

import pytest

from gateway.consent.cmp_lists import (
    decode_commanders_act,
    decode_cookieyes,
    decode_onetrust,
    decode_onetrust_tc,
)
from gateway.consent.cmp_objects import decode_cookiebot, decode_didomi, decode_klaro
from gateway.errors import CMPError, SignalError
from tests.consent.cmp_harness import (
    COOKIEBOT,
    COOKIEYES,
    DIDOMI,
    ONETRUST,
    TC_STRING,
    Decoder,
    didomi_token,
    enc,
)


def test_cmp_error_is_a_signal_error() -> None:
    assert issubclass(CMPError, SignalError)


# The values with none of the CMP's own encoding (OneTrust's values always carry theirs).
PLAIN = [
    (decode_onetrust, ONETRUST),
    (decode_onetrust_tc, TC_STRING + "=="),
    (decode_cookiebot, COOKIEBOT),
    (decode_didomi, didomi_token(DIDOMI, padded=True)),
    (decode_klaro, '{"matomo":false,"youtube":true}'),
    (decode_cookieyes, COOKIEYES),
    (decode_commanders_act, "0@008|2|2|42|12|34@2,12@5@1592900933049,1592900933049@AAAA"),
]


@pytest.mark.parametrize(("decode", "plain"), PLAIN)
def test_two_rounds_of_encoding_are_undone_not_three(decode: Decoder, plain: str) -> None:
    expect = decode(plain)
    assert decode(enc(plain)) == expect
    assert decode(enc(plain, 2)) == expect
    with pytest.raises(CMPError):
        decode(enc(plain, 3))
