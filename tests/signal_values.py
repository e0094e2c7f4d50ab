"""Consent-signal values built for tests: a bit-level TC string builder (the shape of
iabtcf-java's `base64FromBitString`) and the sample signals several test modules share.

tests/consent/test_tcf_differential.py checks that IAB's reference decoder reads strings
built here the way gateway.consent.tcf does.
"""

from __future__ import annotations

import string
from typing import Any
from urllib.parse import quote

__all__ = [
    "B64URL",
    "EMPTY_SECTION",
    "ONETRUST_NO_TARGETING",
    "TC_ADS_755",
    "TC_ADS_NOT_755",
    "TC_ANALYTICS",
    "bitfield_section",
    "bits",
    "core",
    "entries",
    "header",
    "idfield",
    "range_section",
    "restrictions",
    "uint",
]

B64URL = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"


def bits(bitstring: str) -> str:
    """base64url, no padding, of a '0'/'1' string, zero-filled to whole characters."""
    bitstring = bitstring.replace(" ", "")
    bitstring += "0" * (-len(bitstring) % 6)
    return "".join(B64URL[int(bitstring[i : i + 6], 2)] for i in range(0, len(bitstring), 6))


def uint(value: int, width: int) -> str:
    assert 0 <= value < 1 << width
    return format(value, f"0{width}b")


def idfield(ids: set[int] | list[int], width: int) -> str:
    return "".join("1" if i in ids else "0" for i in range(1, width + 1))


def header(
    *,
    version: int = 2,
    created: int = 0,
    cmp_id: int = 300,
    language: tuple[int, int] = (4, 13),  # "EN"
    policy: int = 4,
    purposes: set[int] | None = None,
    li_purposes: set[int] | None = None,
    country: tuple[int, int] = (0, 0),  # "AA"
) -> str:
    """The core segment's first 213 bits, up to the vendor consent section."""
    return "".join(
        [
            uint(version, 6),
            uint(created, 36),
            uint(created, 36),
            uint(cmp_id, 12),
            uint(1, 12),  # CmpVersion
            uint(0, 6),  # ConsentScreen
            uint(language[0], 6) + uint(language[1], 6),
            uint(100, 12),  # VendorListVersion
            uint(policy, 6),
            "1",  # IsServiceSpecific
            "0",  # UseNonStandardTexts
            idfield(set(), 12),
            idfield(purposes or set(), 24),
            idfield(li_purposes or set(), 24),
            "0",  # PurposeOneTreatment
            uint(country[0], 6) + uint(country[1], 6),
        ]
    )


def bitfield_section(ids: set[int], max_id: int | None = None) -> str:
    top = max(ids, default=0) if max_id is None else max_id
    return uint(top, 16) + "0" + idfield(ids, top)


def entries(ranges: list[tuple[int, int]]) -> str:
    out = uint(len(ranges), 12)
    for start, end in ranges:
        out += "1" + uint(start, 16) + uint(end, 16) if start != end else "0" + uint(start, 16)
    return out


def range_section(ranges: list[tuple[int, int]], max_id: int) -> str:
    return uint(max_id, 16) + "1" + entries(ranges)


def restrictions(items: list[tuple[int, int, list[tuple[int, int]]]]) -> str:
    out = uint(len(items), 12)
    for purpose, kind, ranges in items:
        out += uint(purpose, 6) + uint(kind, 2) + entries(ranges)
    return out


EMPTY_SECTION = uint(0, 16) + "0"


def core(
    consents: str = EMPTY_SECTION,
    li: str = EMPTY_SECTION,
    pubr: str = uint(0, 12),
    **head: Any,
) -> str:
    return bits(header(**head) + consents + li + pubr)


# --- samples ---------------------------------------------------------------------------------

#: purposes 1-4 and 7 consented (advertising per the default mapping), vendor 755 consented
TC_ADS_755 = core(purposes={1, 2, 3, 4, 7}, consents=bitfield_section({755}))
#: the same purposes, but vendor 755 absent from the vendor consents
TC_ADS_NOT_755 = core(purposes={1, 2, 3, 4, 7}, consents=bitfield_section({1, 2}))
#: only purposes 1 and 8 (analytics)
TC_ANALYTICS = core(purposes={1, 8})

ONETRUST_NO_TARGETING = quote(
    "isGpcEnabled=0&datestamp=Tue+Sep+12+2023+10%3A00%3A00+GMT%2B0200&version=202306.1.0"
    "&interactionCount=1&groups=C0001%3A1%2CC0002%3A1%2CC0003%3A1%2CC0004%3A0",
    safe="=&%+",
)
