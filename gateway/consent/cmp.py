"""Consent-management platforms' own cookies: what the visitor chose in the CMP's terms.

Each decoder reads one CMP's cookie value and returns a `CMPConsent` in the CMP's own
vocabulary (its category ids); mapping those onto the gateway's purposes is config's
job (DESIGN §2). Every decoder is total: whatever it is given, it returns a value or
raises `CMPError`, whose `reason` is a short fixed phrase that never quotes the input.
A caller treats a `CMPError` as "no answer from this CMP", never as consent (DESIGN §9).

| decoder | cookie (default name) | format |
|---|---|---|
| `decode_onetrust` | `OptanonConsent` | query string; `groups=C0001:1,C0002:0,...` |
| `decode_onetrust_tc` | `eupubconsent-v2` | an IAB TCF TC string, returned as is |
| `decode_cookiebot` | `CookieConsent` | JS object literal `{stamp:'..',necessary:true,..}` |
| `decode_didomi` | `didomi_token` | base64 of JSON `{purposes:{enabled,disabled},...}` |
| `decode_klaro` | `klaro` | JSON `{"<service>": true|false}` |
| `decode_cookieyes` | `cookieyes-consent` | `consentid:<id>,action:yes,<category>:yes|no,..` |
| `decode_complianz` | `cmplz_<category>` | one cookie per category, `allow`/`deny` |
| `decode_commanders_act` | `TC_PRIVACY` | `<status>@<version>|<banner>|<site>@<consent>@..` |

Cookie values arrive percent-encoded, sometimes twice: a decoder undoes at most two
rounds, and only while the value still looks encoded. A value encoded three times, or
longer than a browser keeps (4096 characters), or not ASCII as received, is refused.
`FORMATS` is the one registry of CMPs (keyed by `model.CMP`, the name config and the
resolver use): `decode_cmp_cookies` runs every decoder whose cookie is present;
`detect_cmp` guesses the format of a bare value (`consent-gateway decode`). Adding a CMP
is adding its entry here (and its decoder).

The decoders live by family: `gateway.consent.cmp_lists` (OneTrust, CookieYes, Complianz,
Commanders Act: delimited fields) and `gateway.consent.cmp_objects` (Cookiebot, Didomi,
Klaro: objects); `gateway.consent.cmp_base` holds `CMPConsent` and the checks they share.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

from gateway.consent.cmp_base import CMPConsent
from gateway.consent.cmp_lists import (
    COMPLIANZ_COOKIES,
    decode_commanders_act,
    decode_complianz,
    decode_cookieyes,
    decode_onetrust,
    decode_onetrust_tc,
)
from gateway.consent.cmp_objects import decode_cookiebot, decode_didomi, decode_klaro
from gateway.errors import CMPError
from gateway.model import CMP

__all__ = [
    "CMP_COOKIES",
    "CMP_COOKIE_NAMES",
    "FORMATS",
    "CMPFailure",
    "CMPFormat",
    "decode_cmp_cookies",
    "detect_cmp",
    "detect_cmp_value",
]


class CMPFailure(NamedTuple):
    """A CMP cookie that was present but could not be decoded: `(cmp, reason)`, safe to log.

    A tuple, so `for cmp, reason in failures` reads naturally. OneTrust's two cookies
    share `cmp=CMP.ONETRUST`; their reasons differ (`eupubconsent-v2` fails only with
    `malformed tc string`, or the checks every decoder makes first).
    """

    #: which CMP's cookie failed (as in `CMPConsent.cmp`); never the cookie's value
    cmp: CMP
    #: the `CMPError.reason`
    reason: str


# --- All of them: the registry ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CMPFormat:
    """One CMP's registry entry: its name, where it stores the choice, how to read it."""

    cmp: CMP
    #: the CMP's name as people write it, for messages
    label: str
    #: its cookies under their default names, each with its decoder, in decoding order
    cookies: tuple[tuple[str, Callable[[str], CMPConsent]], ...] = ()
    #: for a CMP that spreads the choice over several cookies (Complianz): reads them all
    read_all: Callable[[Mapping[str, str]], CMPConsent | None] | None = None
    #: the cookies `read_all` reads (what the signal cache keys on: see `SIGNAL_COOKIES`)
    reads: tuple[str, ...] = ()
    #: the decoder `detect_cmp` tries on a bare value; None: not recognisable alone
    detect: Callable[[str], CMPConsent] | None = None


#: every CMP the gateway reads, in the order `decode_cmp_cookies` runs them. Config
#: validation, signal reading and `consent-gateway decode` all iterate this one table.
FORMATS: Mapping[CMP, CMPFormat] = MappingProxyType(
    {
        f.cmp: f
        for f in (
            CMPFormat(
                CMP.ONETRUST,
                "OneTrust",
                (("OptanonConsent", decode_onetrust), ("eupubconsent-v2", decode_onetrust_tc)),
                detect=decode_onetrust,
            ),
            CMPFormat(
                CMP.COOKIEBOT,
                "Cookiebot",
                (("CookieConsent", decode_cookiebot),),
                detect=decode_cookiebot,
            ),
            CMPFormat(
                CMP.DIDOMI, "Didomi", (("didomi_token", decode_didomi),), detect=decode_didomi
            ),
            CMPFormat(CMP.KLARO, "Klaro", (("klaro", decode_klaro),), detect=decode_klaro),
            CMPFormat(
                CMP.COOKIEYES,
                "CookieYes",
                (("cookieyes-consent", decode_cookieyes),),
                detect=decode_cookieyes,
            ),
            CMPFormat(
                CMP.COMMANDERS_ACT,
                "Commanders Act",
                (("TC_PRIVACY", decode_commanders_act),),
                detect=decode_commanders_act,
            ),
            CMPFormat(
                CMP.COMPLIANZ, "Complianz", read_all=decode_complianz, reads=COMPLIANZ_COOKIES
            ),
        )
    }
)
if set(FORMATS) != set(CMP):  # pragma: no cover - a CMP added to the enum without an entry
    raise ImportError(f"gateway.consent.cmp.FORMATS lacks {sorted(set(CMP) - set(FORMATS))}")

if any(f.read_all is not None and not f.reads for f in FORMATS.values()):  # pragma: no cover
    raise ImportError("gateway.consent.cmp.FORMATS: a read_all without the cookies it reads")

#: the order `detect_cmp` tries formats on a bare value: most distinctive first
_DETECT_ORDER = (
    CMP.ONETRUST,
    CMP.COOKIEBOT,
    CMP.COOKIEYES,
    CMP.COMMANDERS_ACT,
    CMP.DIDOMI,
    CMP.KLARO,
)

#: the single-cookie CMPs' default cookie names -> cmp (Complianz: `cmplz_<category>`)
CMP_COOKIES: Mapping[str, CMP] = MappingProxyType(
    {name: f.cmp for f in FORMATS.values() for name, _ in f.cookies}
)


#: every cookie `decode_cmp_cookies` reads: its answer depends on these alone
CMP_COOKIE_NAMES = frozenset(CMP_COOKIES) | {n for f in FORMATS.values() for n in f.reads}


def decode_cmp_cookies(
    cookies: Mapping[str, str],
) -> tuple[list[CMPConsent], list[CMPFailure]]:
    """Every known CMP cookie among `cookies` (name -> raw value), decoded.

    Returns `(decoded, failures)`: one `CMPConsent` per cookie that decodes (OneTrust may
    give two: `OptanonConsent` and `eupubconsent-v2`; Complianz one for all its
    cookies), and one `CMPFailure` per cookie that is present but raised CMPError, so
    the caller can log why without the value. Both lists follow `FORMATS`' order.
    Never raises CMPError; cookie names are matched exactly (they are case-sensitive),
    under the CMPs' default names only.
    """
    decoded: list[CMPConsent] = []
    failures: list[CMPFailure] = []
    for f in FORMATS.values():
        for name, decoder in f.cookies:
            raw = cookies.get(name)
            if raw is None:
                continue
            try:
                decoded.append(decoder(raw))
            except CMPError as e:
                failures.append(CMPFailure(cmp=f.cmp, reason=e.reason))
        if f.read_all is not None:
            try:
                found = f.read_all(cookies)
            except CMPError as e:
                failures.append(CMPFailure(cmp=f.cmp, reason=e.reason))
            else:
                if found is not None:
                    decoded.append(found)
    return decoded, failures


def detect_cmp(value: str) -> CMPConsent | None:
    """A bare value decoded by the first CMP format that accepts it (see `detect_cmp_value`)."""
    for name in _DETECT_ORDER:
        detect = FORMATS[name].detect
        if detect is None:  # pragma: no cover - _DETECT_ORDER lists detectable CMPs only
            continue
        try:
            return detect(value)
        except CMPError:
            continue
    return None


def detect_cmp_value(value: str) -> CMP | None:
    """Which CMP's cookie format a bare value is in (`consent-gateway decode`), or None.

    The answer is the first of onetrust (groups query string), cookiebot (object
    literal, or `-1`), cookieyes (`consentid:` list), commanders_act (`@` fields),
    didomi (base64 JSON with `user_id`) and klaro (JSON of booleans) whose decoder
    accepts the value. TC strings are not CMP formats (see gateway.consent.tcf).
    Never raises.
    """
    found = detect_cmp(value)
    return None if found is None else found.cmp
