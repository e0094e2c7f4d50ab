"""gateway.yamlsrc: typed reads that collect every problem with file, line and key path."""

from __future__ import annotations

import enum

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.yamlsrc import YamlSource, parse_duration


class Color(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (90, 90.0),
        (1.5, 1.5),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("15m", 900.0),
        ("1h", 3600.0),
        ("180d", 180 * 86400.0),
        ("2w", 14 * 86400.0),
        (" 7 ", 7.0),
    ],
)
def test_parse_duration(text: str | int | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "-1", "1y", "1 h 2", True, -5])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)  # type: ignore[arg-type]


def test_unknown_key_names_line_path_and_suggestion() -> None:
    src = YamlSource.parse("server:\n  host: a\n  prot: 80\n", "c.yaml")
    fields = src.root().mapping(["server"])["server"].mapping(["host", "port"])
    assert fields["host"].str() == "a"
    assert fields["port"].int(8080) == 8080  # absent key reads as its default
    [problem] = src.problems
    assert str(problem) == "c.yaml:3: server.prot: unknown key (did you mean 'port'?)"


@pytest.mark.parametrize(
    ("yaml_text", "read", "message"),
    [
        ("a: x", lambda n: n.int(), "expected an integer, got a string"),
        ("a: 5", lambda n: n.int(min=10), "must satisfy 10 <= value"),
        ("a: 1", lambda n: n.str(), "expected a string, got a number"),
        ("a: yes", lambda n: n.int(), "expected an integer, got a boolean"),
        ("a: [1]", lambda n: n.bool(), "expected true or false, got a list"),
        ("a: green", lambda n: n.enum(Color, Color.RED), "must be one of: red, blue"),
        ("a: soon", lambda n: n.duration(1.0), "not a duration (use e.g. 30s, 15m, 1h, 180d)"),
        ("a: {b: 1}", lambda n: n.list(), "expected a list, got a mapping"),
        ("a: [x, 2]", lambda n: n.str_list(), "expected a string, got a number"),
    ],
)
def test_type_problems(yaml_text: str, read: object, message: str) -> None:
    src = YamlSource.parse(yaml_text, "f.yaml")
    node = src.root().mapping(["a"])["a"]
    read(node)  # type: ignore[operator]
    assert [p.message for p in src.problems] == [message]
    assert src.problems[0].line == 1


def test_duplicate_key_and_syntax_error() -> None:
    src = YamlSource.parse("a: 1\na: 2\n", "d.yaml")
    assert [(p.line, p.message) for p in src.problems] == [(2, "duplicate key")]
    bad = YamlSource.parse("a: [1, 2\n", "e.yaml")
    assert bad.data is None and bad.problems[0].message.startswith("YAML syntax")


def test_required_keys() -> None:
    src = YamlSource.parse("x: {}\n", "r.yaml")
    src.root().mapping(["x"])["x"].mapping(["id"], required=["id"])
    assert [str(p) for p in src.problems] == ["r.yaml:1: x: missing required key 'id'"]


@given(st.text(max_size=200))
def test_parse_never_raises(text: str) -> None:
    src = YamlSource.parse(text, "fuzz.yaml")
    src.root().mapping(["a", "b"])  # reading anything only records problems
