"""Lints for rule authors: rules that load, but probably do not do what was meant.

- an endpoint that can never match, because an earlier endpoint of the same
  vendor takes every request it would (first match wins);
- a strip naming a field none of the rule's examples contains, so nothing shows
  the strip works (or the name is misspelled: `gclid` vs `glcid`);
- a purpose an endpoint requires (but `necessary`) that no `drop` or `strip` example
  leaves ungranted on such an endpoint, so nothing shows what the gateway does without it.

`lint_rules` returns warnings as `Problem`s; `consent-gateway check` prints them
and fails on them only with `--strict`. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote

import orjson

from gateway.config import GatewayConfig
from gateway.errors import Problem
from gateway.model import NECESSARY, Action, ConsentValue, StripSpec
from gateway.ruleset.match import RuleSet, match_endpoint
from gateway.ruleset.schema import EndpointSpec, ExampleSpec, VendorRule
from gateway.transform_body import json_paths

__all__ = [
    "lint_rules",
    "shadowed_by",
    "unknown_cmp_vendors",
    "untested_purposes",
    "unused_overrides",
]


def _covers(early: EndpointSpec, late: EndpointSpec) -> bool:
    """Whether `early` accepts every request `late` would (so `late` never matches)."""
    if not late.methods <= (early.methods | ({"HEAD"} if "GET" in early.methods else set())):
        return False
    if early.path_regex is not None:
        return late.path is not None and early.path_regex.fullmatch(late.path) is not None
    if early.path is not None:
        return late.path == early.path
    assert early.path_prefix is not None
    if late.path is not None:
        return late.path.startswith(early.path_prefix)
    if late.path_prefix is not None:
        return late.path_prefix.startswith(early.path_prefix)
    return False


def shadowed_by(endpoints: Iterable[EndpointSpec]) -> list[tuple[EndpointSpec, EndpointSpec]]:
    """(late, early) pairs where `early`, listed first, takes every request `late` would."""
    seen: list[EndpointSpec] = []
    out: list[tuple[EndpointSpec, EndpointSpec]] = []
    for ep in endpoints:
        for early in seen:
            if _covers(early, ep):
                out.append((ep, early))
                break
        seen.append(ep)
    return out


def _example_fields(ex: ExampleSpec) -> set[str]:
    """Every field name an example request carries: query, form/batch body lines, `;` path
    parameters, and JSON paths (as `json:a.b`, arrays as `a[]`)."""
    names = {k for k, _ in parse_qsl(ex.query, keep_blank_values=True)}
    names |= {unquote(p.partition("=")[0]) for p in ex.path.split(";")[1:]}
    body = ex.body or b""
    if body:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            for line in body.decode("utf-8", "replace").splitlines():
                names |= {k for k, _ in parse_qsl(line, keep_blank_values=True)}
        else:
            names |= {"json:" + p for p in json_paths(doc)}
    return names


def _strip_names(spec: StripSpec) -> set[str]:
    return set(spec.query) | set(spec.path_params) | {"json:" + j for j in spec.json}


def _mentioned(name: str, fields: set[str]) -> bool:
    if name.endswith("*"):
        return any(f.startswith(name[:-1]) for f in fields)
    return name in fields


def untested_purposes(rule: VendorRule) -> list[str]:
    """The purposes `rule`'s endpoints require (but `necessary`, and not counting retired
    endpoints, which always drop) for which no example expecting `drop` or `strip` is a
    request to an endpoint requiring it with it not granted; sorted."""
    required = {p for ep in rule.endpoints if not ep.retired for p in ep.purposes} - {NECESSARY}
    shown: set[str] = set()
    for ex in rule.examples:
        if ex.expect not in (Action.DROP, Action.STRIP):
            continue
        ep = match_endpoint(rule.endpoints, ex.path, ex.method)
        if ep is not None:
            shown |= {p for p in ep.purposes if ex.consent.get(p) is not ConsentValue.GRANTED}
    return sorted(required - shown)


def lint_rules(rules: Iterable[VendorRule]) -> list[Problem]:
    """Warnings about `rules` (see the module docstring), in file order."""
    out: list[Problem] = []
    for rule in rules:
        for late, early in shadowed_by(rule.endpoints):
            out.append(
                Problem(
                    rule.file,
                    None,
                    f"{rule.vendor}/endpoints.{late.id}",
                    f"warning: can never match: {early.id!r} ({early.pattern}) comes first "
                    "and takes every request it would",
                )
            )
        fields: set[str] = set()
        for ex in rule.examples:
            fields |= _example_fields(ex)
        named: set[str] = set()
        for ep in rule.endpoints:
            named |= _strip_names(ep.always)
            for spec in ep.when_denied.values():
                named |= _strip_names(spec)
        for name in sorted(named):
            if not _mentioned(name, fields):
                out.append(
                    Problem(
                        rule.file,
                        None,
                        f"{rule.vendor}/strips",
                        f"warning: no example contains {name!r}: add one that shows the strip "
                        "works (or check the spelling)",
                    )
                )
        for purpose in untested_purposes(rule):
            out.append(
                Problem(
                    rule.file,
                    None,
                    f"{rule.vendor}/examples",
                    f"warning: no drop or strip example without {purpose!r}: add one where "
                    f"{purpose} is not granted, to show what the gateway does then",
                )
            )
    return out


# -- the config against the rules (`check`) ------------------------------------------


def unknown_cmp_vendors(cfg: GatewayConfig, ruleset: RuleSet, file: str) -> list[Problem]:
    """A CMP id mapped to a vendor id no rule has: its answer decides nothing (a typo, or
    a rule removed), so the visitor's choice for that vendor would go unenforced."""
    return [
        Problem(
            file,
            None,
            f"consent.signals.cmp.{cmp}.vendors.{cmp_id}",
            f"no rule has vendor id {vendor!r}: this answer is never applied",
        )
        for cmp, table in sorted(cfg.consent.signals.cmp.items())
        for cmp_id, vendors in sorted(table.vendors.items())
        for vendor in vendors
        if ruleset.vendor(vendor) is None
    ]


def unused_overrides(cfg: GatewayConfig, ruleset: RuleSet, file: str) -> list[Problem]:
    """An `upstream.overrides` origin whose host no rule lists can never be used: the
    gateway refuses that destination before it would look the override up."""
    return [
        Problem(
            file,
            None,
            f"upstream.overrides[{origin!r}]",
            "no rule lists this host, so this override is never used",
        )
        for origin in sorted(cfg.upstream.overrides)
        if ruleset.vendor_for_host(origin.removeprefix("https://")) is None
    ]
