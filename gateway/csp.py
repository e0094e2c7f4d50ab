"""The Content-Security-Policy that locks a site's pages to the gateway (`consent-gateway csp`).

A tag that calls a vendor host directly (an SDK loaded before `/cg.js`, a pixel in
the page's HTML, a script that escaped the router) bypasses consent enforcement
entirely. A CSP turns that bypass into a browser-side block and a report:

- every fetch directive a tag can send a hit with allows only `'self'`, the
  gateway's origin and the operator's `--allow` extras, so every host a rule lists
  is forbidden (and reported) by omission;
- `--allow` of a host a rule lists, or of a wildcard or scheme covering one, is
  refused (`CspError`): it would reopen the bypass the policy exists to close;
- `report-uri` and `report-to` point at the gateway's `/csp-report`.

Why `default-src` is set: every fetch directive not named falls back to it, and each
of them can carry a hit (`<link rel=stylesheet href=vendor?id=…>`, `<video src>`,
`<object data>`, a web font, a manifest, `<link rel=prefetch>`): without it the
lock has as many holes. Why inline code and `data:`/`blob:` stay allowed: this is a
host lock, not an XSS policy; those sources reach no network host, and forbidding
them would break the inline tag snippets (GTM's among them) every site has. An
operator with an XSS policy sends it as a second header: browsers enforce every
policy a page has, so each keeps its own promise.

Pure (no aiohttp): the CLI formats what `build_policy` returns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from gateway.config.convert import origin_pattern
from gateway.ruleset.match import RuleSet

__all__ = [
    "ENDPOINT_NAME",
    "REPORT_PATH",
    "SELF",
    "CspError",
    "CspPolicy",
    "allow_source",
    "build_policy",
    "report_url",
]

SELF: Final = "'self'"
#: the gateway's CSP report endpoint, relative to `server.base_path`
REPORT_PATH: Final = "/csp-report"
#: the Reporting API endpoint name `report-to` and `Reporting-Endpoints` share
ENDPOINT_NAME: Final = "consent-gateway"

#: the directives a tag sends hits through, after the common sources: host-less extras
_DIRECTIVES: Final = (
    ("default-src", ("data:", "blob:")),
    ("connect-src", ()),
    ("img-src", ("data:", "blob:")),
    ("script-src", ("'unsafe-inline'", "'unsafe-eval'", "blob:")),
    ("style-src", ("'unsafe-inline'", "data:")),
    ("frame-src", ("blob:",)),
)


#: a host source without a scheme: a name, or `*.` and a name
_BARE_HOST: Final = re.compile(r"(?:\*\.)?[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")


class CspError(ValueError):
    """A `--gateway` or `--allow` the policy cannot take; the message says why."""


@dataclass(frozen=True, slots=True)
class CspPolicy:
    """A policy and its reporting endpoint, as response header lines."""

    #: the `Content-Security-Policy` value
    policy: str
    #: where reports go (`report-uri`, and the `Reporting-Endpoints` URL)
    report_url: str
    report_only: bool = False
    #: whether the policy names a Reporting API endpoint (`report-to`)
    report_to: bool = True

    @property
    def header_name(self) -> str:
        if self.report_only:
            return "Content-Security-Policy-Report-Only"
        return "Content-Security-Policy"

    def header_lines(self) -> list[str]:
        """The lines to add to the site's page responses, ready to paste."""
        lines = [f"{self.header_name}: {self.policy}"]
        if self.report_to:
            lines.append(f'Reporting-Endpoints: {ENDPOINT_NAME}="{self.report_url}"')
        return lines


def _gateway_source(gateway: str) -> str:
    if gateway == SELF or gateway == "self":
        return SELF
    found = origin_pattern(gateway)
    if found is None or "*" in found:
        raise CspError(
            "--gateway: the gateway's origin (https://cg.example.com), or 'self' when it "
            "is served under the site's own origin"
        )
    return found


def report_url(gateway: str, base_path: str) -> str:
    """Where `/csp-report` is: a path on the page's origin (`'self'`) or on the gateway's."""
    source = _gateway_source(gateway)
    prefix = "" if source == SELF else source
    return f"{prefix}{base_path}{REPORT_PATH}"


def _host_of(source: str) -> tuple[str, bool]:
    """(host without `*.`, whether it is a wildcard) of a normalised host source."""
    rest = source.partition("://")[2] or source
    host = rest.rpartition(":")[0] if ":" in rest else rest
    wild = host.startswith("*.")
    return (host[2:] if wild else host), wild


def _covers(allow: str, allow_wild: bool, rule_host: str) -> bool:
    """Whether a source for `allow` (`*.allow` when wild) admits a name `rule_host`
    (a rule's host pattern, `*.x` for every name under x) covers."""
    rule_wild = rule_host.startswith("*.")
    rule = rule_host[2:] if rule_wild else rule_host
    if rule == allow:
        # `*.a` and `*.a`, `a` and `a`; `a` against `*.a` shares no name (a wildcard is
        # subdomains only), nor does `*.a` against `a`.
        return allow_wild == rule_wild
    if rule.endswith("." + allow):
        return allow_wild  # a name under the allowed wildcard
    if allow.endswith("." + rule):
        return rule_wild  # the allowed name (or names) under the rule's wildcard
    return False


def _listed_by(host: str, wild: bool, rules: RuleSet) -> str | None:
    """The vendor whose hosts the source `host` (`*.host` when wild) lets through."""
    if not wild:
        rule = rules.vendor_for_host(host)
        return None if rule is None else rule.vendor
    for rule in rules.rules:
        if any(_covers(host, True, h) for h in rule.hosts):
            return rule.vendor
    return None


def allow_source(text: str, rules: RuleSet) -> str:
    """One `--allow` as a CSP source: an origin (`https://cdn.example.com`, with a port
    or a `*.` wildcard) or a host (`cdn.example.com`, `*.example.com`).

    Raises `CspError` for anything else (a scheme alone, a keyword, a path), and for a
    source that lets through a host a rule lists: allowing it reopens the bypass.
    """
    text = text.strip()
    if "://" in text:
        found = origin_pattern(text)
    elif _BARE_HOST.fullmatch(text):
        found = origin_pattern("https://" + text)
        if found is not None:
            found = found.removeprefix("https://")
    else:
        found = None
    if found is None:
        raise CspError(
            f"--allow {text!r}: give an origin (https://cdn.example.com, "
            "https://*.example.com) or a host name; a scheme, keyword or path is not a source "
            "this policy takes (https: alone would allow every vendor host)"
        )
    host, wild = _host_of(found)
    vendor = _listed_by(host, wild, rules)
    if vendor is not None:
        raise CspError(
            f"--allow {text!r}: rule {vendor!r} lists this host; allowing it would let tags "
            "reach the vendor directly, bypassing the gateway (send them through it instead)"
        )
    return found


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def build_policy(
    rules: RuleSet,
    *,
    gateway: str = SELF,
    allow: Sequence[str] = (),
    base_path: str = "",
    report_only: bool = False,
    report_to: bool = True,
) -> CspPolicy:
    """The policy for the site's pages (see the module): `'self'`, the gateway's origin
    (`gateway`, default `'self'`: served under the site's origin) and `allow`.

    Reports go to `report-uri` and, with `report_to`, the Reporting API's `report-to`.
    Chromium ignores `report-uri` when `report-to` is present and sends Reporting API
    uploads in batches, later (CORS-checked when the gateway is on another origin);
    Firefox reads `report-uri` only. Without `report_to` every browser reports at once.

    Raises `CspError` for a bad `gateway` or `allow`, naming it and why.
    """
    gw = _gateway_source(gateway)
    if gw != SELF:
        vendor = _listed_by(_host_of(gw)[0], False, rules)
        if vendor is not None:
            raise CspError(f"--gateway {gateway!r}: rule {vendor!r} lists this host")
    sources = _dedupe([SELF, gw, *(allow_source(a, rules) for a in allow)])
    url = report_url(gateway, base_path)
    parts = [" ".join([name, *sources, *extra]) for name, extra in _DIRECTIVES]
    parts.append(f"report-uri {url}")
    if report_to:
        parts.append(f"report-to {ENDPOINT_NAME}")
    return CspPolicy("; ".join(parts), url, report_only, report_to)
