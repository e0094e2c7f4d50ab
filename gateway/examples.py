"""Every rule's `examples:` run in process: the rule's acceptance table, checked.

An example is a request (URL, method, body, headers), the visitor's consent per purpose and
the decision the gateway must take (`rules/README.md`, *Examples*). `run_examples` sends
each one through the same pure stages as live traffic, the way `consent-gateway explain`
does (`gateway.explain.explain` -> `core.evaluate`): consent from a gateway cookie stating
the example's table, the rule match, the decision and, for FORWARD and STRIP, the request
as the transform builds it, which must lack every `removed` field and carry every `kept`
one (`field_reached`). Nothing is sent anywhere.

`consent-gateway check` reports each failure as an error at the example's line; the test
suite runs the same function over the shipped rules (tests/test_examples.py), and
tests/test_rules_examples.py sends the same examples through a live gateway.

An example states what the rule does, not what one site's regime makes of silence: a
purpose it does not name is `unknown`, which counts as not granted whatever the config's
default regime says, and a rule marked `report_only` is run as enforced. The rest of the
consent settings (purposes, signal mappings, GPC) are the config's. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Sequence
from urllib.parse import parse_qsl, unquote

import orjson

from gateway.config import (
    ConsentConfig,
    CookieConfig,
    CookieKey,
    GatewayConfig,
    RegimeConfig,
    RegimeMode,
)
from gateway.errors import Problem, RequestError
from gateway.explain import ExplainRequest, explain
from gateway.model import Action, ConsentValue, Outgoing
from gateway.ruleset.match import RuleSet
from gateway.ruleset.schema import ExampleSpec

__all__ = ["JSON_FIELD", "example_config", "field_reached", "run_example", "run_examples"]

#: how `removed`/`kept` name a field of a JSON body: `json:` and a dotted path
JSON_FIELD = "json:"
#: the one regime examples run under: a purpose an example does not name is not granted
_REGIME = "examples"


def example_config(config: GatewayConfig | None = None) -> GatewayConfig:
    """The config examples run under: `config`'s (else the defaults'), with one opt-in
    regime (`unknown` is not granted), global report-only off, and a signing key of its
    own for the cookie that states each example's consent (no key of the site's is read)."""
    key = CookieKey("examples", secrets.token_bytes(32))
    if config is None:
        return GatewayConfig(consent=_opt_in(ConsentConfig()), cookie=CookieConfig(keys=(key,)))
    return dataclasses.replace(
        config,
        consent=_opt_in(config.consent),
        cookie=dataclasses.replace(config.cookie, keys=(key,), dev_key=False),
        rules=dataclasses.replace(config.rules, report_only=False),
    )


def _opt_in(consent: ConsentConfig) -> ConsentConfig:
    regime = RegimeConfig(_REGIME, RegimeMode.OPT_IN)
    return dataclasses.replace(consent, regimes=(regime,), default_regime=_REGIME)


def _enforced(rules: RuleSet) -> RuleSet:
    """`rules` with every rule enforced: report-only defers enforcement, and an example
    states what will be enforced."""
    if not any(r.report_only for r in rules.rules):
        return rules
    return RuleSet(dataclasses.replace(r, report_only=False) for r in rules.rules)


def run_examples(rules: RuleSet, config: GatewayConfig | None = None) -> list[Problem]:
    """Every example of every rule in `rules`, run; one `Problem` per failing example (at
    its line: `vendor/examples[i]: expected drop, the gateway decides forward (…)`), in
    file order. `config` is the site's, or None for the defaults (`example_config`)."""
    cfg = example_config(config)
    enforced = _enforced(rules)
    out: list[Problem] = []
    for rule in rules.rules:
        for i, ex in enumerate(rule.examples):
            failure = run_example(ex, cfg, enforced)
            if failure is not None:
                out.append(Problem(rule.file, ex.line, f"{rule.vendor}/examples[{i}]", failure))
    return out


def run_example(ex: ExampleSpec, config: GatewayConfig, rules: RuleSet) -> str | None:
    """Why `ex` fails under `config` (see `example_config`) and `rules`, or None when the
    gateway decides as it expects and forwards the fields as it says."""
    consent = {
        p: v.value
        for p, v in ex.consent.items()
        if v in (ConsentValue.GRANTED, ConsentValue.DENIED)
    }
    headers = list(ex.headers.items())
    if ex.content_type is not None:
        headers.append(("Content-Type", ex.content_type))
    req = ExplainRequest(
        url=ex.url, method=ex.method, body=ex.body or b"", consent=consent, headers=headers
    )
    try:
        _, ev = explain(req, config, rules)
    except RequestError as e:
        action, reason, out = Action.REJECT, e.message, None
    else:
        action, reason, out = ev.decision.action, ev.decision.reason, ev.outgoing
    if action is not ex.expect:
        return f"expected {ex.expect}, the gateway decides {action} ({reason})"
    if out is None:
        return None
    return _fields_failure(ex, out)


def _fields_failure(ex: ExampleSpec, out: Outgoing) -> str | None:
    leaked = [n for n in ex.removed if field_reached(out.path, out.query, out.body, n)]
    lost = [n for n in ex.kept if not field_reached(out.path, out.query, out.body, n)]
    problems = [f"removed field {n!r} reaches the vendor" for n in leaked]
    problems += [f"kept field {n!r} does not reach the vendor" for n in lost]
    return "; ".join(problems) or None


def field_reached(path: str, query: str, body: bytes, name: str) -> bool:
    """Whether field `name` is in a request as it leaves: a query, `;` path or form/batch
    body parameter, also inside a URL-valued one; or `json:dotted.path` (`[]` for every
    element of an array) in a JSON body. A name ending in `*` is a prefix."""
    if name.startswith(JSON_FIELD):
        try:
            doc: object = orjson.loads(body)
        except orjson.JSONDecodeError:
            return False
        return _json_has(doc, name[len(JSON_FIELD) :].split("."))
    prefix = name[:-1] if name.endswith("*") else None

    def hit(pairs: Sequence[tuple[str, str]]) -> bool:
        if prefix is not None:
            return any(k.startswith(prefix) for k, _ in pairs)
        return any(k == name for k, _ in pairs)

    query_pairs = parse_qsl(query, keep_blank_values=True)
    path_pairs = [(p.partition("=")[0], unquote(p.partition("=")[2])) for p in path.split(";")[1:]]
    if hit(query_pairs) or hit(path_pairs):
        return True
    for _, value in (*query_pairs, *path_pairs):
        if "?" in value and hit(parse_qsl(value.split("?", 1)[1])):
            return True
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return False
    return any(hit(parse_qsl(line, keep_blank_values=True)) for line in text.splitlines())


def _json_has(doc: object, parts: list[str]) -> bool:
    if not parts:
        return True
    head, rest = parts[0], parts[1:]
    arrays = 0
    while head.endswith("[]"):
        head, arrays = head[:-2], arrays + 1
    if head:
        if not isinstance(doc, dict) or head not in doc:
            return False
        doc = doc[head]
    values = [doc]
    for _ in range(arrays):
        values = [e for v in values if isinstance(v, list) for e in v]
    return any(_json_has(v, rest) for v in values)
