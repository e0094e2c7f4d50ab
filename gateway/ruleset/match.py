"""Map a request's (host, path, method) to one vendor endpoint, by index.

`RuleSet` indexes the compiled rules once: exact hosts and wildcard suffixes
in dicts, routes by their path prefix. A lookup costs a few dict probes per
host label or path segment, never a scan over the rules, so matching time does
not grow with the number of vendors (DESIGN §1 "rule match"). Within a vendor
its endpoints are tried in order; the first match wins. No match means an
unknown destination: the pipeline REJECTs it.

`normalize_host` and `is_safe_path` are the security gates for what a visitor
controls: the `{vendor-host}` segment of `/t/{vendor-host}/{path}` and the
path forwarded to the vendor.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, KeysView
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

from gateway.memo import Memo
from gateway.ruleset.schema import EndpointSpec, VendorRule, is_dns_name

__all__ = [
    "Match",
    "RuleConflict",
    "RuleConflictError",
    "RuleSet",
    "is_safe_path",
    "match_endpoint",
    "normalize_host",
]

_SEPARATORS = re.compile(r"[/\\]")
#: longer paths are matched every time, never kept
_MAX_KEPT_PATH = 512


def normalize_host(raw: str) -> str | None:
    """The lower-cased host if `raw` is a plain DNS name, else None.

    `raw` is the host segment exactly as it arrived in the URL path, still
    percent-encoded. Accepted: labels of `[A-Za-z0-9-]` (1-63 characters, not
    starting or ending with `-`), at least two labels, 253 characters at most,
    no trailing dot, a last label that is not a number. Everything else is
    refused rather than repaired: userinfo (`@`), ports (`:`), IP literals in
    any spelling (`127.0.0.1`, `2130706433`, `0x7f.1`, `[::1]`), any
    percent-encoding, backslashes, whitespace, control and non-ASCII
    characters (IDNs must arrive as `xn--` A-labels).
    """
    # SECURITY: this string picks the host the gateway connects to. Anything a URL parser
    # could read differently from the rule index (userinfo, port, encoded separators, IPv4
    # shorthand) is refused here; the ASCII check comes before lower() because lower()
    # folds some non-ASCII characters into ASCII ones (U+212A KELVIN SIGN -> "k").
    kept = _HOSTS.get(raw)
    if kept is None:
        host = raw.lower() if raw.isascii() else None
        kept = (host if host is not None and is_dns_name(host) else None,)
        if len(raw) <= 253:
            _HOSTS.put(raw, kept)
    return kept[0]


#: raw host segment -> its normalised host or None; tags name a few hosts, again and again
_HOSTS: Memo[str, tuple[str | None]] = Memo(4096)


def is_safe_path(path: str) -> bool:
    """Whether a raw request path may be matched and forwarded as it is.

    Refused: a path not starting with `/`; non-ASCII, whitespace or control
    characters; `\\`, `?` or `#`; and any dot segment (`.` or `..`), also when
    percent-encoded (`%2e%2e`) or hidden behind an encoded separator (`..%2f`).
    """
    # SECURITY: a vendor or a proxy in front of it normalises dot segments, so
    # `/tr/../search` would match the rule's `/tr/` prefix but reach `/search`: the gateway
    # would become an open proxy to the rest of the vendor's host.
    if not path.startswith("/") or not path.isascii():
        return False
    if any(c <= " " or c in "\\?#\x7f" for c in path):
        return False
    for segment in path.split("/"):
        if "." not in segment and "%" not in segment:
            continue
        if any(part in (".", "..") for part in _SEPARATORS.split(unquote(segment))):
            return False
    return True


def match_endpoint(
    endpoints: Iterable[EndpointSpec], path: str, method: str
) -> EndpointSpec | None:
    """The first of `endpoints` matching this raw path and method; None if none does.

    None as well for a path `is_safe_path` refuses: such a request is never forwarded.
    """
    if not is_safe_path(path):
        return None
    return next((e for e in endpoints if e.matches(path, method)), None)


@dataclass(frozen=True, slots=True)
class Match:
    """The vendor endpoint a request is for."""

    vendor: VendorRule
    endpoint: EndpointSpec


@dataclass(frozen=True, slots=True)
class RuleConflict:
    """Two rules claim the same thing: `second` claims `key`, which `first` claims as `other`."""

    what: Literal["vendor", "host", "route"]
    key: str
    second: VendorRule
    other: str
    first: VendorRule

    def __str__(self) -> str:
        if self.what == "vendor":
            return f"vendor id {self.key!r} is also used in {self.first.file}"
        same = self.key == self.other
        theirs = "" if same else f" (overlaps {self.other!r})"
        return (
            f"{self.what} {self.key!r}{theirs} is also claimed by vendor "
            f"{self.first.vendor!r} in {self.first.file}"
        )


class RuleConflictError(ValueError):
    """Rules that cannot be indexed together; `conflicts` lists every conflict."""

    def __init__(self, conflicts: list[RuleConflict]) -> None:
        self.conflicts = tuple(conflicts)
        super().__init__("; ".join(f"{c.second.vendor}: {c}" for c in self.conflicts))


def _parents(name: str) -> Iterator[str]:
    """Proper DNS suffixes of `name`, longest first: a.b.c -> b.c, c."""
    i = name.find(".")
    while i != -1:
        yield name[i + 1 :]
        i = name.find(".", i + 1)


def _route_parents(route: str) -> Iterator[str]:
    """Proper segment prefixes of a route: /a/b/c -> /a, /a/b."""
    i = route.find("/", 1)
    while i != -1:
        yield route[:i]
        i = route.find("/", i + 1)


class RuleSet:
    """The compiled, indexed rule set: an immutable value, built once per (re)load.

    Raises `RuleConflictError` listing every conflict when two rules share a
    vendor id, claim overlapping hosts (the same name, `a.example.com` and
    `*.example.com`, or `*.example.com` and `*.x.example.com`), or routes where
    one is the other or a segment prefix of it (`/ga4` and `/ga4/x`). One
    vendor's own patterns may overlap each other.
    """

    __slots__ = ("rules", "_by_id", "_exact", "_wild", "_routes", "_route_depth", "_matched")

    def __init__(self, rules: Iterable[VendorRule]) -> None:
        self.rules: tuple[VendorRule, ...] = tuple(rules)
        self._by_id: dict[str, VendorRule] = {}
        #: exact host -> rule
        self._exact: dict[str, VendorRule] = {}
        #: wildcard suffix ("example.com" for "*.example.com") -> rule
        self._wild: dict[str, VendorRule] = {}
        self._routes: dict[str, VendorRule] = {}
        #: (host, path, method) -> what `match` answered: requests repeat their endpoint
        self._matched: Memo[tuple[str, str, str], tuple[Match | None]] = Memo(4096)
        conflicts: list[RuleConflict] = []

        def claim(
            what: Literal["vendor", "host", "route"],
            table: dict[str, VendorRule],
            key: str,
            rule: VendorRule,
            shown: str,
        ) -> None:
            first = table.setdefault(key, rule)
            if first is not rule:
                conflicts.append(RuleConflict(what, shown, rule, shown, first))

        for rule in self.rules:
            claim("vendor", self._by_id, rule.vendor, rule, rule.vendor)
            for pattern in rule.hosts:
                if pattern.startswith("*."):
                    claim("host", self._wild, pattern[2:], rule, pattern)
                else:
                    claim("host", self._exact, pattern, rule, pattern)
            if rule.route is not None:
                claim("route", self._routes, rule.route, rule, rule.route)
        # Overlaps that are not the same key: a name (exact, or a wildcard's suffix) lying
        # under another vendor's wildcard. Walking each name's parents finds every pair once.
        for table, prefix in ((self._exact, ""), (self._wild, "*.")):
            for name, rule in table.items():
                for parent in _parents(name):
                    owner = self._wild.get(parent)
                    if owner is not None and owner is not rule:
                        conflicts.append(
                            RuleConflict("host", prefix + name, rule, f"*.{parent}", owner)
                        )
        for route, rule in self._routes.items():
            for parent in _route_parents(route):
                owner = self._routes.get(parent)
                if owner is not None:
                    conflicts.append(RuleConflict("route", route, rule, parent, owner))
        if conflicts:
            raise RuleConflictError(conflicts)
        self._route_depth = max((r.count("/") for r in self._routes), default=0)

    def __len__(self) -> int:
        return len(self.rules)

    def vendor(self, vendor_id: str) -> VendorRule | None:
        return self._by_id.get(vendor_id)

    @property
    def vendor_ids(self) -> KeysView[str]:
        """Every rule's vendor id: what a visitor's vendor answers may name."""
        return self._by_id.keys()

    def vendor_for_host(self, host: str) -> VendorRule | None:
        """The rule that owns `host` (already normalised, see `normalize_host`), or None.

        An exact name wins; else the wildcard of the nearest parent suffix.
        """
        if len(host) > 253:
            return None
        rule = self._exact.get(host)
        if rule is not None:
            return rule
        for parent in _parents(host):
            rule = self._wild.get(parent)
            if rule is not None:
                return rule
        return None

    def match(self, host: str, path: str, method: str) -> Match | None:
        """The endpoint for this request, or None (unknown destination: REJECT).

        `host` is normalised, `path` raw (percent-encoding preserved, no query),
        `method` upper case. None for an unknown host, for a path or method no
        endpoint of the host's vendor accepts, and for an unsafe path.
        """
        key = (host, path, method)
        found = self._matched.get(key)
        if found is not None:
            return found[0]
        rule = self.vendor_for_host(host)
        endpoint = None
        if rule is not None:
            prefix = rule.mounts.get(host)
            if prefix is None:
                endpoint = match_endpoint(rule.endpoints, path, method)
            elif path.startswith(prefix) and path[len(prefix) : len(prefix) + 1] in ("", "/"):
                # the rule's paths live under the prefix on this host (rules.vendor_hosts);
                # the request still goes out with its whole path
                endpoint = match_endpoint(rule.endpoints, path[len(prefix) :] or "/", method)
        match = None if rule is None or endpoint is None else Match(rule, endpoint)
        if len(path) <= _MAX_KEPT_PATH:
            self._matched.put(key, (match,))
        return match

    def route_for(self, path: str) -> tuple[VendorRule, str] | None:
        """The vendor whose first-party route prefixes `path`, and the rest of the path.

        `/ga4/g/collect` -> (the rule with route `/ga4`, `/g/collect`); the
        prefix must be followed by `/` or the end (`/ga4` -> rest `/`), so
        `/ga4x/...` is not under `/ga4`. None when no route applies.
        """
        if not path.startswith("/"):
            return None
        end = 0
        # At most as many probes as the deepest route has segments.
        for _ in range(self._route_depth):
            end = path.find("/", end + 1)
            prefix = path if end == -1 else path[:end]
            rule = self._routes.get(prefix)
            if rule is not None:
                return rule, path[len(prefix) :] or "/"
            if end == -1:
                break
        return None
