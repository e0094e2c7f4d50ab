"""The vendor rule set (DESIGN §5): rule files compiled once into typed, indexed specs.

- `schema`: the specs (`VendorRule`, `EndpointSpec`, `ExampleSpec`) and their grammars.
- `keys`: every key of a rule file, declared once (`declare`: how; `grammars`: the
  strings' grammars): what `parse` reads with and `schemas/rule.schema.json` says.
- `parse`: one YAML rule file -> a `VendorRule`, or every problem in it.
- `load`: YAML rule files -> a validated `RuleSet`, or `RuleError` listing every problem.
- `match`: the index: (host, path, method) -> `Match`; routes; the host and path gates.
- `lint`: warnings about rules that load but may not do what was meant.
- `draft`: a rule drafted from what was seen of a vendor's requests (`new-rule`).

Pure: no I/O beyond reading the rule files, no aiohttp.
"""

from gateway.ruleset.load import load_rules
from gateway.ruleset.match import (
    Match,
    RuleConflict,
    RuleConflictError,
    RuleSet,
    is_safe_path,
    match_endpoint,
    normalize_host,
)
from gateway.ruleset.parse import parse_rule
from gateway.ruleset.schema import EndpointSpec, ExampleSpec, ForwardMode, VendorRule

__all__ = [
    "EndpointSpec",
    "ExampleSpec",
    "ForwardMode",
    "Match",
    "RuleConflict",
    "RuleConflictError",
    "RuleSet",
    "VendorRule",
    "is_safe_path",
    "load_rules",
    "match_endpoint",
    "normalize_host",
    "parse_rule",
]
