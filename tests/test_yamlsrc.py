"""gateway.yamlsrc: typed reads that collect every problem with file, line and key path."""

from __future__ import annotations

import enum
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.errors import Problem
from gateway.yamlsrc import MAX_DEPTH, YamlSource, parse_duration, read_source
from tests.conftest import BOMB, ROOT


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


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (BOMB, 1),
        ("x: 1\ny: &anchor 2\n", 2),
        ("x: 1\ny:\n  - 1\n  - &a {k: v}\n", 4),
        ("base: &b {k: v}\nother:\n  <<: *b\n", 1),
        ("x: [1, 2]\ny: *undefined\n", 2),
    ],
    ids=["billion-laughs", "scalar-anchor", "nested-anchor", "merge-key", "dangling-alias"],
)
def test_anchors_and_aliases_are_refused_with_their_line(text: str, line: int) -> None:
    src = YamlSource.parse(text, "bomb.yaml")
    assert src.data is None
    assert [str(p) for p in src.problems] == [
        f"bomb.yaml:{line}: YAML anchors and aliases (& and *) are not allowed"
    ]


@pytest.mark.parametrize(
    ("text", "refused_at"),
    [
        # the top mapping is the first level
        ("a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n", None),
        ("a: " + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "\n", 1),
        ("x: 1\na: " + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "\n", 2),
        ("a: " + "[" * 900 + "]" * 900 + "\n", 1),  # below libyaml's own limit (1000)
        ("".join(f"{' ' * i}k{i}:\n" for i in range(MAX_DEPTH + 1)) + " " * 40 + "v\n", 33),
        ("- [{a: [{b: 1}]}]\n" * 3, None),
    ],
    ids=["at-limit", "over-limit", "over-limit-line-2", "900-deep", "block-style", "wide"],
)
def test_nesting_past_max_depth_is_refused_with_its_line(text: str, refused_at: int | None) -> None:
    src = YamlSource.parse(text, "deep.yaml")
    if refused_at is None:
        assert src.problems == [] and src.data is not None
    else:
        assert src.data is None
        assert [str(p) for p in src.problems] == [
            f"deep.yaml:{refused_at}: nested deeper than {MAX_DEPTH} levels"
        ]


def test_an_ampersand_or_star_inside_a_string_is_not_an_anchor() -> None:
    src = YamlSource.parse('a: "&x"\nb: "*y"\nc: a&b*c\n', "ok.yaml")
    assert src.problems == [] and src.data == {"a": "&x", "b": "*y", "c": "a&b*c"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"a: 1\nb: caf\xe9\n", "p.yaml:2: not UTF-8 text (save the file as UTF-8)"),
        (b"\xff\xfe", "p.yaml:1: not UTF-8 text (save the file as UTF-8)"),
    ],
)
def test_read_source_reports_non_utf8_with_its_line(
    tmp_path: Path, raw: bytes, message: str
) -> None:
    (tmp_path / "p.yaml").write_bytes(raw)
    problem = read_source(tmp_path / "p.yaml")
    assert isinstance(problem, Problem)
    assert str(problem) == message.replace("p.yaml", str(tmp_path / "p.yaml"))


def test_read_source_missing_file(tmp_path: Path) -> None:
    problem = read_source(tmp_path / "nope.yaml")
    assert isinstance(problem, Problem) and "cannot read" in problem.message


# Linear cost: one structure repeated n and 8n times (a regression to per-scalar loaders or a
# quadratic duplicate-key check shows up as far more than 8x). CPU time of this thread,
# not the wall clock: other processes (test workers, browsers) must not make it fail.
def test_parse_cost_is_linear_in_size() -> None:
    def cost(n: int) -> float:
        text = "".join(f"k{i}: {{a: [1, 2, x], b: 'v'}}\n" for i in range(n))
        started = time.thread_time()
        src = YamlSource.parse(text, "big.yaml")
        assert src.problems == [] and len(src.data) == n
        return time.thread_time() - started

    cost(200)  # warm-up
    small, large = min(cost(500) for _ in range(3)), min(cost(4000) for _ in range(3))
    assert large < small * 30


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=30,
    )
)
def test_parse_round_trips_what_safe_dump_writes(value: object) -> None:
    text = yaml.safe_dump({"v": value})
    src = YamlSource.parse(text, "rt.yaml")
    assert src.problems == [] and src.data == yaml.safe_load(text)


# --- one pass over the events: what composing a node tree first gave -------------------------


def _composed(text: str, file: str) -> YamlSource:
    """The parse as it was before the one-pass builder: refusals on the event stream,
    then `yaml.compose` and a walk of its node tree (kept here as the reference)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    src = YamlSource(file=file, data=None)
    try:
        depth = 0
        for event in yaml.parse(text, Loader=loader):
            refused = None
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                refused = "YAML anchors and aliases (& and *) are not allowed"
            elif isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    refused = f"nested deeper than {MAX_DEPTH} levels"
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            if refused is not None:
                mark = event.start_mark
                src.problems.append(Problem(file, mark.line + 1 if mark else None, "", refused))
                return src
        node = yaml.compose(text, Loader=loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or "invalid YAML"
        line = mark.line + 1 if mark is not None else None
        src.problems.append(Problem(file, line, "", f"YAML syntax: {problem}"))
        return src
    if node is None:
        return src
    constructor = yaml.constructor.SafeConstructor()

    def build(node: yaml.Node, path: tuple[str | int, ...]) -> object:
        src.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, object] = {}
            for key_node, value_node in node.value:
                key = str(constructor.construct_object(key_node, deep=True))
                sub = (*path, key)
                if key in out:
                    src.problems.append(
                        Problem(file, key_node.start_mark.line + 1, _where(sub), "duplicate key")
                    )
                src.lines[sub] = key_node.start_mark.line + 1
                out[key] = build(value_node, sub)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [build(n, (*path, i)) for i, n in enumerate(node.value)]
        return constructor.construct_object(node, deep=True)

    try:
        src.data = build(node, ())
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as e:
        src.problems.append(Problem(file, None, "", f"YAML: {e}"))
    return src


def _where(path: tuple[str | int, ...]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _same(text: str) -> None:
    built, composed = YamlSource.parse(text, "f.yaml"), _composed(text, "f.yaml")
    assert (built.data, built.lines, built.problems) == (
        composed.data,
        composed.lines,
        composed.problems,
    )


_CORPUS = sorted(
    [*(ROOT / "rules").glob("*.yaml"), ROOT / "config.example.yaml"], key=lambda p: p.name
)


@pytest.mark.parametrize("path", _CORPUS, ids=lambda p: p.name)
def test_every_shipped_file_parses_as_composing_did(path: Path) -> None:
    _same(path.read_text())


@pytest.mark.parametrize(
    "text",
    [
        "",
        "---\n",
        "a: 1\n---\nb: 2\n",
        "a: 1\n---\nb: &x 2\n",
        "a: 1\n---\n" + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n",
        "a: 1\na: 2\nb: {c: 1, c: 2}\n",
        "1: one\ntrue: yes\n1.5: x\nnull: n\n? [a, b]\n: seq key\n? {k: v}\n: map key\n",
        "a: !!str 12\nb: !!int '12'\nc: !!float 1\nd: !!binary aGk=\ne: !!timestamp 2020-01-01\n",
        "a: !custom x\n",
        "a: !!int nope\n",
        "<<: {a: 1}\n",
        "a: [1, {b: [2, {c: 3}]}]\n",
        "a: 'x'\nb: \"y\"\nc: |\n  block\nd: >\n  folded\n",
        "a: [1, 2\n",
        "\t- bad indent",
        "x: 1\ny: &anchor 2\n",
        BOMB,
    ],
)
def test_edge_cases_parse_as_composing_did(text: str) -> None:
    _same(text)


_TOKENS = st.sampled_from(
    ["a", "b", "1", "true", "null", "~", "'q'", '"d"', ":", ": ", "- ", "\n", "  ", "[", "]"]
    + ["{", "}", ", ", "#c", "&x ", "*x", "!!str ", "---\n", "? ", "1.5", "0x1F", "2020-01-01"]
)


@settings(max_examples=500)
@given(st.lists(_TOKENS, max_size=40).map("".join))
# a scalar refused before a syntax error: composing reported the syntax error
@example("[!!str []:")
def test_any_text_parses_as_composing_did(text: str) -> None:
    _same(text)
