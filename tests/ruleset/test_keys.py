"""gateway.ruleset.keys: every key of a rule file declared once, read and written from there."""

from __future__ import annotations

import pytest

from gateway.config import DEFAULT_PURPOSES
from gateway.errors import Problem
from gateway.ruleset.declare import Block, Needs, When
from gateway.ruleset.keys import (
    API_DROP_ANSWER,
    LIVE_WEBSOCKET,
    DropAnswerKeys,
    EndpointKeys,
    ExampleKeys,
    MatchKeys,
    RuleKeys,
    StripKeys,
    rule_schema,
)
from gateway.ruleset.parse import parse_rule

BLOCKS: list[type[Block]] = [
    RuleKeys,
    EndpointKeys,
    MatchKeys,
    StripKeys,
    DropAnswerKeys,
    ExampleKeys,
]


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.__name__)
def test_every_key_is_described_and_in_its_schema(block: type[Block]) -> None:
    schema = block.schema(when_denied=True)
    assert schema["additionalProperties"] is False
    assert list(schema["properties"]) == list(block.names())
    for key in block.keys():
        assert key.name and key.help, key
        assert schema["properties"][key.name]["description"].startswith(key.help)
    assert schema.get("required", []) == list(block.required())
    assert block.__doc__


def test_keys_are_named_by_their_attribute_in_file_order() -> None:
    assert RuleKeys.names()[:4] == ("vendor", "name", "tcf_vendor_id", "hosts")
    assert RuleKeys.required() == ("vendor", "name", "hosts", "purposes", "endpoints", "examples")
    assert EndpointKeys.required() == ("id", "match", "kind")
    assert repr(RuleKeys.vendor) == "Key('vendor')"


def test_keep_is_a_when_denied_strips_only() -> None:
    assert "keep" not in StripKeys.schema()["properties"]
    assert "keep" in StripKeys.schema(when_denied=True)["properties"]
    defs = rule_schema()["$defs"]
    assert "keep" in defs["strip_when_denied"]["properties"]
    assert "keep" not in defs["strip"]["properties"]
    assert defs["endpoint"]["properties"]["always"]["$ref"] == "#/$defs/strip"


def test_the_rule_schema_defines_every_block_it_refers_to() -> None:
    schema = rule_schema()
    assert sorted(schema["$defs"]) == sorted(
        ["drop_answer", "endpoint", "example", "match", "strip", "strip_when_denied"]
    )
    text = repr(schema)
    for ref in schema["$defs"]:
        assert f"'#/$defs/{ref}'" in text


@pytest.mark.parametrize(
    ("rule", "kind", "value", "refused"),
    [
        (API_DROP_ANSWER, "api", None, False),
        (API_DROP_ANSWER, "beacon", None, True),
        (LIVE_WEBSOCKET, "websocket", "sync", False),
        (LIVE_WEBSOCKET, "websocket", "async", True),
        (LIVE_WEBSOCKET, "beacon", "async", False),
    ],
)
def test_when(rule: When, kind: str, value: str | None, refused: bool) -> None:
    assert rule.refuses(kind, value) is refused


def test_rules_between_keys_are_in_the_schema() -> None:
    endpoint = EndpointKeys.schema()
    assert API_DROP_ANSWER.schema() in endpoint["allOf"]
    assert API_DROP_ANSWER.schema()["then"] == {"properties": {"drop_answer": {"not": {}}}}
    assert LIVE_WEBSOCKET.schema()["then"] == {"properties": {"forward_mode": {"enum": ["sync"]}}}
    assert Needs("route_host", "route").schema() in RuleKeys.schema()["allOf"]
    assert MatchKeys.schema()["oneOf"] == [
        {"required": ["path"]},
        {"required": ["path_prefix"]},
        {"required": ["path_regex"]},
    ]
    assert DropAnswerKeys.schema()["not"] == {"required": ["json", "text"]}


def test_the_parser_reports_the_declared_messages() -> None:
    text = "vendor: v\nname: V\nhosts: []\npurposes: []\nendpoints: []\nexamples: []\n"
    _, problems = parse_rule(text, "r.yaml", frozenset(DEFAULT_PURPOSES))
    assert {(p.where, p.message) for p in problems} >= {
        ("v/hosts", RuleKeys.hosts.type.empty),
        ("v/purposes", RuleKeys.purposes.type.empty),
        ("v/endpoints", RuleKeys.endpoints.type.empty),
        ("v/examples", RuleKeys.examples.type.empty),
    }
    assert all(isinstance(p, Problem) for p in problems)
