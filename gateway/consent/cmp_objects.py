"""CMP cookies whose values are objects: Cookiebot (a JavaScript object literal), Didomi
(base64 of JSON) and Klaro (JSON).

Each decoder reads one CMP's cookie value and returns a `CMPConsent` in the CMP's own
vocabulary (its category or service ids), or raises `CMPError` (see
`gateway.consent.cmp_base`); `gateway.consent.cmp.FORMATS` says which cookie each
decoder reads.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from types import MappingProxyType

import orjson

from gateway.consent.cmp_base import DIGITS, TC_CHARS, CMPConsent, bool_map, check, unwrap
from gateway.errors import CMPError
from gateway.model import CMP

__all__ = ["COOKIEBOT_CATEGORIES", "decode_cookiebot", "decode_didomi", "decode_klaro"]

#: Cookiebot's fixed categories, all present in every `CookieConsent` value
COOKIEBOT_CATEGORIES = ("necessary", "preferences", "statistics", "marketing")
# JSON formats (Klaro service names, Didomi purpose ids) are free text set by the site.
_MAX_NAME = 128


def _epoch_ms(digits: str) -> float:
    if not DIGITS.fullmatch(digits):
        raise CMPError("bad timestamp")
    return int(digits) / 1000


def _iso_epoch(value: object) -> float | None:
    """Epoch seconds of an ISO-8601 timestamp (naive means UTC), or None if it is not one."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    except (ValueError, OverflowError):
        return None


# --- Cookiebot ----------------------------------------------------------------------------

# One `key:value` item of the literal. Values are 'quoted', "quoted" or bare (true,
# false, numbers). SECURITY: every quantifier is possessive (Python 3.11), so a failed
# match never backtracks into the whitespace runs: linear in the item's length.
_JS_ITEM = re.compile(
    r"\s*+([A-Za-z_$][A-Za-z0-9_$]*+)\s*+:\s*+('[^']*+'|\"[^\"]*+\"|[^,'\"{}\s]*+)\s*+(?:,|\Z)"
)
_JS_BOOL = {"true": True, "false": False}
_COOKIEBOT_METHOD = {"explicit": True, "implied": False}
_COOKIEBOT_NO_CONSENT = "-1"


def _js_object(value: str) -> dict[str, str]:
    """A flat JavaScript object literal's items, values as written (quotes kept)."""
    if len(value) < 2 or value[0] != "{" or value[-1] != "}":
        raise CMPError("not an object literal")
    body, pos, items = value[1:-1], 0, {}
    while pos < len(body):
        m = _JS_ITEM.match(body, pos)
        if m is None or m.end() == pos:
            raise CMPError("malformed object literal")
        key, raw = m.group(1), m.group(2)
        if key in items:
            raise CMPError("duplicate field")
        items[key] = raw
        pos = m.end()
    return items


def _js_string(raw: str | None) -> str | None:
    """The content of a quoted literal value; None for a bare (or missing) one."""
    return raw[1:-1] if raw is not None and raw[:1] in ("'", '"') else None


def decode_cookiebot(value: str) -> CMPConsent:
    """Cookiebot's `CookieConsent` cookie.

    A URL-encoded JavaScript object literal, not JSON (umbraco/UmbracoDocs; envato/
    cookie-consent `src/index.test.ts`): `{stamp:'...',necessary:true,preferences:false,
    statistics:true,marketing:false,method:'explicit',ver:1,utc:1698057791350,
    iab2:'<TC string>',region:'gb'}`. The four categories are required booleans;
    `method` explicit/implied gives `interacted`; `utc` (milliseconds) gives `at`; a
    non-empty `iab2` is returned in `tc_string`; other keys are ignored.

    The bare value `-1`, or `stamp:'-1'`, means Cookiebot's geolocation found that the
    visitor's region needs no consent: every category is granted and
    `no_consent_required` is set. Raises CMPError for anything else.
    """
    value = unwrap(check(value))
    if value == _COOKIEBOT_NO_CONSENT:
        return CMPConsent(
            cmp=CMP.COOKIEBOT,
            categories=bool_map((name, True) for name in COOKIEBOT_CATEGORIES),
            interacted=False,
            others=True,
            no_consent_required=True,
        )
    items = _js_object(value)
    pairs = []
    for name in COOKIEBOT_CATEGORIES:
        flag = items.get(name)
        # bare true/false only: the string 'false' would be truthy to Cookiebot's own script
        if flag not in _JS_BOOL:
            raise CMPError("missing category")
        pairs.append((name, _JS_BOOL[flag]))
    utc = items.get("utc")
    tc_string = _js_string(items.get("iab2")) or None
    if tc_string is not None and not TC_CHARS.fullmatch(tc_string):
        raise CMPError("malformed tc string")
    no_consent = _js_string(items.get("stamp")) == _COOKIEBOT_NO_CONSENT
    return CMPConsent(
        cmp=CMP.COOKIEBOT,
        categories=bool_map(pairs),
        interacted=_COOKIEBOT_METHOD.get(_js_string(items.get("method")) or ""),
        at=None if utc is None else _epoch_ms(utc),
        others=True if no_consent else None,
        no_consent_required=no_consent,
        tc_string=tc_string,
    )


# --- Didomi -------------------------------------------------------------------------------

_B64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")


def _purpose_ids(value: object) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise CMPError("malformed purposes")
    for item in value:
        if not isinstance(item, str) or not 0 < len(item) <= _MAX_NAME or not item.isprintable():
            raise CMPError("malformed purposes")
    return value


def _vendor_ids(value: object) -> list[str]:
    """Didomi vendor ids: its own (`google`, `c:posthog-Xy12`) and IAB ids (numbers)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise CMPError("malformed vendors")
    out = []
    for item in value:
        if type(item) is int and 0 < item < 100_000:
            out.append(str(item))
        elif isinstance(item, str) and 0 < len(item) <= _MAX_NAME and item.isprintable():
            out.append(item)
        else:
            raise CMPError("malformed vendors")
    return out


def decode_didomi(value: str) -> CMPConsent:
    """Didomi's `didomi_token` cookie.

    Base64 (standard or URL-safe, padding optional) of JSON `{"user_id", "created",
    "updated", "vendors": {"enabled", "disabled"}, "purposes": {"enabled", "disabled"},
    "vendors_li", "purposes_li", "version", "ac"}` (developers.didomi.io; tokens captured
    from sites). Categories are Didomi purpose ids (`cookies`, `analytics`,
    `geolocation_data`, custom): enabled -> True, disabled -> False. A token without
    `purposes` has no categories. `vendors` gives the vendor answers the same way (Didomi
    ids such as `c:posthog-Xy12`, IAB ids as numbers, read as text). Legitimate-interest
    lists are not consent and are not read. `updated` (else `created`) gives `at`. IAB
    vendors' consent is in the `euconsent-v2` cookie Didomi writes beside this one.

    Raises CMPError when the value is not base64 of a JSON object with a string
    `user_id`, or its purpose lists are malformed.
    """
    value = unwrap(check(value))
    if not _B64.fullmatch(value):
        raise CMPError("bad base64")
    text = value.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        data = orjson.loads(raw)
    except (binascii.Error, orjson.JSONDecodeError):
        raise CMPError("bad token") from None
    if not isinstance(data, dict) or not isinstance(data.get("user_id"), str):
        raise CMPError("not a didomi token")
    purposes = data.get("purposes")
    if purposes is None:
        purposes = {}
    if not isinstance(purposes, dict):
        raise CMPError("malformed purposes")
    pairs = [(p, True) for p in _purpose_ids(purposes.get("enabled"))]
    pairs += [(p, False) for p in _purpose_ids(purposes.get("disabled"))]
    vendors = data.get("vendors")
    if vendors is None:
        vendors = {}
    if not isinstance(vendors, dict):
        raise CMPError("malformed vendors")
    vendor_pairs = [(v, True) for v in _vendor_ids(vendors.get("enabled"))]
    vendor_pairs += [(v, False) for v in _vendor_ids(vendors.get("disabled"))]
    at = _iso_epoch(data.get("updated"))
    return CMPConsent(
        cmp=CMP.DIDOMI,
        categories=bool_map(pairs),
        at=at if at is not None else _iso_epoch(data.get("created")),
        vendors=bool_map(vendor_pairs),
    )


# --- Klaro --------------------------------------------------------------------------------


def decode_klaro(value: str) -> CMPConsent:
    """Klaro's `klaro` cookie (name configurable): URL-encoded JSON `{"<service>": bool}`.

    e.g. `%7B%22matomo%22%3Afalse%7D` (klaro.org). Categories are Klaro service names.
    Raises CMPError unless the value is a JSON object of booleans.
    """
    value = unwrap(check(value))
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise CMPError("bad json") from None
    if not isinstance(data, dict):
        raise CMPError("not an object")
    for name, granted in data.items():
        if not 0 < len(name) <= _MAX_NAME or not name.isprintable() or type(granted) is not bool:
            raise CMPError("malformed service")
    services = MappingProxyType(dict(data))
    # Klaro's choices are per service: each is a category and a vendor answer at once.
    return CMPConsent(cmp=CMP.KLARO, categories=services, vendors=services)
