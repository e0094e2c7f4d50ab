"""`consent-gateway explain`: what the gateway would do with a request, and why.

For rule authors: a request described on the command line runs through the
same pure stages as live traffic (`core.evaluate`), and the result is shown
as the matched vendor and endpoint, the consent with each answer's source, the
decision, and the request that would be forwarded as a diff against the
original. Nothing is sent anywhere.

The consent store is read only when asked (`--store`): the CLI looks up the subjects
`subjects_of` names and passes their states in `ExplainRequest.stored`; without it the
store counts as not holding them (a server-to-server event then has no consent).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from gateway.config import GatewayConfig
from gateway.consent.cookie import ConsentCookie, sign_cookie
from gateway.consent.resolve import read_cookie
from gateway.core import Evaluation, evaluate, server_subject
from gateway.errors import BadDestination, UnknownDestination
from gateway.model import CurrentConsent, Facts, Headers, Outgoing
from gateway.ruleset.match import RuleSet, normalize_host

__all__ = [
    "ExplainRequest",
    "explain",
    "parse_consent",
    "parse_header",
    "render_text",
    "subjects_of",
    "to_json",
]


@dataclass(frozen=True, slots=True)
class ExplainRequest:
    url: str
    method: str = "GET"
    body: bytes = b""
    #: purpose -> granted|denied, signed into a gateway cookie with the config's key
    consent: Mapping[str, str] | None = None
    #: a `cg_consent` cookie value to use as is
    cookie: str | None = None
    headers: Sequence[tuple[str, str]] = ()
    #: the store's state of the request's subjects (`subjects_of`), None when not read
    stored: Mapping[str, CurrentConsent | None] | None = None
    #: rule vendor id -> allowed?, signed into the gateway cookie with `consent`
    vendors: Mapping[str, bool] | None = None


def parse_consent(text: str, purposes: Sequence[str]) -> dict[str, str]:
    """`analytics=granted,advertising=denied` as {purpose: state}, for `--consent` and the
    admin's Explain form. Raises `ValueError` naming the first item that is not
    `PURPOSE=granted|denied` with a configured purpose."""
    consent: dict[str, str] = {}
    for item in text.split(","):
        name, _, state = item.strip().partition("=")
        if state not in ("granted", "denied") or name not in purposes:
            raise ValueError(f"expected PURPOSE=granted|denied, got {item!r}")
        consent[name] = state
    return consent


def parse_header(text: str) -> tuple[str, str]:
    """`Name: value` as (name, value); `ValueError` without a name and a colon."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise ValueError(f"expected K:V, got {text!r}")
    return name.strip(), value.strip()


def _facts(req: ExplainRequest, config: GatewayConfig) -> Facts:
    parts = urlsplit(req.url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadDestination("give a full URL, e.g. https://www.google-analytics.com/g/collect?…")
    host = normalize_host(parts.netloc)
    if host is None:
        raise BadDestination("not a plain DNS host name")
    headers = list(req.headers)
    cookies: dict[str, str] = {}
    for name, value in headers:
        if name.lower() == "cookie":
            for item in value.split(";"):
                k, _, v = item.strip().partition("=")
                if k:
                    cookies[k] = v
    if req.consent is not None:
        signed = sign_cookie(
            ConsentCookie(
                subject="explain",
                purposes={p: v == "granted" for p, v in req.consent.items()},
                issued_at=int(time.time()),
                policy_version=config.consent.policy_version,
                source="cli",
                vendors=req.vendors or {},
            ),
            config.cookie.keys,
        )
        cookies[config.cookie.name] = signed
    elif req.cookie is not None:
        cookies[config.cookie.name] = req.cookie
    if cookies:
        headers = [(k, v) for k, v in headers if k.lower() != "cookie"]
        headers.append(("Cookie", "; ".join(f"{k}={v}" for k, v in cookies.items())))
    return Facts(
        request_id="explain",
        method=req.method.upper(),
        host=host,
        path=parts.path or "/",
        query=parts.query,
        headers=Headers(tuple(headers)),
        cookies=cookies,
        body=req.body,
        client_ip="203.0.113.77",  # a documentation address, to show what the IP policy does
        now=time.time(),
    )


def subjects_of(req: ExplainRequest, config: GatewayConfig) -> list[str]:
    """The subjects whose stored state the request's decision depends on: the one a
    back end names in `store.subject_header`, else the consent cookie's. Raises
    RequestError as `explain` does for a bad URL."""
    facts = _facts(req, config)
    server = server_subject(config, facts, check_network=False)
    if server is not None:
        return [server] if server else []
    subject = read_cookie(facts, config.consent, config.cookie).subject
    return [] if subject is None else [subject]


def explain(req: ExplainRequest, config: GatewayConfig, rules: RuleSet) -> tuple[Facts, Evaluation]:
    """Run `req` through the pure pipeline. Raises RequestError for a URL that is not a
    plain https URL to a DNS host, or whose host no rule lists."""
    facts = _facts(req, config)
    if rules.vendor_for_host(facts.host) is None:
        raise UnknownDestination("no rule lists this host: the gateway would REJECT it")
    stored = req.stored
    named = server_subject(config, facts, check_network=False)
    server = None
    if named is not None:
        server = (named, stored.get(named) if stored else None)
    cookie = read_cookie(facts, config.consent, config.cookie)
    ev = evaluate(
        facts,
        config,
        rules,
        frozenset({config.cookie.name}),
        cookie=cookie,
        stored=stored.get(cookie.subject) if stored and cookie.subject else None,
        server=server,
    )
    return facts, ev


def _pairs(raw: str) -> list[tuple[str, str]]:
    return parse_qsl(raw, keep_blank_values=True)


def _diff_pairs(
    before: list[tuple[str, str]], after: list[tuple[str, str]], where: str
) -> list[str]:
    out: list[str] = []
    b, a = dict(before), dict(after)
    for name in b:
        if name not in a:
            out.append(f"- {where} {name}")
        elif a[name] != b[name]:
            out.append(f"~ {where} {name}: {b[name]} -> {a[name]}")
    for name in a:
        if name not in b:
            out.append(f"+ {where} {name}={a[name]}")
    return out


def diff(facts: Facts, out: Outgoing) -> list[str]:
    """Lines describing what changed: `- removed`, `~ rewritten`, `+ added`."""
    lines: list[str] = []
    if out.path != facts.path:
        before = [
            (p.partition("=")[0], unquote(p.partition("=")[2])) for p in facts.path.split(";")[1:]
        ]
        after = [
            (p.partition("=")[0], unquote(p.partition("=")[2])) for p in out.path.split(";")[1:]
        ]
        lines += _diff_pairs(before, after, "path")
    lines += _diff_pairs(_pairs(facts.query), _pairs(out.query), "query")
    if out.body != facts.body:
        lines.append(f"~ body ({len(facts.body)} -> {len(out.body)} bytes)")
    sent = {k.lower(): v for k, v in out.headers}
    for name, value in facts.headers.items():
        if name not in sent:
            lines.append(f"- header {name}")
        elif sent[name] != value:
            lines.append(f"~ header {name}: {value} -> {sent[name]}")
    for name in sent:
        if name not in facts.headers:
            lines.append(f"+ header {name}: {sent[name]}")
    return lines


def to_json(facts: Facts, ev: Evaluation) -> dict[str, object]:
    """The `--json` shape: vendor, endpoint, consent, decision, forwarded (or null)."""
    d = ev.decision
    forwarded: dict[str, object] | None = None
    if ev.outgoing is not None:
        o = ev.outgoing
        forwarded = {
            "method": o.method,
            "url": f"https://{o.host}{o.path}" + (f"?{o.query}" if o.query else ""),
            "headers": dict(o.headers),
            "body": o.body.decode("utf-8", "replace") if o.body else None,
        }
    consent = ev.consent
    return {
        "vendor": d.vendor,
        "endpoint": d.endpoint,
        "consent": {
            p: {"state": pc.state.value, "source": pc.source}
            for p, pc in sorted(consent.purposes.items())
        }
        if consent
        else {},
        "vendors": consent.vendors_json() if consent else {},
        "ignored_grants": [
            {"source": source, "purpose": purpose}
            for source, purpose in (ev.signals.ignored if ev.signals else ())
        ],
        "decision": {"action": d.action.value, "missing": sorted(d.missing), "reason": d.reason},
        "forwarded": forwarded,
    }


def render_text(facts: Facts, ev: Evaluation) -> str:
    d = ev.decision
    lines = [
        f"request   {facts.method} https://{facts.host}{facts.path}",
        f"vendor    {d.vendor or '-'}   endpoint {d.endpoint or '-'}",
    ]
    if ev.consent is not None:
        lines.append(
            f"regime    {ev.consent.regime}" + ("   (Sec-GPC: 1)" if ev.consent.gpc else "")
        )
        lines.append("consent")
        for p, pc in sorted(ev.consent.purposes.items()):
            lines.append(f"  {p:<16} {pc.state.value:<8} from {pc.source}")
        if ev.consent.vendor_choices:
            lines.append("vendors")
        for v, vc in sorted(ev.consent.vendor_choices.items()):
            grants = f"   (grants it {', '.join(sorted(vc.grants))})" if vc.grants else ""
            lines.append(f"  {v:<16} {vc.state.value:<8} from {vc.source}{grants}")
    for name, reason in ev.signals.problems if ev.signals else ():
        lines.append(f"  (signal {name} unreadable: {reason})")
    for source, purpose in ev.signals.ignored if ev.signals else ():
        lines.append(
            f"  ({source} granted {purpose}: ignored, the tag request cannot grant itself "
            "consent; see consent.signals.request_params_grant)"
        )
    lines.append(f"decision  {d.action.value.upper()}: {d.reason}")
    if d.missing:
        lines.append(f"missing   {', '.join(sorted(d.missing))}")
    if ev.outgoing is None:
        lines.append("forwarded nothing (answered locally)")
    else:
        o = ev.outgoing
        lines.append(
            f"forwarded {o.method} https://{o.host}{o.path}" + (f"?{o.query}" if o.query else "")
        )
        changes = diff(facts, o)
        lines += [f"  {c}" for c in changes] or ["  (unchanged)"]
    return "\n".join(lines)
