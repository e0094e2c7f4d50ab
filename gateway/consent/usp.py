"""The US Privacy (CCPA) string: stand-alone (query `us_privacy`, cookies `us_privacy` /
`usprivacy`) or as GPP section 6 (`uspv1`).

`decode_us_privacy` is pure and total: it returns a `USPrivacy` or raises `GPPError`
(a short reason, never quoting the input), whatever the input. Where es 3.2.0 is laxer,
we refuse: anything other than `1` and three of `Y`/`N`/`-`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.errors import GPPError

__all__ = ["USPrivacy", "decode_us_privacy", "usp_opted_out"]


@dataclass(frozen=True, slots=True)
class USPrivacy:
    """A US Privacy (CCPA) string: `1` then three of `Y`, `N`, `-` (not applicable)."""

    #: always 1
    version: int
    #: explicit notice / opportunity to opt out given
    notice: str
    #: `Y`: the visitor opted out of the sale of personal information
    opt_out_sale: str
    #: the publisher is a signatory of the IAB Limited Service Provider Agreement
    lspa_covered: str

    def to_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "notice": self.notice,
            "opt_out_sale": self.opt_out_sale,
            "lspa_covered": self.lspa_covered,
        }


_USP_RE = re.compile(r"1[YN-]{3}")


def decode_us_privacy(value: str) -> USPrivacy:
    """The US Privacy string in `value` (stand-alone, or GPP section 6).

    Exactly four characters: version `1`, then notice, opt-out-of-sale and LSPA, each
    `Y`, `N` or `-` (upper case). Anything else raises GPPError, and nothing else does.
    """
    if not isinstance(value, str) or not _USP_RE.fullmatch(value):
        raise GPPError("uspv1: not a US Privacy string")
    return USPrivacy(1, value[1], value[2], value[3])


def usp_opted_out(usp: USPrivacy) -> bool:
    """True when the visitor opted out of the sale of personal information (`1?Y?`)."""
    return usp.opt_out_sale == "Y"
