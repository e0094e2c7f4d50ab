"""One rule file (`rules/*.yaml`) compiled into a `VendorRule`, or every problem in it.

`parse_rule` walks the YAML document and checks every key against the schema, collecting
every problem (each as `file:line: vendor/key.path: message`) rather than stopping at the
first. `RuleParser` is the same walk, also keeping where the file claims its vendor id,
hosts and route, so that `gateway.ruleset.load` can report a conflict between files at
the later file's key.

Every key is declared once in `gateway.ruleset.keys`, with its type, grammar and help:
the walk reads each mapping through its block there (the keys it allows and requires,
how each value is read and checked), and `schemas/rule.schema.json` is written from the
same declarations. What is checked across keys, files or the config stays here. The
schema is documented for rule authors in `rules/README.md`; keep the two in step.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import urlsplit

from gateway.errors import Problem
from gateway.model import NECESSARY, Action, BodyKind, ConsentValue, EndpointKind, StripSpec
from gateway.ruleset.declare import strings
from gateway.ruleset.drop_answer import read_drop_answer
from gateway.ruleset.keys import (
    LIVE_WEBSOCKET,
    EndpointKeys,
    ExampleKeys,
    MatchKeys,
    RuleKeys,
    StripKeys,
)
from gateway.ruleset.match import match_endpoint
from gateway.ruleset.schema import (
    DEFAULT_METHODS,
    ConsentParams,
    EndpointSpec,
    ExampleSpec,
    VendorRule,
    check_vendor_id,
    default_forward_mode,
    host_matches,
)
from gateway.yamlsrc import Node, YamlSource

__all__ = [
    "ENDPOINT_KEYS",
    "EXAMPLE_KEYS",
    "MATCH_KEYS",
    "RULE_KEYS",
    "STRIP_KEYS",
    "Parsed",
    "RuleParser",
    "parse_rule",
]

#: the keys of each mapping, as `gateway.ruleset.keys` declares them
RULE_KEYS = RuleKeys.names()
ENDPOINT_KEYS = EndpointKeys.names()
MATCH_KEYS = MatchKeys.names()
STRIP_KEYS = StripKeys.names()
EXAMPLE_KEYS = ExampleKeys.names()


def parse_rule(
    text: str, file: str, known_purposes: frozenset[str]
) -> tuple[VendorRule | None, list[Problem]]:
    """Compile one rule file's text.

    Returns the rule and no problems, or None and every problem found (each
    `where` prefixed with the vendor id once that is known). `known_purposes`
    are the gateway's configured purposes; naming any other is a problem.
    """
    parsed = RuleParser(file, known_purposes).parse(text)
    return parsed.rule, parsed.problems


# ---------------------------------------------------------------------------
# The walk


@dataclass
class Parsed:
    """One file's outcome: the rule (None when there is any problem), and the problems."""

    rule: VendorRule | None
    problems: list[Problem]
    #: "vendor" | "route" | "host:<pattern>" -> (key path, line), for cross-file problems
    claims: dict[str, tuple[str, int | None]] = field(default_factory=dict)


@dataclass
class _WhenDenied:
    purpose: str
    strip: StripSpec
    node: Node


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class RuleParser:
    """Walks one rule document; every problem lands in `src.problems` with its line."""

    def __init__(self, file: str, known_purposes: frozenset[str], *, examples: bool = True) -> None:
        self.file = file
        self.known = known_purposes
        #: read and check the rule's `examples` (False: the rule is built without them)
        self.examples = examples
        self.claims: dict[str, tuple[str, int | None]] = {}

    def parse(self, text: str) -> Parsed:
        src = YamlSource.parse(text, self.file)
        if src.problems and src.data is None:
            return Parsed(None, src.problems)
        top = RuleKeys.mapping(src.root())
        vendor = RuleKeys.vendor.read(top)
        self.claims["vendor"] = (top["vendor"].where, top["vendor"].line)
        name = RuleKeys.name.read(top)
        tcf_vendor_id = None if top["tcf_vendor_id"].missing else RuleKeys.tcf_vendor_id.read(top)
        hosts = self._hosts(top["hosts"])
        purposes = self._purposes(top["purposes"])
        route, route_host = self._route(top["route"], top["route_host"], hosts)
        report_only = RuleKeys.report_only.read(top)
        consent_params = (
            None
            if top["consent_params"].missing
            else RuleKeys.consent_params.read(top, ConsentParams.GOOGLE)
        )
        always = self._strip(top["always"])
        when_denied = self._when_denied(top["when_denied"])
        endpoints, endpoints_ok = self._endpoints(top["endpoints"], purposes, when_denied, always)
        required = frozenset[str]().union(*(e.purposes for e in endpoints))
        for wd in when_denied:
            if endpoints_ok and wd.purpose not in required:
                wd.node.problem(f"no endpoint requires {wd.purpose!r}: this strip never applies")
        examples = (
            self._examples(top["examples"], hosts, endpoints if endpoints_ok else None)
            if self.examples
            else []
        )
        RuleKeys.notes.read(top)
        problems = [_prefixed(p, vendor) for p in src.problems]
        if problems:
            return Parsed(None, problems, self.claims)
        rule = src.root().build(
            VendorRule,
            vendor=vendor,
            name=name,
            file=self.file,
            tcf_vendor_id=tcf_vendor_id,
            hosts=tuple(hosts),
            route=route,
            route_host=route_host,
            purposes=purposes,
            endpoints=tuple(endpoints),
            report_only=report_only,
            consent_params=consent_params,
            examples=tuple(examples),
        )
        if rule is None:
            return Parsed(None, [_prefixed(p, vendor) for p in src.problems], self.claims)
        return Parsed(rule, [], self.claims)

    # -- scalars -------------------------------------------------------------
    def _purpose(self, name: str, node: Node) -> bool:
        if name in self.known:
            return True
        hint = _suggest(name, self.known)
        node.problem(f"unknown purpose {name!r}{hint}; configured: {', '.join(sorted(self.known))}")
        return False

    def _purposes(self, node: Node) -> frozenset[str]:
        out = frozenset(p for p, item in strings(node) if self._purpose(p, item))
        RuleKeys.purposes.type.check_empty(node)
        return out

    # -- hosts and route -----------------------------------------------------
    def _hosts(self, node: Node) -> list[str]:
        hosts: list[str] = []
        for value, item in strings(node):
            if error := RuleKeys.hosts.check(value):
                item.problem(error)
            elif value in hosts:
                item.problem(f"host {value!r} is listed twice")
            else:
                hosts.append(value)
                self.claims[f"host:{value}"] = (item.where, item.line)
        RuleKeys.hosts.type.check_empty(node)
        return hosts

    def _route(
        self, route_node: Node, host_node: Node, hosts: list[str]
    ) -> tuple[str | None, str | None]:
        route = route_node.opt_str()
        if route is None:
            if not host_node.missing:
                host_node.problem("route_host only applies with a route")
            return None, None
        self.claims["route"] = (route_node.where, route_node.line)
        if error := RuleKeys.route.check(route):
            route_node.problem(error)
        if not host_node.missing:
            target = host_node.str()
            if RuleKeys.route_host.check(target) or not any(host_matches(h, target) for h in hosts):
                host_node.problem("must be a host name that one of this rule's hosts covers")
            return route, target
        exact = [h for h in hosts if not h.startswith("*.")]
        if not exact:
            route_node.problem("route_host is required when every host is a wildcard")
            return route, None
        return route, exact[0]

    # -- strips ---------------------------------------------------------------
    def _strip(self, node: Node, when_denied: bool = False) -> StripSpec:
        if node.missing:
            return StripSpec()
        m = StripKeys.mapping(node)
        if not when_denied and not m["keep"].missing:
            m["keep"].problem("keep applies only to a when_denied strip")
        all_cookies = m["cookies"].value == "all"
        return StripSpec(
            query=StripKeys.query.read(m),
            json=StripKeys.json.read(m),
            path_params=StripKeys.path_params.read(m),
            url_fields=StripKeys.url_fields.read(m),
            cookies=frozenset() if all_cookies else StripKeys.cookies.read(m),
            all_cookies=all_cookies,
            headers=frozenset(h.lower() for h in StripKeys.headers.read(m)),
            ip=StripKeys.ip.read(m),
            user_agent=StripKeys.user_agent.read(m),
            referrer=StripKeys.referrer.read(m),
            keep=frozenset(n.lower() for n in StripKeys.keep.read(m)),
        )

    def _when_denied(self, node: Node) -> list[_WhenDenied]:
        out: list[_WhenDenied] = []
        for purpose, sub in node.items():
            if not self._purpose(purpose, sub):
                continue
            if purpose == NECESSARY:
                sub.problem(f"{NECESSARY!r} is always granted: a strip for it never applies")
                continue
            out.append(_WhenDenied(purpose, self._strip(sub, when_denied=True), sub))
        return out

    # -- endpoints ------------------------------------------------------------
    def _endpoints(
        self,
        node: Node,
        purposes: frozenset[str],
        when_denied: list[_WhenDenied],
        always: StripSpec,
    ) -> tuple[list[EndpointSpec], bool]:
        """The endpoints that compiled, and whether all of them did."""
        out: list[EndpointSpec] = []
        ids: set[str] = set()
        items = node.list()
        RuleKeys.endpoints.type.check_empty(node)
        for item in items:
            endpoint = self._endpoint(item, purposes, when_denied, always)
            if endpoint is None:
                continue
            if endpoint.id in ids:
                item.problem(f"endpoint id {endpoint.id!r} is used twice")
                continue
            ids.add(endpoint.id)
            out.append(endpoint)
        return out, len(out) == len(items)

    def _endpoint(
        self,
        node: Node,
        vendor_purposes: frozenset[str],
        vendor_when_denied: list[_WhenDenied],
        vendor_always: StripSpec,
    ) -> EndpointSpec | None:
        problems = node.src.problems
        before = len(problems)
        m = EndpointKeys.mapping(node)
        endpoint_id = EndpointKeys.id.read(m)
        path, prefix, regex, methods = self._matcher(m["match"])
        kind = EndpointKeys.kind.read(m, EndpointKind.BEACON)
        body = EndpointKeys.body.read(m)
        purposes = self._purposes(m["purposes"]) if "purposes" in m else vendor_purposes
        own_when_denied = self._when_denied(m["when_denied"])
        for wd in own_when_denied:
            if wd.purpose not in purposes:
                wd.node.problem(f"this endpoint does not require {wd.purpose!r}")
        own_always = self._strip(m["always"])
        if body not in (BodyKind.JSON, BodyKind.TEXT, BodyKind.FORM_JSON):
            for spec, at in [(own_always, m["always"])] + [
                (w.strip, w.node) for w in own_when_denied
            ]:
                if spec.json:
                    at.problem(
                        f"json strips need body: json, text or form-json (this endpoint: {body})"
                    )
        merged: dict[str, StripSpec] = {}
        for wd in (*vendor_when_denied, *own_when_denied):
            if wd.purpose in purposes:
                merged[wd.purpose] = merged.get(wd.purpose, StripSpec()).merge(wd.strip)
        mode = EndpointKeys.forward_mode.read(m, default_forward_mode(kind))
        if LIVE_WEBSOCKET.refuses(kind, mode):
            m["forward_mode"].problem("a websocket endpoint is relayed live (forward_mode: sync)")
        drop_answer = read_drop_answer(m["drop_answer"], kind)
        EndpointKeys.notes.read(m)
        if len(problems) != before or not purposes:
            # An empty `purposes` here is the vendor's, already reported where it is written.
            return None
        return node.build(
            EndpointSpec,
            id=endpoint_id,
            path=path,
            path_prefix=prefix,
            path_regex=regex,
            methods=methods,
            kind=kind,
            body=body,
            purposes=purposes,
            when_denied=MappingProxyType(merged),
            always=vendor_always.merge(own_always),
            forward_mode=mode,
            retired=EndpointKeys.retired.read(m),
            forward_headers=frozenset(h.lower() for h in EndpointKeys.forward_headers.read(m)),
            drop_answer=drop_answer,
        )

    def _matcher(
        self, node: Node
    ) -> tuple[str | None, str | None, re.Pattern[str] | None, frozenset[str]]:
        m = MatchKeys.mapping(node)
        given = [k for k in MatchKeys.one_of if k in m and not m[k].missing]
        if len(given) != 1 and isinstance(node.value, dict):
            node.problem(f"exactly one of {', '.join(MatchKeys.one_of)} is required")
        path = prefix = None
        regex: re.Pattern[str] | None = None
        if "path" in m:
            path = self._path(m["path"])
        if "path_prefix" in m:
            prefix = self._path(m["path_prefix"])
        if "path_regex" in m:
            pattern = m["path_regex"].str()
            if error := MatchKeys.path_regex.check(pattern):
                m["path_regex"].problem(error)
            else:
                regex = re.compile(pattern)
        methods = DEFAULT_METHODS
        if "methods" in m:
            methods = frozenset(x.upper() for x in MatchKeys.methods.read(m))
        return path, prefix, regex, methods

    def _path(self, node: Node) -> str:
        value = node.str()
        if error := MatchKeys.path.check(value):  # also for an empty path
            node.problem(error)
        return value

    # -- examples -------------------------------------------------------------
    def _examples(
        self, node: Node, hosts: list[str], endpoints: list[EndpointSpec] | None
    ) -> list[ExampleSpec]:
        items = node.list()
        RuleKeys.examples.type.check_empty(node)
        examples = [self._example(item, hosts, endpoints) for item in items]
        return [e for e in examples if e is not None]

    def _example(
        self, node: Node, hosts: list[str], endpoints: list[EndpointSpec] | None
    ) -> ExampleSpec | None:
        problems = node.src.problems
        before = len(problems)
        m = ExampleKeys.mapping(node)
        url = m["url"].str()
        method = m["method"].str(ExampleKeys.method.type.default()).upper()
        if error := ExampleKeys.method.check(method):
            m["method"].problem(error)
        text = m["body"].opt_str()
        if text is not None and method in ("GET", "HEAD"):
            m["body"].problem(f"a {method} request has no body")
        headers = {k: v.str() for k, v in m["headers"].items()}
        consent = {
            p: ExampleKeys.consent.type.value.read(v, ConsentValue.UNKNOWN)
            for p, v in m["consent"].items()
            if self._purpose(p, v)
        }
        expect = ExampleKeys.expect.read(m, Action.REJECT)
        removed = tuple(sorted(ExampleKeys.removed.read(m)))
        kept = tuple(sorted(ExampleKeys.kept.read(m)))
        if both := sorted(set(removed) & set(kept)):
            m["kept"].problem(f"both removed and kept: {', '.join(both)}")
        if kept and expect in (Action.DROP, Action.REJECT):
            m["kept"].problem(f"nothing reaches the vendor when the decision is {expect}")
        ExampleKeys.notes.read(m)
        if url:
            self._check_url(m["url"], url, method, expect, hosts, endpoints)
        if len(problems) != before:
            return None
        return node.build(
            ExampleSpec,
            url=url,
            method=method,
            body=None if text is None else text.encode(),
            content_type=m["content_type"].opt_str(),
            headers=headers,
            consent=consent,
            expect=expect,
            removed=removed,
            kept=kept,
            line=node.line,
        )

    def _check_url(
        self,
        node: Node,
        url: str,
        method: str,
        expect: Action,
        hosts: list[str],
        endpoints: list[EndpointSpec] | None,
    ) -> None:
        if error := ExampleKeys.url.check(url):
            node.problem(error)
            return
        parts = urlsplit(url)
        host = parts.hostname or ""
        if hosts and not any(host_matches(h, host) for h in hosts):
            node.problem(f"host {host!r} is not one of this rule's hosts")
            return
        if endpoints is None or expect is Action.REJECT:
            return
        if match_endpoint(endpoints, parts.path or "/", method) is None:
            node.problem(f"no endpoint matches {method} {parts.path} (expect: reject if intended)")


def _prefixed(problem: Problem, vendor: str) -> Problem:
    """`where` as `vendor/key.path`, naming the rule (when its id is valid)."""
    if not vendor or check_vendor_id(vendor):
        return problem
    where = f"{vendor}/{problem.where}" if problem.where else vendor
    return Problem(problem.file, problem.line, where, problem.message)
