"""gateway.ruleset.declare: keys declared once, read by the parser and written as schema."""

from __future__ import annotations

import enum
from typing import Any

import pytest

from gateway.grammar import VENDOR_ID
from gateway.ruleset.declare import (
    Anything,
    Block,
    Choice,
    Flag,
    Integer,
    Items,
    Key,
    Names,
    Needs,
    Nested,
    PurposeMap,
    Text,
    TextMap,
    Value,
    When,
    strings,
)
from gateway.yamlsrc import YamlSource


class Colour(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


class Inner(Block):
    """An inner mapping.

    Only its first paragraph describes it.
    """

    ref = "inner"
    size = Key(Integer(1, 9), "a size", required=True)
    secret = Key(Flag(), "only in the variant", when_denied_only=True)


class Outer(Block):
    """An outer mapping."""

    ref = "outer"
    one_of = ("a", "b")
    exclusive = ("b", "c")
    rules = (When("colour", ("red",), "c"), Needs("d", "a"))
    name = Key(Text(VENDOR_ID), "a slug", required=True)
    colour = Key(Choice(Colour, Colour.BLUE), "a colour")
    tags = Key(Names(VENDOR_ID, empty="at least one tag", unique=True), "tags")
    a = Key(Flag(True), "a")
    b = Key(Nested(Inner), "b")
    c = Key(Items(Nested(Inner, when_denied=True), empty="at least one c"), "c")
    d = Key(PurposeMap(Choice(Colour), necessary=False), "d")
    e = Key(TextMap(), "e")
    f = Key(Anything(), "f")


def _read(text: str) -> tuple[YamlSource, Any]:
    src = YamlSource.parse(text, "f.yaml")
    return src, Outer.mapping(src.root())


def test_keys_are_named_by_their_attribute_in_order() -> None:
    assert Outer.names() == ("name", "colour", "tags", "a", "b", "c", "d", "e", "f")
    assert Outer.required() == ("name",)
    assert repr(Outer.name) == "Key('name')"
    assert Inner.names() == ("size", "secret")


def test_mapping_reports_unknown_and_missing_keys() -> None:
    src, _ = _read("nme: x\n")
    assert [str(p) for p in src.problems] == [
        "f.yaml:1: nme: unknown key (did you mean 'name'?)",
        "f.yaml:1: missing required key 'name'",
    ]


@pytest.mark.parametrize(
    ("text", "tags", "problems"),
    [
        ("tags: a-b\n", {"a-b"}, []),
        ("tags: [a, b]\n", {"a", "b"}, []),
        ("tags: []\n", set(), ["f.yaml:1: tags: at least one tag"]),
        ("tags: [a, B]\n", {"a"}, ["f.yaml:1: tags[1]: must be a lower-case slug"]),
        ("tags: ['']\n", set(), ["f.yaml:1: tags[0]: must not be empty"]),
        ("tags: {a: 1}\n", set(), ["f.yaml:1: tags: expected a list, got a mapping"]),
    ],
)
def test_names_are_read_with_their_grammar(text: str, tags: set[str], problems: list[str]) -> None:
    src, m = _read("name: x\n" + text)
    assert Outer.tags.read(m) == tags
    found = [str(p).replace("f.yaml:2:", "f.yaml:1:") for p in src.problems]
    assert len(found) == len(problems), found
    assert all(f.startswith(x) for f, x in zip(found, problems, strict=True)), found


def test_strings_takes_one_string_as_a_list() -> None:
    src = YamlSource.parse("a: x\nb: [y, '', 3]\n", "f.yaml")
    fields = src.root().mapping(["a", "b"])
    assert [v for v, _ in strings(fields["a"])] == ["x"]
    assert [v for v, _ in strings(fields["b"])] == ["y"]
    assert [p.where for p in src.problems] == ["b[1]", "b[2]"]


def test_a_key_reads_its_scalar_with_its_default_or_a_fallback() -> None:
    src, m = _read("name: Bad\ncolour: green\n")
    assert Outer.name.read(m) == "Bad"  # read as written, the problem recorded
    assert Outer.colour.read(m) is Colour.BLUE
    assert Outer.colour.read(m, Colour.RED) is Colour.RED
    assert Outer.a.read(m) is True
    assert [p.where for p in src.problems] == ["name", "colour", "colour"]  # read twice
    assert Outer.name.check("ok") is None and Outer.name.check("Bad") is not None
    assert Outer.colour.check("anything") is None  # no grammar


def test_an_integer_is_read_within_its_bounds() -> None:
    src = YamlSource.parse("size: 10\n", "f.yaml")
    m = Inner.mapping(src.root())
    assert Inner.size.read(m, 5) == 5
    assert [p.message for p in src.problems] == ["must satisfy 1 <= value <= 9"]


def test_a_choice_without_a_default_needs_a_fallback() -> None:
    src, m = _read("name: x\n")
    with pytest.raises(AssertionError):
        Key(Choice(Colour), "no default").read(m)


def test_a_block_as_json_schema() -> None:
    schema = Outer.schema()
    assert schema["description"] == "An outer mapping."
    assert schema["additionalProperties"] is False and schema["required"] == ["name"]
    assert schema["oneOf"] == [{"required": ["a"]}, {"required": ["b"]}]
    assert schema["not"] == {"required": ["b", "c"]}
    props = schema["properties"]
    assert props["name"] == {
        **VENDOR_ID.schema(),
        "description": f"a slug — {VENDOR_ID.description}",
    }
    assert props["colour"] == {
        "description": "a colour",
        "type": "string",
        "enum": ["red", "blue"],
        "default": "blue",
    }
    assert props["tags"]["minItems"] == 1 and props["tags"]["uniqueItems"] is True
    assert props["a"]["default"] is True
    assert props["b"] == {"description": "b", "$ref": "#/$defs/inner"}
    assert props["c"]["items"] == {"$ref": "#/$defs/inner_when_denied"}
    assert props["c"]["minItems"] == 1
    assert props["d"]["propertyNames"] == {
        "pattern": PurposeMap(Flag()).schema()["propertyNames"]["pattern"],
        "not": {"const": "necessary"},
    }
    assert props["e"]["additionalProperties"] == {"type": "string"}
    assert props["f"] == {"description": "f"}
    assert Inner.schema()["description"] == "An inner mapping."
    assert "secret" not in Inner.schema()["properties"]
    assert "secret" in Inner.schema(when_denied=True)["properties"]


def test_a_variant_is_named_only_where_it_differs() -> None:
    assert Nested(Inner, when_denied=True).ref == "inner_when_denied"
    assert Nested(Outer, when_denied=True).ref == "outer"
    assert [n.ref for n in Outer.c.type.nested()] == ["inner_when_denied"]
    assert [n.ref for n in Outer.d.type.nested()] == []


@pytest.mark.parametrize(
    ("value", "then_value", "refused"),
    [("red", None, True), ("blue", None, False), ("red", "x", True)],
)
def test_when_refuses_a_key_where_another_holds_a_value(
    value: str, then_value: str | None, refused: bool
) -> None:
    assert When("colour", ("red",), "c").refuses(value, then_value) is refused


def test_when_may_allow_some_values() -> None:
    rule = When("kind", ("websocket",), "mode", ("sync",))
    assert not rule.refuses("websocket", "sync") and rule.refuses("websocket", "async")
    assert rule.schema() == {
        "if": {"required": ["kind"], "properties": {"kind": {"enum": ["websocket"]}}},
        "then": {"properties": {"mode": {"enum": ["sync"]}}},
    }
    assert Needs("d", "a").schema() == {
        "if": {"not": {"required": ["a"]}},
        "then": {"properties": {"d": {"not": {}}}},
    }


def test_a_value_type_must_say_its_schema() -> None:
    with pytest.raises(NotImplementedError):
        Value().schema()
    assert Value().default() is None and list(Value().nested()) == []
