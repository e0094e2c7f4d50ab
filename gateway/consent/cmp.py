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
`detect_cmp` guesses the format of a bare value (`consent-gateway decode`).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType
from typing import NamedTuple
from urllib.parse import unquote, unquote_plus

import orjson

from gateway.errors import CMPError
from gateway.model import CMP

__all__ = [
    "CMP_COOKIES",
    "COMPLIANZ_CATEGORIES",
    "COOKIEBOT_CATEGORIES",
    "FORMATS",
    "MAX_COOKIE_LENGTH",
    "CMPConsent",
    "CMPFailure",
    "CMPFormat",
    "decode_cmp_cookies",
    "decode_commanders_act",
    "decode_complianz",
    "decode_cookiebot",
    "decode_cookieyes",
    "decode_didomi",
    "decode_klaro",
    "decode_onetrust",
    "decode_onetrust_tc",
    "detect_cmp",
    "detect_cmp_value",
]

#: longer values are refused before any work (a browser keeps at most 4096 bytes per cookie)
MAX_COOKIE_LENGTH = 4096

#: Cookiebot's fixed categories, all present in every `CookieConsent` value
COOKIEBOT_CATEGORIES = ("necessary", "preferences", "statistics", "marketing")
#: Complianz's category cookies are `cmplz_<category>` for these
COMPLIANZ_CATEGORIES = ("functional", "preferences", "statistics", "marketing")

_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
# Category ids in the compact formats (OneTrust C0001 / STACK42 / SPD_BG / V2STACK42 / 2,
# CookieYes, Commanders Act): identifier characters only.
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# JSON formats (Klaro service names, Didomi purpose ids) are free text set by the site.
_MAX_NAME = 128
_DIGITS = re.compile(r"[0-9]{1,15}")  # 15 digits: epoch milliseconds until year 33658
_TC_CHARS = re.compile(r"[A-Za-z0-9_.=+/-]+")  # base64url, `.` segments, tolerated padding


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

    def __repr__(self) -> str:
        # SECURITY: a TC string is a consent string; logs name its presence only.
        tc = "" if self.tc_string is None else ", tc_string=..."
        return (
            f"CMPConsent(cmp={self.cmp!r}, categories={dict(self.categories)!r}, "
            f"interacted={self.interacted!r}, at={self.at!r}, others={self.others!r}, "
            f"no_consent_required={self.no_consent_required!r}, gpc={self.gpc!r}{tc})"
        )


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


def _check(value: object) -> str:
    # SECURITY: bound the work before anything else; cookies are visitor input.
    if not isinstance(value, str) or len(value) > MAX_COOKIE_LENGTH or not value.isascii():
        raise CMPError("malformed")
    if not value:
        raise CMPError("empty")
    return value


def _unquote_once(value: str, plus: bool = False) -> str:
    try:
        if plus:
            return unquote_plus(value, errors="strict")
        return unquote(value, errors="strict")
    except UnicodeDecodeError:
        raise CMPError("bad percent-encoding") from None


def _unwrap(value: str, done: Callable[[str], bool] | None = None) -> str:
    """`value` with at most two rounds of percent-encoding undone.

    A round is undone only while the value still looks encoded (`%XX` in it) and, when
    given, `done` says its structure is not yet visible.
    """
    for _ in range(2):
        if not _PERCENT.search(value) or (done is not None and done(value)):
            break
        value = _unquote_once(value)
    return value


def _bool_map(pairs: Iterable[tuple[str, bool]]) -> Mapping[str, bool]:
    categories: dict[str, bool] = {}
    for name, granted in pairs:
        # A category stated twice is ambiguous: no answer rather than a guess.
        if name in categories:
            raise CMPError("duplicate category")
        categories[name] = granted
    return MappingProxyType(categories)


def _epoch_ms(digits: str) -> float:
    if not _DIGITS.fullmatch(digits):
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


# --- OneTrust -----------------------------------------------------------------------------

_ONETRUST_BINARY = {"1": True, "0": False}
# JavaScript's Date.prototype.toString(): English names whatever the locale, then the
# offset; the parenthesised zone name is localised and ignored.
# e.g. "Tue Oct 19 2021 11:31:41 GMT+0800 (台北標準時間)"
_JS_DATE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"([0-9]{2}) ([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT([+-])([0-9]{2})([0-9]{2})"
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _js_date_epoch(value: str) -> float | None:
    m = _JS_DATE.match(value)
    if m is None:
        return None
    month, day, year, hh, mm, ss, sign, oh, om = m.groups()
    try:
        offset = timedelta(hours=int(oh), minutes=int(om)) * (1 if sign == "+" else -1)
        moment = datetime(
            int(year),
            _MONTHS.index(month) + 1,
            int(day),
            int(hh),
            int(mm),
            int(ss),
            tzinfo=timezone(offset),
        )
    except ValueError:  # 31 Feb, hour 25, offset beyond 24h...
        return None
    return moment.timestamp()


def decode_onetrust(value: str) -> CMPConsent:
    """OneTrust's `OptanonConsent` cookie.

    A query string (`isGpcEnabled=0&datestamp=...&interactionCount=1&groups=C0001%3A1%2C
    C0002%3A0&...`, @commercetools-frontend/cookie-consent README and values captured
    from sites). `groups` lists `<group id>:<1|0>`; ids are tenant-defined (C0001 strictly
    necessary, C0002 performance, C0003 functional, C0004 targeting, C0005 social media,
    plus STACK42, SPD_BG, custom). `interactionCount=0` means defaults only
    (`interacted=False`); `datestamp` (JavaScript `Date.toString()`) gives `at` when it
    parses, else None; `isGpcEnabled` gives `gpc`.

    Raises CMPError when `groups` is missing or malformed, a field repeats, or
    `interactionCount`/`isGpcEnabled` are not what OneTrust writes.
    """
    value = _check(value)
    # The cookie's own values are encoded (landingPath may hold "%26"), so the whole
    # value is decoded only while it has no "=" at all: encoded once more as a whole.
    value = _unwrap(value, done=lambda v: "=" in v)
    fields: dict[str, str] = {}
    for item in value.split("&"):
        if not item:
            continue
        key, sep, raw = item.partition("=")
        if not sep:
            raise CMPError("malformed query")
        key = _unquote_once(key, plus=True)
        if key in fields:
            raise CMPError("duplicate field")
        fields[key] = _unquote_once(raw, plus=True)
    groups = fields.get("groups")
    if groups is None:
        raise CMPError("no groups")
    pairs = []
    for entry in groups.split(","):
        if not entry:  # OneTrust leaves a trailing comma in some lists
            continue
        group, _, state = entry.partition(":")
        if not _ID.fullmatch(group) or state not in _ONETRUST_BINARY:
            raise CMPError("malformed groups")
        pairs.append((group, _ONETRUST_BINARY[state]))
    interacted = None
    count = fields.get("interactionCount")
    if count is not None:
        if not _DIGITS.fullmatch(count):
            raise CMPError("malformed interactionCount")
        interacted = int(count) > 0
    gpc = None
    gpc_flag = fields.get("isGpcEnabled")
    if gpc_flag is not None:
        if gpc_flag not in _ONETRUST_BINARY:
            raise CMPError("malformed isGpcEnabled")
        gpc = _ONETRUST_BINARY[gpc_flag]
    datestamp = fields.get("datestamp")
    return CMPConsent(
        cmp=CMP.ONETRUST,
        categories=_bool_map(pairs),
        interacted=interacted,
        at=None if datestamp is None else _js_date_epoch(datestamp),
        gpc=gpc,
    )


def decode_onetrust_tc(value: str) -> CMPConsent:
    """OneTrust's `eupubconsent-v2` cookie: an IAB TCF TC string, returned in `tc_string`.

    Only its characters are checked here (base64url, `.` between segments, tolerated
    `=` padding and `+`/`/`); `gateway.consent.tcf` decodes it. `categories` is empty.
    Raises CMPError for any other character.
    """
    value = _unwrap(_check(value))
    if not _TC_CHARS.fullmatch(value):
        raise CMPError("malformed tc string")
    return CMPConsent(cmp=CMP.ONETRUST, categories=MappingProxyType({}), tc_string=value)


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
    value = _unwrap(_check(value))
    if value == _COOKIEBOT_NO_CONSENT:
        return CMPConsent(
            cmp=CMP.COOKIEBOT,
            categories=_bool_map((name, True) for name in COOKIEBOT_CATEGORIES),
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
    if tc_string is not None and not _TC_CHARS.fullmatch(tc_string):
        raise CMPError("malformed tc string")
    no_consent = _js_string(items.get("stamp")) == _COOKIEBOT_NO_CONSENT
    return CMPConsent(
        cmp=CMP.COOKIEBOT,
        categories=_bool_map(pairs),
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


def decode_didomi(value: str) -> CMPConsent:
    """Didomi's `didomi_token` cookie.

    Base64 (standard or URL-safe, padding optional) of JSON `{"user_id", "created",
    "updated", "vendors": {"enabled", "disabled"}, "purposes": {"enabled", "disabled"},
    "vendors_li", "purposes_li", "version", "ac"}` (developers.didomi.io; tokens captured
    from sites). Categories are Didomi purpose ids (`cookies`, `analytics`,
    `geolocation_data`, custom): enabled -> True, disabled -> False. A token without
    `purposes` has no categories. Legitimate-interest lists are not consent and are not
    read. `updated` (else `created`) gives `at`. IAB vendors' consent is in the
    `euconsent-v2` cookie Didomi writes beside this one.

    Raises CMPError when the value is not base64 of a JSON object with a string
    `user_id`, or its purpose lists are malformed.
    """
    value = _unwrap(_check(value))
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
    at = _iso_epoch(data.get("updated"))
    return CMPConsent(
        cmp=CMP.DIDOMI,
        categories=_bool_map(pairs),
        at=at if at is not None else _iso_epoch(data.get("created")),
    )


# --- Klaro --------------------------------------------------------------------------------


def decode_klaro(value: str) -> CMPConsent:
    """Klaro's `klaro` cookie (name configurable): URL-encoded JSON `{"<service>": bool}`.

    e.g. `%7B%22matomo%22%3Afalse%7D` (klaro.org). Categories are Klaro service names.
    Raises CMPError unless the value is a JSON object of booleans.
    """
    value = _unwrap(_check(value))
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise CMPError("bad json") from None
    if not isinstance(data, dict):
        raise CMPError("not an object")
    for name, granted in data.items():
        if not 0 < len(name) <= _MAX_NAME or not name.isprintable() or type(granted) is not bool:
            raise CMPError("malformed service")
    return CMPConsent(cmp=CMP.KLARO, categories=MappingProxyType(dict(data)))


# --- CookieYes ----------------------------------------------------------------------------

_COOKIEYES_FLAG = {"yes": True, "no": False}
_COOKIEYES_META = frozenset({"consentid", "consent", "action"})


def decode_cookieyes(value: str) -> CMPConsent:
    """CookieYes's `cookieyes-consent` cookie.

    `consentid:<id>,consent:yes,action:yes,necessary:yes,functional:no,analytics:no,
    performance:no,advertisement:no,other:no` (cookieyes.com docs; values captured from
    sites). Every key but `consentid`, `consent` and `action` is a category, `yes` or
    `no`; an empty value (written before the visitor chooses) is no answer and is left
    out. `interacted` is True only for `action:yes`.

    Raises CMPError when `consentid` is missing, an item is not `key:value`, a key
    repeats, or a flag is neither `yes`, `no` nor empty.
    """
    value = _unwrap(_check(value))
    items: dict[str, str] = {}
    for item in value.split(","):
        key, sep, flag = item.partition(":")
        if not sep or not _ID.fullmatch(key):
            raise CMPError("malformed item")
        if key in items:
            raise CMPError("duplicate field")
        if key != "consentid" and flag and flag not in _COOKIEYES_FLAG:
            raise CMPError("malformed flag")
        items[key] = flag
    if "consentid" not in items:
        raise CMPError("no consentid")
    pairs = [
        (key, _COOKIEYES_FLAG[flag])
        for key, flag in items.items()
        if key not in _COOKIEYES_META and flag
    ]
    return CMPConsent(
        cmp=CMP.COOKIEYES,
        categories=_bool_map(pairs),
        interacted=items.get("action") == "yes",
    )


# --- Complianz ----------------------------------------------------------------------------

_COMPLIANZ_PREFIX = "cmplz_"
_COMPLIANZ_FLAG = {"allow": True, "deny": False}
_COMPLIANZ_BANNER = "cmplz_banner-status"


def decode_complianz(cookies: Mapping[str, str]) -> CMPConsent | None:
    """Complianz's category cookies: `cmplz_functional|preferences|statistics|marketing`.

    Each is `allow` or `deny` (Complianz docs; cookies captured from sites). None when
    no category cookie is present. `cmplz_banner-status=dismissed` gives
    `interacted=True`. Raises CMPError when a category cookie holds anything else.
    """
    pairs = []
    for name in COMPLIANZ_CATEGORIES:
        raw = cookies.get(_COMPLIANZ_PREFIX + name)
        if raw is None:
            continue
        flag = _unwrap(_check(raw))
        if flag not in _COMPLIANZ_FLAG:
            raise CMPError("malformed flag")
        pairs.append((name, _COMPLIANZ_FLAG[flag]))
    if not pairs:
        return None
    return CMPConsent(
        cmp=CMP.COMPLIANZ,
        categories=_bool_map(pairs),
        interacted=True if cookies.get(_COMPLIANZ_BANNER) == "dismissed" else None,
    )


# --- Commanders Act -----------------------------------------------------------------------

_TC_OPT_IN, _TC_OPT_OUT = "0", "1"
_TC_ALL = "ALL"
_TC_STAMPS = re.compile(r"[0-9]{1,15}(?:,[0-9]{1,15})*")
_TC_NUMERIC = re.compile(r"[0-9,]+")  # looks like timestamps: must then be valid ones
# Epoch values above this are milliseconds (as seconds, it would be the year 5138).
_MS_THRESHOLD = 10**11


def _tc_ids(raw: str) -> list[str]:
    if not raw:
        return []
    ids = raw.split(",")
    if not all(_ID.fullmatch(i) for i in ids):
        raise CMPError("malformed categories")
    return ids


def decode_commanders_act(value: str) -> CMPConsent:
    """Commanders Act (TrustCommander)'s `TC_PRIVACY` cookie (name configurable).

    Fields are separated by `@` (CommandersAct/Platform-Documentation
    `features/consent-management/knowledge-base/consent-cookie.md`):
    `<status>@<privacy_version>[|<spec>|<policy>|<gvl>]|<banner_id>|<site_id>@
    <consent_categories>@<blocked_on_categories>@<updated>,<created>,<expires>
    [@<vendor string>]`, e.g. `0@002|12|3441@1%2C3@4@1592900933049@1592900933049`.
    The older page (community.commandersact.com TrustCommander) puts `banner_id` and
    `site_id` in fields of their own (`...@<privacy_version>[|<tcf>]@<banner>@<site>@...`);
    both are read, told apart by how many `|` parts the second field has. The
    timestamps come comma-separated or (as in the examples) as separate fields.

    Status `0` (opt-in): the listed categories are granted, the others were not chosen
    (`others=False`). Status `1` (opt-out): the listed categories are refused; an empty
    list, or `ALL` from old banners, refuses every category (`others=False`).
    "Blocked on" categories are the required ones, always on (the Consent Object's
    `required: true`), so they are granted. `at` is the first timestamp. The vendor
    string is Commanders Act's own compressed encoding, not a TC string: not returned.

    Raises CMPError when a field is missing or malformed, or a category is listed twice.
    """
    value = _unwrap(_check(value))
    fields = value.split("@")
    if len(fields) < 4 or fields[0] not in (_TC_OPT_IN, _TC_OPT_OUT):
        raise CMPError("malformed")
    head = fields[1].split("|")
    if not all(_DIGITS.fullmatch(part) for part in head):
        raise CMPError("malformed version")
    if len(head) in (3, 6):  # version[|spec|policy|gvl]|banner|site
        consent_raw, blocked_raw, rest = fields[2], fields[3], fields[4:]
    elif len(head) in (1, 4) and len(fields) >= 6:  # version[|tcf]@banner@site
        if not (_DIGITS.fullmatch(fields[2]) and _DIGITS.fullmatch(fields[3])):
            raise CMPError("malformed banner")
        consent_raw, blocked_raw, rest = fields[4], fields[5], fields[6:]
    else:
        raise CMPError("malformed version")
    stamps: list[str] = []
    for i, field in enumerate(rest):
        if _TC_STAMPS.fullmatch(field):
            stamps += field.split(",")
        elif i != len(rest) - 1 or not _TC_CHARS.fullmatch(field) or _TC_NUMERIC.fullmatch(field):
            raise CMPError("malformed timestamps")
    status = fields[0]
    others: bool | None = False
    if consent_raw == _TC_ALL:
        if status != _TC_OPT_OUT:
            raise CMPError("malformed categories")
        listed: list[str] = []
    else:
        listed = _tc_ids(consent_raw)
        if status == _TC_OPT_OUT and listed:
            others = None  # opted out of these; of the others nothing is said
    pairs = [(c, status == _TC_OPT_IN) for c in listed]
    pairs += [(c, True) for c in _tc_ids(blocked_raw)]
    at = None
    if stamps:
        first = int(stamps[0])
        at = first / 1000 if first > _MS_THRESHOLD else float(first)
    return CMPConsent(cmp=CMP.COMMANDERS_ACT, categories=_bool_map(pairs), at=at, others=others)


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
            CMPFormat(CMP.COMPLIANZ, "Complianz", read_all=decode_complianz),
        )
    }
)
if set(FORMATS) != set(CMP):  # pragma: no cover - a CMP added to the enum without an entry
    raise ImportError(f"gateway.consent.cmp.FORMATS lacks {sorted(set(CMP) - set(FORMATS))}")

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
