"""What is an identifier whatever the vendor: the one registry of names and shapes.

A rule names the fields its vendor uses (`when_denied`); a tag can still carry an
identifier the rule's author never saw: another platform's click id on the page URL,
a hashed e-mail in a custom variable, a user id in a field added last month. When a
purpose is denied and its strip applies (`StripSpec.identifiers`), the transform also
removes, wherever they appear (query, form body, `;` path parameters, JSON bodies and
inside URL-valued fields):

- a parameter or key whose name is in `REGISTRY` (compared case-insensitively, and
  by its last segment: `ud[em]`, `traits.email`, `user_data.em` all count): the click
  ids of every major ad platform, browser ids, and user-data keys;
- a value holding an e-mail address (`is_identifier_value`);
- a hashed e-mail in Google's `tv.1~em.<hash>` form, anywhere;
- a SHA-256 or MD5 hex value in a user-data field (`is_hashed_identifier`): a key
  whose name speaks of e-mail, phone or hashing, or anything inside a user-data
  object (`user_data`, `user`, `traits`, `identifiers`...).

URL-only names (`REGISTRY` entries of kind `IdKind.IN_URL`) are identifiers inside a
URL's query (a password-reset token on a page URL) but ordinary fields at the top of a
tag hit (`e` is an event name there).

The registry's users, in one place so they cannot drift from it: `drop_identifiers`
(pairs joined by `&` or `;`: query, form, `;` path parameters),
`drop_json_identifiers` (a JSON document, in place) and `scrub_url` (a URL's query,
fragment and path). Each keeps the names a strip's `keep` lists, except click ids.
Everything here is pure and compiled at import.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final
from urllib.parse import quote, unquote, unquote_plus

import orjson

__all__ = [
    "EMAIL",
    "IDENTITY_PARAMS",
    "REGISTRY",
    "USER_DATA_CONTAINERS",
    "IdKind",
    "decode_name",
    "drop_identifiers",
    "drop_json_identifiers",
    "is_hashed_identifier",
    "is_identifier_name",
    "is_identifier_value",
    "looks_like_url",
    "name_in",
    "name_kind",
    "scrub_url",
    "scrubbed_pair",
]


class IdKind(enum.StrEnum):
    #: an ad platform's click id, a browser or device id: removed wherever it appears
    CLICK_ID = "click_id"
    #: a person's data (e-mail, phone, name, user id), plain or hashed: removed anywhere
    USER_DATA = "user_data"
    #: an identifier inside a URL's query, an ordinary field elsewhere
    IN_URL = "in_url"


def _kind(kind: IdKind, names: str) -> dict[str, IdKind]:
    return dict.fromkeys(names.split(), kind)


#: lower-case name -> kind. Sources: vendors.md A3 (click ids of every platform the
#: rules cover), Meta/TikTok/Snap/Pinterest/Reddit/LinkedIn user-data field names.
REGISTRY: Final[Mapping[str, IdKind]] = MappingProxyType(
    _kind(
        IdKind.CLICK_ID,
        "gclid gbraid wbraid dclid gclsrc gclaw gcldc _gl auid auiddc dc_rdid srsltid "
        "fbclid fbc fbp _fbc _fbp igshid ttclid ttp _ttp msclkid li_fat_id twclid sccid "
        "sc_click_id sc_cookie1 u_c1 epik rdt_cid rdt_uuid irclickid _kx tblci "
        "outbrainclickid obclid dicbo qclid yclid ymclid _ym_uid s_kwcid ef_id cjevent "
        "mc_eid _hsenc _hsmi __hstc __hssc __hsfp hsa_kw hutk mkt_tok _branch_match_id "
        "wickedid ndclid zanpid ko_click_id click_id clickid awc im_ref",
    )
    | _kind(
        IdKind.USER_DATA,
        "em email $email e_mail email_address emailaddress emails hem u_hem hashed_email "
        "sha256_email sha256_email_address md5_email ph phone $phone phone_number "
        "phonenumber u_hpn hashed_phone hashed_phone_number sha256_phone_number fn ln "
        "first_name last_name firstname lastname db dob date_of_birth ge zp "
        "external_id uid user_id userid $user_id mapped_user_id identity "
        "client_ip_address ip_address ipaddress",
    )
    | _kind(IdKind.IN_URL, "e token reset session sid auth code key password pw"),
)

#: objects whose every value is about the person: a hash inside is a hashed identifier
USER_DATA_CONTAINERS: Final = frozenset(
    {
        "user_data", "userdata", "ud", "user", "users", "userids", "user_ids", "useridentities",
        "userinfo", "identifiers", "identities", "traits", "contactfields", "profile",
        "person_properties", "$set", "$set_once", "advanced_matching",
    }
)  # fmt: skip

_SEPARATORS: Final = re.compile(r"[\[\].]+")
#: an e-mail address anywhere in a value (decoded)
EMAIL: Final = re.compile(r"[^\s@/?&=#:;,\"'<>]+@[^\s@/?&=#:;,\"'<>]+\.[A-Za-z]{2,}")
#: Google's hashed e-mail marker (Floodlight / Enhanced Conversions `tv.1~em.<hash>`)
_HASHED_MARKER: Final = re.compile(r"tv\.1~(?:em|pn)\.", re.IGNORECASE)
#: SHA-256 (64) or MD5 (32) in hex, the forms ad platforms ask hashed user data in
_HEX_HASH: Final = re.compile(r"(?:[0-9a-fA-F]{32}){1,2}")
#: a name that announces a person's (hashed) contact data
_HASHY_NAME: Final = re.compile(r"mail|phone|hash|sha256|md5|^hem$|^em$|^ph$|idvalue")


def _last_part(lowered: str) -> str | None:
    if "[" not in lowered and "." not in lowered:
        return None
    parts = [p for p in _SEPARATORS.split(lowered) if p]
    return parts[-1] if parts else None


def name_kind(name: str) -> IdKind | None:
    """The registry's kind for a field name (`ud[em]`, `traits.Email` count by last part)."""
    lowered = name.lower()
    kind = REGISTRY.get(lowered)
    if kind is None and (last := _last_part(lowered)) is not None:
        kind = REGISTRY.get(last)
    return kind


def name_in(name: str, names: frozenset[str]) -> bool:
    """Is a field name among lower-case `names`, whole or by its last part (as `name_kind`),
    or under one of their `*` prefixes?"""
    if not names:
        return False
    lowered = name.lower()
    if lowered in names or _last_part(lowered) in names:
        return True
    # `u*` keeps u1, u2...; `*` alone keeps everything (a body that is the visitor's form)
    return any(n.endswith("*") and lowered.startswith(n[:-1]) for n in names)


def is_identifier_name(name: str, *, in_url: bool = False) -> bool:
    """Is a field of this name an identifier (in a URL's query, `in_url` ones too)?"""
    kind = name_kind(name)
    return kind is not None and (in_url or kind is not IdKind.IN_URL)


def is_identifier_value(value: str) -> bool:
    """Does a (decoded) value hold an e-mail address or Google's hashed-e-mail marker?"""
    return ("@" in value and EMAIL.search(value) is not None) or (
        "~" in value and _HASHED_MARKER.search(value) is not None
    )


def is_hashed_identifier(name: str, value: str, *, in_user_data: bool = False) -> bool:
    """A SHA-256/MD5 hex `value` in a field whose name speaks of contact data or hashing,
    or anywhere inside a user-data object (`in_user_data`)."""
    if len(value) not in (32, 64) or not _HEX_HASH.fullmatch(value):
        return False
    return in_user_data or _HASHY_NAME.search(name.lower()) is not None


def looks_like_url(value: str) -> bool:
    """Is a (decoded) value an absolute http(s) URL, whose query can carry identifiers?"""
    return value[:8].lower().startswith(("https://", "http://"))


# --- removing them wherever they are -------------------------------------------------------


def decode_name(name: str) -> str:
    """A pair's name as the vendor reads it: '+' is a space, then percent-decoding."""
    # SECURITY: match what the vendor decodes (`%67clid` is `gclid`), not what was sent.
    return unquote(name.replace("+", " "))


#: parameters that identify a person or a click wherever they appear inside a URL: every
#: name in the one registry (gateway.identifiers), compared case-insensitively
IDENTITY_PARAMS: Final = frozenset(REGISTRY)


def scrub_url(url: str) -> str:
    """`url` without identity-bearing parameters (IDENTITY_PARAMS, or any whose value holds
    an e-mail address) in its query or fragment, and with e-mail addresses in its path
    removed. Returns `url` itself when there is nothing to remove."""
    if "?" not in url and "#" not in url and "@" not in url:
        return url
    head, hash_, fragment = url.partition("#")
    base, q, query = head.partition("?")
    new_base = EMAIL.sub("", base) if "@" in base else base
    new_query = _scrub_query(query) if q else query
    new_fragment = _scrub_query(fragment) if hash_ and "=" in fragment else fragment
    if new_base is base and new_query is query and new_fragment is fragment:
        return url
    out = new_base
    if q and new_query:
        out += "?" + new_query
    if hash_ and new_fragment:
        out += "#" + new_fragment
    return out


def _scrub_query(query: str) -> str:
    kept: list[str] = []
    removed = False
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        decoded_value = unquote_plus(value) if "%" in value or "+" in value else value
        dname = decode_name(name)
        if (
            is_identifier_name(dname, in_url=True)
            or is_identifier_value(decoded_value)
            or is_hashed_identifier(dname, decoded_value)
        ):
            removed = True
            continue
        kept.append(pair)
    return "&".join(kept) if removed else query


def scrubbed_pair(name: str, value: str) -> str | None:
    """`name=value` with the URL in `value` scrubbed, or None when it holds nothing to remove."""
    url = unquote_plus(value)
    clean = scrub_url(url)
    return None if clean is url else f"{name}={quote(clean, safe='')}"


def drop_identifiers(raw: str, keep: frozenset[str], sep: str = "&") -> str:
    """`raw` (pairs joined by `sep`) without the pairs that are identifiers by name or by
    shape (gateway.identifiers), URL values scrubbed and JSON values walked the same way.
    `raw` itself when nothing changes."""
    kept: list[str] = []
    changed = False
    for pair in raw.split(sep):
        name, eq, value = pair.partition("=")
        dname = decode_name(name) if "%" in name or "+" in name else name
        dvalue = unquote_plus(value) if "%" in value or "+" in value else value
        if eq and looks_like_url(dvalue):
            # a URL is the page's, never the visitor's submission: scrubbed even when kept
            clean = scrub_url(dvalue)
            if clean is not dvalue:
                pair, dvalue, changed = f"{name}={quote(clean, safe='')}", clean, True
        # a click id is never what the visitor submitted: `keep` cannot save it
        if name_kind(dname) is not IdKind.CLICK_ID and name_in(dname, keep):
            kept.append(pair)
            continue
        if is_identifier_name(dname):
            changed = True
            continue
        if eq and dvalue[:1] in ("{", "["):
            # JSON in a field (Intercom's user_data, Twitter's event): walked, not judged whole
            edited = _json_value_without_identifiers(dvalue, keep)
            if edited is not None:
                if edited is not dvalue:
                    pair, changed = f"{name}={quote(edited, safe='')}", True
                kept.append(pair)
                continue
        if is_identifier_value(dvalue) or is_hashed_identifier(dname, dvalue):
            changed = True
            continue
        kept.append(pair)
    return sep.join(kept) if changed else raw


def _json_value_without_identifiers(text: str, keep: frozenset[str]) -> str | None:
    """A field's JSON value without identifiers (`text` itself when there were none), or
    None when it is not JSON."""
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return orjson.dumps(doc).decode() if drop_json_identifiers(doc, keep) else text


def drop_json_identifiers(
    value: object, keep: frozenset[str] = frozenset(), name: str = "", in_user_data: bool = False
) -> bool:
    """Remove, in place, every key and array element of a JSON document that is an
    identifier by name or shape (gateway.identifiers), but keys named in `keep`; True if
    anything was removed."""
    changed = False
    if isinstance(value, dict):
        for key in list(value):
            item = value[key]
            if name_kind(key) is not IdKind.CLICK_ID and name_in(key, keep):
                if isinstance(item, str) and looks_like_url(item):
                    clean = scrub_url(item)  # as in `_drop_identifiers`: kept, but scrubbed
                    if clean is not item:
                        value[key], changed = clean, True
                continue
            if is_identifier_name(key):
                del value[key]
                changed = True
                continue
            if isinstance(item, str):
                changed = _edit_string(value, key, item, key, in_user_data) or changed
            elif isinstance(item, dict | list):
                inner = in_user_data or key.lower() in USER_DATA_CONTAINERS
                changed = drop_json_identifiers(item, keep, key, inner) or changed
    elif isinstance(value, list):
        for i in reversed(range(len(value))):  # reversed: deleting keeps the rest in place
            item = value[i]
            if isinstance(item, str):
                changed = _edit_string(value, i, item, name, in_user_data) or changed
            elif isinstance(item, dict | list):
                changed = drop_json_identifiers(item, keep, name, in_user_data) or changed
    return changed


def _edit_string(
    container: dict[str, object] | list[object],
    at: str | int,
    item: str,
    name: str,
    in_user_data: bool,
) -> bool:
    """Remove or rewrite the string `container[at]` (a key's value or an array element)
    when it is an identifier or a URL carrying one; True if it changed."""
    kept = _json_string(item, name, in_user_data)
    if kept is item:
        return False
    if kept is None:
        del container[at]  # type: ignore[arg-type]
    else:
        container[at] = kept  # type: ignore[index]
    return True


def _json_string(value: str, name: str, in_user_data: bool) -> str | None:
    """A JSON string kept as is, scrubbed (a URL), or None when it is an identifier."""
    if looks_like_url(value):
        value = scrub_url(value)
    if is_identifier_value(value) or is_hashed_identifier(name, value, in_user_data=in_user_data):
        return None
    return value
