"""One rule file (`rules/*.yaml`) compiled into a `VendorRule`, or every problem in it.

`parse_rule` walks the YAML document and checks every key against the schema, collecting
every problem (each as `file:line: vendor/key.path: message`) rather than stopping at the
first. `RuleParser` is the same walk, also keeping where the file claims its vendor id,
hosts and route, so that `gateway.ruleset.load` can report a conflict between files at
the later file's key.

The schema (the keys below, their types and defaults) is documented for rule
authors in `rules/README.md`; keep the two in step.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import urlsplit

from gateway.errors import Problem
from gateway.model import (
    NECESSARY,
    Action,
    BodyKind,
    ConsentValue,
    EndpointKind,
    IpPolicy,
    ReferrerPolicy,
    StripSpec,
    UserAgentPolicy,
)
from gateway.ruleset.drop_answer import read_drop_answer
from gateway.ruleset.match import is_safe_path, match_endpoint
from gateway.ruleset.schema import (
    DEFAULT_METHODS,
    HTTP_METHODS,
    ConsentParams,
    EndpointSpec,
    ExampleSpec,
    ForwardMode,
    VendorRule,
    check_endpoint_id,
    check_field_name,
    check_forward_header,
    check_header_name,
    check_host_pattern,
    check_json_path,
    check_route,
    check_vendor_id,
    default_forward_mode,
    host_matches,
    is_dns_name,
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

RULE_KEYS = (
    "vendor",
    "name",
    "tcf_vendor_id",
    "hosts",
    "route",
    "route_host",
    "purposes",
    "report_only",
    "consent_params",
    "always",
    "when_denied",
    "endpoints",
    "examples",
    "notes",
)
ENDPOINT_KEYS = (
    "id",
    "match",
    "kind",
    "body",
    "purposes",
    "when_denied",
    "always",
    "forward_mode",
    "forward_headers",
    "retired",
    "drop_answer",
    "notes",
)
MATCH_KEYS = ("path", "path_prefix", "path_regex", "methods")
STRIP_KEYS = (
    "query",
    "json",
    "path_params",
    "url_fields",
    "cookies",
    "headers",
    "ip",
    "user_agent",
    "referrer",
    "keep",
)
EXAMPLE_KEYS = (
    "url",
    "method",
    "body",
    "content_type",
    "headers",
    "consent",
    "expect",
    "removed",
    "kept",
    "notes",
)
_MATCHERS = ("path", "path_prefix", "path_regex")
_JSON_PREFIX = "json:"


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


def _strings(node: Node) -> list[tuple[str, Node]]:
    """A list of non-empty strings with their nodes; a single string is a one-item list."""
    if isinstance(node.value, str):
        items = [node]
    else:
        items = node.list()
    out: list[tuple[str, Node]] = []
    for item in items:
        value = item.str()
        if value:
            out.append((value, item))
        elif isinstance(item.value, str):
            item.problem("must not be empty")
    return out


class RuleParser:
    """Walks one rule document; every problem lands in `src.problems` with its line."""

    def __init__(self, file: str, known_purposes: frozenset[str]) -> None:
        self.file = file
        self.known = known_purposes
        self.claims: dict[str, tuple[str, int | None]] = {}

    def parse(self, text: str) -> Parsed:
        src = YamlSource.parse(text, self.file)
        if src.problems and src.data is None:
            return Parsed(None, src.problems)
        top = src.root().mapping(
            RULE_KEYS, required=("vendor", "name", "hosts", "purposes", "endpoints", "examples")
        )
        vendor = self._slug(top["vendor"], check_vendor_id)
        self.claims["vendor"] = (top["vendor"].where, top["vendor"].line)
        name = top["name"].str()
        tcf = top["tcf_vendor_id"]
        tcf_vendor_id = None if tcf.missing else tcf.int(min=1, max=65535)
        hosts = self._hosts(top["hosts"])
        purposes = self._purposes(top["purposes"])
        route, route_host = self._route(top["route"], top["route_host"], hosts)
        report_only = top["report_only"].bool()
        consent_params = (
            None
            if top["consent_params"].missing
            else top["consent_params"].enum(ConsentParams, ConsentParams.GOOGLE)
        )
        always = self._strip(top["always"])
        when_denied = self._when_denied(top["when_denied"])
        endpoints, endpoints_ok = self._endpoints(top["endpoints"], purposes, when_denied, always)
        required = frozenset[str]().union(*(e.purposes for e in endpoints))
        for wd in when_denied:
            if endpoints_ok and wd.purpose not in required:
                wd.node.problem(f"no endpoint requires {wd.purpose!r}: this strip never applies")
        examples = self._examples(top["examples"], hosts, endpoints if endpoints_ok else None)
        top["notes"].str()
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
    def _slug(self, node: Node, check: Callable[[str], str | None]) -> str:
        value = node.str()
        if value and (error := check(value)):
            node.problem(error)
        return value

    def _purpose(self, name: str, node: Node) -> bool:
        if name in self.known:
            return True
        hint = _suggest(name, self.known)
        node.problem(f"unknown purpose {name!r}{hint}; configured: {', '.join(sorted(self.known))}")
        return False

    def _purposes(self, node: Node) -> frozenset[str]:
        out = frozenset(p for p, item in _strings(node) if self._purpose(p, item))
        if node.value == []:
            node.problem("at least one purpose is required (use [necessary] if none)")
        return out

    def _names(self, node: Node, check: Callable[[str], str | None]) -> frozenset[str]:
        out: set[str] = set()
        for value, item in _strings(node):
            if error := check(value):
                item.problem(error)
            else:
                out.add(value)
        return frozenset(out)

    # -- hosts and route -----------------------------------------------------
    def _hosts(self, node: Node) -> list[str]:
        hosts: list[str] = []
        for value, item in _strings(node):
            if error := check_host_pattern(value):
                item.problem(error)
            elif value in hosts:
                item.problem(f"host {value!r} is listed twice")
            else:
                hosts.append(value)
                self.claims[f"host:{value}"] = (item.where, item.line)
        if node.value == []:
            node.problem("at least one host is required")
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
        if error := check_route(route):
            route_node.problem(error)
        if not host_node.missing:
            target = host_node.str()
            if not is_dns_name(target) or not any(host_matches(h, target) for h in hosts):
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
        m = node.mapping(STRIP_KEYS)
        if not when_denied and not m["keep"].missing:
            m["keep"].problem("keep applies only to a when_denied strip")
        all_cookies = m["cookies"].value == "all"
        headers = self._names(m["headers"], lambda h: check_header_name(h.lower()))
        return StripSpec(
            query=self._names(m["query"], check_field_name),
            json=self._names(m["json"], check_json_path),
            path_params=self._names(m["path_params"], check_field_name),
            url_fields=self._names(m["url_fields"], check_field_name),
            cookies=frozenset() if all_cookies else self._names(m["cookies"], check_field_name),
            all_cookies=all_cookies,
            headers=frozenset(h.lower() for h in headers),
            ip=m["ip"].enum(IpPolicy, IpPolicy.KEEP),
            user_agent=m["user_agent"].enum(UserAgentPolicy, UserAgentPolicy.KEEP),
            referrer=m["referrer"].enum(ReferrerPolicy, ReferrerPolicy.KEEP),
            # a bare `*` keeps every field: allowed here, where it removes nothing
            keep=frozenset(
                n.lower()
                for n in self._names(m["keep"], lambda n: None if n == "*" else check_field_name(n))
            ),
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
        if node.value == []:
            node.problem("at least one endpoint is required")
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
        m = node.mapping(ENDPOINT_KEYS, required=("id", "match", "kind"))
        endpoint_id = self._slug(m["id"], check_endpoint_id)
        path, prefix, regex, methods = self._matcher(m["match"])
        kind = m["kind"].enum(EndpointKind, EndpointKind.BEACON)
        body = m["body"].enum(BodyKind, BodyKind.NONE)
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
        mode = m["forward_mode"].enum(ForwardMode, default_forward_mode(kind))
        if kind is EndpointKind.WEBSOCKET and mode is not ForwardMode.SYNC:
            m["forward_mode"].problem("a websocket endpoint is relayed live (forward_mode: sync)")
        drop_answer = read_drop_answer(m["drop_answer"], kind)
        m["notes"].str()
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
            retired=m["retired"].bool(False),
            forward_headers=frozenset(
                h.lower() for h in self._names(m["forward_headers"], check_forward_header)
            ),
            drop_answer=drop_answer,
        )

    def _matcher(
        self, node: Node
    ) -> tuple[str | None, str | None, re.Pattern[str] | None, frozenset[str]]:
        m = node.mapping(MATCH_KEYS)
        given = [k for k in _MATCHERS if k in m and not m[k].missing]
        if len(given) != 1 and isinstance(node.value, dict):
            node.problem("exactly one of path, path_prefix, path_regex is required")
        path = prefix = None
        regex: re.Pattern[str] | None = None
        if "path" in m:
            path = self._path(m["path"])
        if "path_prefix" in m:
            prefix = self._path(m["path_prefix"])
        if "path_regex" in m:
            pattern = m["path_regex"].str()
            try:
                regex = re.compile(pattern)
            except re.error as e:
                m["path_regex"].problem(f"not a regular expression: {e.msg}")
        methods = DEFAULT_METHODS
        if "methods" in m:
            methods = frozenset(x.upper() for x in self._names(m["methods"], _method_error))
            if m["methods"].value == []:
                m["methods"].problem("at least one method is required")
        return path, prefix, regex, methods

    def _path(self, node: Node) -> str:
        value = node.str()
        if not is_safe_path(value):
            # A path the request gate refuses could never match: say so at load time.
            node.problem(
                "must be a raw URL path starting with '/' (no query, fragment, whitespace, "
                "backslash or dot segments)"
            )
        return value

    # -- examples -------------------------------------------------------------
    def _examples(
        self, node: Node, hosts: list[str], endpoints: list[EndpointSpec] | None
    ) -> list[ExampleSpec]:
        items = node.list()
        if node.value == []:
            node.problem("at least one example is required")
        examples = [self._example(item, hosts, endpoints) for item in items]
        return [e for e in examples if e is not None]

    def _example(
        self, node: Node, hosts: list[str], endpoints: list[EndpointSpec] | None
    ) -> ExampleSpec | None:
        problems = node.src.problems
        before = len(problems)
        m = node.mapping(EXAMPLE_KEYS, required=("url", "expect"))
        url = m["url"].str()
        method = m["method"].str("GET").upper()
        if method not in HTTP_METHODS:
            m["method"].problem(f"must be one of: {', '.join(sorted(HTTP_METHODS))}")
        text = m["body"].opt_str()
        if text is not None and method in ("GET", "HEAD"):
            m["body"].problem(f"a {method} request has no body")
        headers = {k: v.str() for k, v in m["headers"].items()}
        consent = {
            p: v.enum(ConsentValue, ConsentValue.UNKNOWN)
            for p, v in m["consent"].items()
            if self._purpose(p, v)
        }
        expect = m["expect"].enum(Action, Action.REJECT)
        removed = self._fields(m["removed"])
        kept = self._fields(m["kept"])
        if both := sorted(set(removed) & set(kept)):
            m["kept"].problem(f"both removed and kept: {', '.join(both)}")
        if kept and expect in (Action.DROP, Action.REJECT):
            m["kept"].problem(f"nothing reaches the vendor when the decision is {expect}")
        m["notes"].str()
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

    def _fields(self, node: Node) -> tuple[str, ...]:
        def check(name: str) -> str | None:
            if name.startswith(_JSON_PREFIX):
                return check_json_path(name[len(_JSON_PREFIX) :])
            return check_field_name(name)

        return tuple(sorted(self._names(node, check)))

    def _check_url(
        self,
        node: Node,
        url: str,
        method: str,
        expect: Action,
        hosts: list[str],
        endpoints: list[EndpointSpec] | None,
    ) -> None:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            node.problem("not a URL")
            return
        host = parts.hostname or ""
        if parts.scheme != "https" or not host or parts.username is not None or port is not None:
            node.problem("must be an https:// URL with a host name, and no userinfo or port")
            return
        if hosts and not any(host_matches(h, host) for h in hosts):
            node.problem(f"host {host!r} is not one of this rule's hosts")
            return
        if endpoints is None or expect is Action.REJECT:
            return
        if match_endpoint(endpoints, parts.path or "/", method) is None:
            node.problem(f"no endpoint matches {method} {parts.path} (expect: reject if intended)")


def _method_error(method: str) -> str | None:
    if method.upper() in HTTP_METHODS:
        return None
    return f"must be one of: {', '.join(sorted(HTTP_METHODS))}"


def _prefixed(problem: Problem, vendor: str) -> Problem:
    """`where` as `vendor/key.path`, naming the rule (when its id is valid)."""
    if not vendor or check_vendor_id(vendor):
        return problem
    where = f"{vendor}/{problem.where}" if problem.where else vendor
    return Problem(problem.file, problem.line, where, problem.message)
