"""What a CMP cookie decodes to (`CMPConsent`), and the checks every CMP decoder makes.

Every decoder (`gateway.consent.cmp_lists`, `gateway.consent.cmp_objects`) starts with
`check` and `unwrap`: cookie values arrive percent-encoded, sometimes twice, so at most
two rounds are undone, and only while the value still looks encoded. A value encoded
three times, or longer than a browser keeps (4096 characters), or not ASCII as received,
is refused. Every failure is a `CMPError` whose `reason` is a short fixed phrase that
never quotes the input.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import unquote, unquote_plus

from gateway.errors import CMPError
from gateway.model import CMP

__all__ = [
    "DIGITS",
    "ID",
    "MAX_COOKIE_LENGTH",
    "TC_CHARS",
    "CMPConsent",
    "bool_map",
    "check",
    "unquote_once",
    "unwrap",
]

#: longer values are refused before any work (a browser keeps at most 4096 bytes per cookie)
MAX_COOKIE_LENGTH = 4096

_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
# Category ids in the compact formats (OneTrust C0001 / STACK42 / SPD_BG / V2STACK42 / 2,
# CookieYes, Commanders Act): identifier characters only.
ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
DIGITS = re.compile(r"[0-9]{1,15}")  # 15 digits: epoch milliseconds until year 33658
TC_CHARS = re.compile(r"[A-Za-z0-9_.=+/-]+")  # base64url, `.` segments, tolerated padding


@dataclass(frozen=True, slots=True)
class CMPConsent:
    """What one CMP cookie says the visitor chose, in the CMP's own terms.

    `categories` maps the CMP's category (or service) ids to True (granted) or False
    (refused); a category it does not name is answered by `others`. Everything else
    is None when the cookie does not say.
    """

    #: which CMP wrote the cookie
    cmp: CMP
    #: the CMP's category ids -> granted?
    categories: Mapping[str, bool]
    #: did the visitor act on the banner (False: defaults only, or none needed)
    interacted: bool | None = None
    #: when the choice was recorded, epoch seconds
    at: float | None = None
    #: the answer for every category `categories` does not name (e.g. Commanders Act's
    #: "opted out of everything"); None: those are unknown
    others: bool | None = None
    #: the CMP decided by its own geolocation that no consent is needed here (Cookiebot
    #: `-1`) and so granted everything; a resolver may prefer to ignore such an answer
    no_consent_required: bool = False
    #: the CMP recorded a Global Privacy Control signal (OneTrust `isGpcEnabled`)
    gpc: bool | None = None
    #: an IAB TCF TC string the cookie carries, undecoded (see gateway.consent.tcf)
    tc_string: str | None = None
    #: the CMP's own vendor or service ids -> granted? (Klaro services, OneTrust
    #: `genVendors`, Didomi vendors); config maps them onto rule vendors
    vendors: Mapping[str, bool] = field(default_factory=lambda: MappingProxyType({}))

    def __repr__(self) -> str:
        # SECURITY: a TC string is a consent string; logs name its presence only.
        tc = "" if self.tc_string is None else ", tc_string=..."
        return (
            f"CMPConsent(cmp={self.cmp!r}, categories={dict(self.categories)!r}, "
            f"interacted={self.interacted!r}, at={self.at!r}, others={self.others!r}, "
            f"no_consent_required={self.no_consent_required!r}, gpc={self.gpc!r}, "
            f"vendors={dict(self.vendors)!r}{tc})"
        )


def check(value: object) -> str:
    # SECURITY: bound the work before anything else; cookies are visitor input.
    if not isinstance(value, str) or len(value) > MAX_COOKIE_LENGTH or not value.isascii():
        raise CMPError("malformed")
    if not value:
        raise CMPError("empty")
    return value


def unquote_once(value: str, plus: bool = False) -> str:
    try:
        if plus:
            return unquote_plus(value, errors="strict")
        return unquote(value, errors="strict")
    except UnicodeDecodeError:
        raise CMPError("bad percent-encoding") from None


def unwrap(value: str, done: Callable[[str], bool] | None = None) -> str:
    """`value` with at most two rounds of percent-encoding undone.

    A round is undone only while the value still looks encoded (`%XX` in it) and, when
    given, `done` says its structure is not yet visible.
    """
    for _ in range(2):
        if not _PERCENT.search(value) or (done is not None and done(value)):
            break
        value = unquote_once(value)
    return value


def bool_map(pairs: Iterable[tuple[str, bool]]) -> Mapping[str, bool]:
    categories: dict[str, bool] = {}
    for name, granted in pairs:
        # A category stated twice is ambiguous: no answer rather than a guess.
        if name in categories:
            raise CMPError("duplicate category")
        categories[name] = granted
    return MappingProxyType(categories)
