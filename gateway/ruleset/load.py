"""Read rule files (`rules/*.yaml`) into a validated, indexed `RuleSet`.

`load_rules` reads every file, collects every problem in every file (each as
`file:line: vendor/key.path: message`), then checks the files against each
other (vendor ids, hosts, routes), and raises `RuleError` listing them all if
there is any. The gateway refuses to start on a `RuleError`, or keeps its
last good rule set on reload. `gateway.ruleset.parse` does the per-file part.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from publicsuffixlist import PublicSuffixList

from gateway.config import GatewayConfig, VendorHost, VendorRef
from gateway.errors import Problem, RuleError
from gateway.ruleset.match import RuleConflict, RuleConflictError, RuleSet
from gateway.ruleset.parse import RuleParser
from gateway.ruleset.schema import VendorRule, check_host_pattern, check_path_prefix
from gateway.yamlsrc import read_source

__all__ = ["configured_rules", "is_public_suffix", "load_rules", "registrable_domain"]

_RULE_SUFFIXES = (".yaml", ".yml")


def load_rules(
    paths: Sequence[Path],
    known_purposes: frozenset[str],
    vendor_hosts: Sequence[VendorHost] = (),
    router_vendors: Sequence[VendorRef] = (),
    *,
    examples: bool = True,
) -> RuleSet:
    """Load rule files into an indexed `RuleSet`, with the hosts the config adds to them.

    Each path is a rule file or a directory of them (its `*.yaml` and `*.yml`
    files, in name order; other files such as `README.md` are ignored). Raises
    `RuleError` listing every problem in every file, and every conflict
    between files (a vendor id, host or route claimed twice), if there is any;
    a host `vendor_hosts` adds is held to the same rules, and reported where the
    config names it, as is a vendor `router_vendors` names that no rule has.
    `examples=False` leaves every rule's examples out, unread and unchecked (see
    `configured_rules`).
    """
    problems: list[Problem] = []
    claims: dict[str, dict[str, tuple[str, int | None]]] = {}
    rules: list[VendorRule] = []
    for path in _rule_files(paths, problems):
        text = read_source(path)
        if isinstance(text, Problem):
            problems.append(text)
            continue
        parsed = RuleParser(str(path), known_purposes, examples=examples).parse(text)
        problems += parsed.problems
        if parsed.rule is not None:
            rules.append(parsed.rule)
            claims[parsed.rule.file] = parsed.claims
    added: dict[tuple[str, str], VendorHost] = {}
    if vendor_hosts:
        rules = _with_added_hosts(rules, vendor_hosts, problems, added)
    loaded = {r.vendor for r in rules}
    problems += [
        # a typo here would leave the vendor's tags unrouted, so unenforced: refuse it
        Problem(ref.file, ref.line, ref.where, f"no rule has vendor id {ref.vendor!r}")
        for ref in router_vendors
        if ref.vendor not in loaded
    ]
    try:
        ruleset = RuleSet(rules)
    except RuleConflictError as e:
        for c in e.conflicts:
            at = added.get((c.second.vendor, c.key))
            if at is not None:
                problems.append(Problem(at.file, at.line, at.where, str(c)))
            else:
                problems.append(_conflict_problem(c, claims[c.second.file]))
        raise RuleError(problems) from e
    if problems:
        raise RuleError(problems)
    return ruleset


def configured_rules(config: GatewayConfig, paths: Sequence[Path] = ()) -> RuleSet:
    """The rules `config` names (`rules.paths`), for its purposes, with the hosts it adds
    (`rules.vendor_hosts`): what the gateway serves, reloads, explains and locks CSP to.

    With `paths`, the rules there instead (a rule file being written: `explain --rules`),
    with the hosts the config adds to their vendors; entries for other vendors are left
    out, not problems.

    Without the rules' examples: they are each rule's own tests, which `check` runs,
    and nothing served reads them; reading and checking them was 40 % of loading a
    1,000-rule catalogue (bench/PROFILE.md). A rule whose example is wrong therefore
    serves, and `check` refuses it."""
    purposes = frozenset(config.consent.purposes)
    if not paths:
        r = config.rules
        return load_rules(r.paths, purposes, r.vendor_hosts, r.router_vendors, examples=False)
    rules = load_rules(paths, purposes, examples=False)
    added = [h for h in config.rules.vendor_hosts if rules.vendor(h.vendor) is not None]
    return load_rules(paths, purposes, added, examples=False) if added else rules


# ---------------------------------------------------------------------------
# Hosts the config adds (rules.vendor_hosts)


def _with_added_hosts(
    rules: list[VendorRule],
    vendor_hosts: Sequence[VendorHost],
    problems: list[Problem],
    added: dict[tuple[str, str], VendorHost],
) -> list[VendorRule]:
    """`rules` with each entry's host added to its vendor's rule (and its prefix mounted);
    a problem at the entry for a vendor no rule has, a host that is not a plain DNS name
    or `*.suffix`, a public suffix, or a host given twice. Overlaps with other rules are
    `RuleSet`'s to find, as between files; `added` maps (vendor, host) to its entry so
    they are reported at the entry."""
    by_vendor = {r.vendor: r for r in rules}
    hosts: dict[str, list[str]] = {}
    mounts: dict[str, dict[str, str]] = {}
    for entry in vendor_hosts:

        def problem(message: str, entry: VendorHost = entry) -> None:
            problems.append(Problem(entry.file, entry.line, entry.where, message))

        rule = by_vendor.get(entry.vendor)
        if rule is None:
            problem(f"no rule has vendor id {entry.vendor!r}")
            continue
        if error := check_host_pattern(entry.host):
            problem(f"{entry.host!r}: {error}")
            continue
        if is_public_suffix(entry.host.removeprefix("*.")):
            problem(f"{entry.host!r} is a public suffix: it would cover other sites' hosts")
            continue
        if entry.prefix is not None and entry.host.startswith("*."):
            problem("a path prefix needs an exact host")
            continue
        if entry.prefix is not None and (error := check_path_prefix(entry.prefix)):
            problem(f"path prefix {entry.prefix!r}: {error}")
            continue
        if (entry.vendor, entry.host) in added or entry.host in rule.hosts:
            problem(f"{entry.host!r} is already a host of {entry.vendor!r}")
            continue
        added[(entry.vendor, entry.host)] = entry
        hosts.setdefault(entry.vendor, []).append(entry.host)
        if entry.prefix is not None:
            mounts.setdefault(entry.vendor, {})[entry.host] = entry.prefix
    return [
        dataclasses.replace(
            r,
            hosts=(*r.hosts, *hosts[r.vendor]),
            added_hosts=tuple(hosts[r.vendor]),
            mounts={**r.mounts, **mounts.get(r.vendor, {})},
        )
        if r.vendor in hosts
        else r
        for r in rules
    ]


_PSL: list[PublicSuffixList] = []


def _psl() -> PublicSuffixList:
    """The Public Suffix List, read once, when first asked."""
    if not _PSL:
        _PSL.append(PublicSuffixList())
    return _PSL[0]


def is_public_suffix(host: str) -> bool:
    """Whether `host` is on the Public Suffix List (`com`, `co.uk`, `github.io`): a name
    under which anyone may register, so no rule may own it or all below it."""
    return bool(_psl().is_public(host))


def registrable_domain(host: str) -> str | None:
    """The name `host` was registered as (`analytics.tiktok.com` -> `tiktok.com`), or None
    for a public suffix itself."""
    found = _psl().privatesuffix(host)
    return str(found) if found else None


# ---------------------------------------------------------------------------
# Files


def _rule_files(paths: Iterable[Path], problems: list[Problem]) -> list[Path]:
    """The rule files named by `paths`, each once, in the order given."""
    out: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found = _directory_files(path)
            if not found:
                problems.append(Problem(str(path), None, "", "no rule files (*.yaml) in directory"))
        elif path.is_file():
            found = [(path, path.resolve())]
        else:
            problems.append(Problem(str(path), None, "", "no such file or directory"))
            continue
        for p, key in found:
            if key not in seen:
                seen.add(key)
                out.append(p)
    return out


def _directory_files(path: Path) -> list[tuple[Path, Path]]:
    """A directory's rule files in name order, each with its resolved path. The directory
    is resolved once and only symbolic links one by one: resolving a thousand files'
    every component (a reload of 1,000 rules) held the loop's thread off 20-70 ms."""
    where = path.resolve()
    found = []
    with os.scandir(path) as entries:
        for e in entries:
            if os.path.splitext(e.name)[1] in _RULE_SUFFIXES and e.is_file():
                p = path / e.name
                found.append((p, p.resolve() if e.is_symlink() else where / e.name))
    return sorted(found)


def _conflict_problem(c: RuleConflict, claims: dict[str, tuple[str, int | None]]) -> Problem:
    """A cross-file conflict, reported at the later rule's key, naming the earlier file."""
    claim = c.what if c.what != "host" else f"host:{c.key}"
    where, line = claims.get(claim, (c.what, None))
    return Problem(c.second.file, line, f"{c.second.vendor}/{where}", str(c))
