"""The outgoing headers of a stripped request: an allow-list, never a copy.

Only the headers in `ALLOWED_HEADERS` (and User-Agent client hints, and those an
endpoint forwards) reach a vendor, and only with values that cannot split a header.
Of those, the strips remove cookies by name (the gateway's own consent cookie always),
any header a rule names, and apply the spec's policies to the visitor's user agent,
referrer (keep, origin, drop) and address: a fresh `X-Forwarded-For` from the address
seen through trusted proxies only, kept, truncated (`truncate_ip`) or dropped.
"""

from __future__ import annotations

import re
from socket import AF_INET, AF_INET6, inet_ntop, inet_pton
from typing import Final
from urllib.parse import urlsplit

from gateway.model import Facts, IpPolicy, ReferrerPolicy, StripSpec, UserAgentPolicy
from gateway.transform_query import name_set

__all__ = ["ALLOWED_HEADERS", "CLIENT_HINTS", "XFF", "outgoing_headers", "truncate_ip"]

#: request headers that may reach a vendor (lower case); everything else stays behind
ALLOWED_HEADERS: Final = frozenset(
    {
        "accept",
        "accept-language",
        "content-type",
        # The body is forwarded as received, or rewritten and encoded again in the
        # same codings (gateway.bodies): the header stays true either way.
        "content-encoding",
        "user-agent",
        "referer",
        "origin",
        "cookie",
        "dnt",
        "sec-gpc",
    }
)
#: allowed by prefix: User-Agent client hints (`sec-ch-ua`, `sec-ch-ua-platform`, ...)
CLIENT_HINTS: Final = "sec-ch-ua"
#: a header value that could split or smuggle a header in the outgoing request
_UNSAFE_VALUE: Final = re.compile(r"[\r\n\x00]")
XFF: Final = "X-Forwarded-For"

#: bytes kept by truncation: IPv4 /24, IPv6 /48 (what Google Analytics' own IP anonymisation keeps)
_V4_KEEP_BYTES: Final = 3
_V6_KEEP_BYTES: Final = 6
_V4_MAPPED: Final = bytes(10) + b"\xff\xff"  # ::ffff:0:0/96
_SIX_TO_FOUR: Final = b"\x20\x02"  # 2002::/16


# --- headers -----------------------------------------------------------------------------


def _strip_cookies(values: list[str], strips: StripSpec, own: frozenset[str]) -> str | None:
    """One Cookie header value without the named cookies; None when none remain."""
    names = name_set(strips.cookies)
    own_names = name_set(own)
    kept: list[str] = []
    removed = False
    for value in values:
        for piece in value.split(";"):
            crumb = piece.strip()
            if not crumb:
                continue
            name = crumb.partition("=")[0].strip()
            if name in names or name in own_names:
                removed = True
            else:
                kept.append(crumb)
    if not kept:
        return None
    if not removed and len(values) == 1:
        return values[0]
    # RFC 6265 §5.4: one Cookie header, crumbs joined with "; " (also how HTTP/2 crumbs merge)
    return "; ".join(kept)


def _referrer_origin(referer: str) -> str | None:
    """`scheme://host[:port]/` of an http(s) URL, or None when it has none."""
    try:
        parts = urlsplit(referer.strip())
        host, port = parts.hostname, parts.port  # `.port` raises on a malformed port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not host:
        return None
    # SECURITY: rebuilt from hostname and port, so userinfo (`user:pass@`) cannot survive.
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}/" if port is None else f"{scheme}://{host}:{port}/"


def _referrer(value: str, policy: ReferrerPolicy) -> str | None:
    match policy:
        case ReferrerPolicy.KEEP:
            return value
        case ReferrerPolicy.ORIGIN:
            return _referrer_origin(value)
        case ReferrerPolicy.DROP:
            return None


def truncate_ip(ip: str) -> str | None:
    """`ip` with its host part zeroed: IPv4 to /24, IPv6 to /48; None if not an address.

    An IPv4-mapped (`::ffff:a.b.c.d`) or 6to4 (`2002:aabb:ccdd::/48`) IPv6
    address is truncated as the IPv4 address it carries.
    """
    packed = _packed_ip(ip)
    if packed is None:
        return None
    keep = _V4_KEEP_BYTES if len(packed) == 4 else _V6_KEEP_BYTES
    return _format_ip(packed[:keep] + bytes(len(packed) - keep))


def _packed_ip(ip: str) -> bytes | None:
    """The address as 4 or 16 bytes, an embedded IPv4 address unwrapped; None if invalid.

    inet_pton/inet_ntop are pure conversions (no I/O), strict (no leading zeros,
    no short forms) and several times faster than `ipaddress` on this hot path.
    """
    ip = ip.strip()
    try:
        if ":" not in ip:
            return inet_pton(AF_INET, ip)
        # a zone id (`fe80::1%eth0`) only means something on the visitor's own link
        packed = inet_pton(AF_INET6, ip.partition("%")[0])
    except (OSError, ValueError):
        return None
    # SECURITY: a /48 of a 6to4 address is its whole IPv4 address (2002::/16 + 32 bits),
    # and an IPv4-mapped address is an IPv4 address: reason about the IPv4 inside.
    if packed.startswith(_V4_MAPPED):
        return packed[12:]
    if packed.startswith(_SIX_TO_FOUR):
        return packed[2:6]
    return packed


def _format_ip(packed: bytes) -> str:
    return inet_ntop(AF_INET if len(packed) == 4 else AF_INET6, packed)


def _forwarded_for(client_ip: str | None, policy: IpPolicy) -> str | None:
    if client_ip is None:
        return None
    match policy:
        case IpPolicy.KEEP:
            packed = _packed_ip(client_ip)
            return None if packed is None else _format_ip(packed)
        case IpPolicy.TRUNCATE:
            return truncate_ip(client_ip)
        case IpPolicy.DROP:
            return None


def outgoing_headers(
    facts: Facts,
    strips: StripSpec,
    own_cookies: frozenset[str],
    extra: frozenset[str] = frozenset(),
) -> list[tuple[str, str]]:
    drop_ua = strips.user_agent is UserAgentPolicy.DROP
    out: list[tuple[str, str]] = []
    cookies: list[str] = []
    cookie_name, cookie_at = "Cookie", 0
    for name, value in facts.headers.items_all():
        lname = name.lower()
        # SECURITY: an allow-list, never a copy. Authorization (a browser may attach the
        # site's own credentials to a first-party URL), the visitor's X-Forwarded-For /
        # Forwarded / X-Real-IP, CDN and geo headers, Host and hop-by-hop headers all
        # stay behind; content-length is recomputed by the client.
        if lname.startswith(CLIENT_HINTS):
            if drop_ua:
                continue
        elif lname not in ALLOWED_HEADERS and lname not in extra:
            continue
        # SECURITY: re-validate before reflecting a value into a sub-request.
        if _UNSAFE_VALUE.search(value):
            continue
        if lname == "cookie":
            if not cookies:
                cookie_name, cookie_at = name, len(out)
            cookies.append(value)
        elif lname == "user-agent" and drop_ua:
            continue
        elif lname == "referer":
            ref = _referrer(value, strips.referrer)
            if ref is not None:
                out.append((name, ref))
        else:
            out.append((name, value))
    if cookies and not strips.all_cookies:
        # SECURITY: own_cookies (the consent cookie) never reach a vendor.
        jar = _strip_cookies(cookies, strips, own_cookies)
        if jar is not None:
            out.insert(cookie_at, (cookie_name, jar))  # where the first one was
    # SECURITY: a fresh X-Forwarded-For from the address seen through trusted proxies only.
    xff = _forwarded_for(facts.client_ip, strips.ip)
    if xff is not None:
        out.append((XFF, xff))
    if strips.headers:
        # last, so a rule can remove any header, including the ones built here
        drop = name_set(strips.headers)
        out = [(n, v) for n, v in out if n.lower() not in drop]
    return out
