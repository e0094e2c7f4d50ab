"""CMP cookies whose values are delimited fields: OneTrust (a query string, and its TC
string cookie), CookieYes (a `key:value` list), Commanders Act (`@` fields) and
Complianz (one `allow`/`deny` cookie per category).

Each decoder reads one CMP's cookie value and returns a `CMPConsent` in the CMP's own
vocabulary (its category ids), or raises `CMPError` (see `gateway.consent.cmp_base`);
`gateway.consent.cmp.FORMATS` says which cookie each decoder reads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from types import MappingProxyType

from gateway.consent.cmp_base import (
    DIGITS,
    ID,
    TC_CHARS,
    CMPConsent,
    bool_map,
    check,
    unquote_once,
    unwrap,
)
from gateway.errors import CMPError
from gateway.model import CMP

__all__ = [
    "COMPLIANZ_COOKIES",
    "COMPLIANZ_CATEGORIES",
    "decode_commanders_act",
    "decode_complianz",
    "decode_cookieyes",
    "decode_onetrust",
    "decode_onetrust_tc",
]

#: Complianz's category cookies are `cmplz_<category>` for these
COMPLIANZ_CATEGORIES = ("functional", "preferences", "statistics", "marketing")


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
    from sites). `groups` lists `<group id>:<1|0>` (and `genVendors`, the general
    vendors a tenant lists, `<vendor id>:<1|0>`, read as vendor answers); ids are
    tenant-defined (C0001 strictly necessary, C0002 performance, C0003 functional, C0004
    targeting, C0005 social media, plus STACK42, SPD_BG, custom). `interactionCount=0`
    means defaults only (`interacted=False`); `datestamp` (JavaScript `Date.toString()`)
    gives `at` when it parses, else None; `isGpcEnabled` gives `gpc`.

    Raises CMPError when `groups` is missing or malformed, a field repeats, or
    `interactionCount`/`isGpcEnabled` are not what OneTrust writes.
    """
    value = check(value)
    # The cookie's own values are encoded (landingPath may hold "%26"), so the whole
    # value is decoded only while it has no "=" at all: encoded once more as a whole.
    value = unwrap(value, done=lambda v: "=" in v)
    fields: dict[str, str] = {}
    for item in value.split("&"):
        if not item:
            continue
        key, sep, raw = item.partition("=")
        if not sep:
            raise CMPError("malformed query")
        key = unquote_once(key, plus=True)
        if key in fields:
            raise CMPError("duplicate field")
        fields[key] = unquote_once(raw, plus=True)
    groups = fields.get("groups")
    if groups is None:
        raise CMPError("no groups")
    pairs = _onetrust_list(groups, "malformed groups")
    vendors = _onetrust_list(fields.get("genVendors", ""), "malformed genVendors")
    interacted = None
    count = fields.get("interactionCount")
    if count is not None:
        if not DIGITS.fullmatch(count):
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
        categories=bool_map(pairs),
        interacted=interacted,
        at=None if datestamp is None else _js_date_epoch(datestamp),
        gpc=gpc,
        vendors=bool_map(vendors),
    )


def _onetrust_list(text: str, error: str) -> list[tuple[str, bool]]:
    """`C0001:1,C0002:0,` (groups) or `V1:1,V2:0,` (genVendors): id -> granted."""
    pairs = []
    for entry in text.split(","):
        if not entry:  # OneTrust leaves a trailing comma in some lists
            continue
        name, _, state = entry.partition(":")
        if not ID.fullmatch(name) or state not in _ONETRUST_BINARY:
            raise CMPError(error)
        pairs.append((name, _ONETRUST_BINARY[state]))
    return pairs


def decode_onetrust_tc(value: str) -> CMPConsent:
    """OneTrust's `eupubconsent-v2` cookie: an IAB TCF TC string, returned in `tc_string`.

    Only its characters are checked here (base64url, `.` between segments, tolerated
    `=` padding and `+`/`/`); `gateway.consent.tcf` decodes it. `categories` is empty.
    Raises CMPError for any other character.
    """
    value = unwrap(check(value))
    if not TC_CHARS.fullmatch(value):
        raise CMPError("malformed tc string")
    return CMPConsent(cmp=CMP.ONETRUST, categories=MappingProxyType({}), tc_string=value)


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
    value = unwrap(check(value))
    items: dict[str, str] = {}
    for item in value.split(","):
        key, sep, flag = item.partition(":")
        if not sep or not ID.fullmatch(key):
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
        categories=bool_map(pairs),
        interacted=items.get("action") == "yes",
    )


# --- Complianz ----------------------------------------------------------------------------

_COMPLIANZ_PREFIX = "cmplz_"
_COMPLIANZ_FLAG = {"allow": True, "deny": False}
_COMPLIANZ_BANNER = "cmplz_banner-status"
#: every cookie `decode_complianz` reads
COMPLIANZ_COOKIES = (*(_COMPLIANZ_PREFIX + c for c in COMPLIANZ_CATEGORIES), _COMPLIANZ_BANNER)


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
        flag = unwrap(check(raw))
        if flag not in _COMPLIANZ_FLAG:
            raise CMPError("malformed flag")
        pairs.append((name, _COMPLIANZ_FLAG[flag]))
    if not pairs:
        return None
    return CMPConsent(
        cmp=CMP.COMPLIANZ,
        categories=bool_map(pairs),
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
    if not all(ID.fullmatch(i) for i in ids):
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
    value = unwrap(check(value))
    fields = value.split("@")
    if len(fields) < 4 or fields[0] not in (_TC_OPT_IN, _TC_OPT_OUT):
        raise CMPError("malformed")
    head = fields[1].split("|")
    if not all(DIGITS.fullmatch(part) for part in head):
        raise CMPError("malformed version")
    if len(head) in (3, 6):  # version[|spec|policy|gvl]|banner|site
        consent_raw, blocked_raw, rest = fields[2], fields[3], fields[4:]
    elif len(head) in (1, 4) and len(fields) >= 6:  # version[|tcf]@banner@site
        if not (DIGITS.fullmatch(fields[2]) and DIGITS.fullmatch(fields[3])):
            raise CMPError("malformed banner")
        consent_raw, blocked_raw, rest = fields[4], fields[5], fields[6:]
    else:
        raise CMPError("malformed version")
    stamps: list[str] = []
    for i, field in enumerate(rest):
        if _TC_STAMPS.fullmatch(field):
            stamps += field.split(",")
        elif i != len(rest) - 1 or not TC_CHARS.fullmatch(field) or _TC_NUMERIC.fullmatch(field):
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
    return CMPConsent(cmp=CMP.COMMANDERS_ACT, categories=bool_map(pairs), at=at, others=others)
