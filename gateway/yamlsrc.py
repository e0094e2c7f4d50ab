"""Read YAML into typed values while collecting every problem with its line.

Config and rule files are validated the same way: each value is reached through
a `Node` that knows its key path and line; a wrong value records a `Problem`
and yields a fallback, so one run reports every problem at once
(`file:line: path: message`). The caller raises `ConfigError` when
`source.problems` is non-empty.

Anchors and aliases are refused before anything is built: config and rules have
no use for them, and an alias is how a few hundred bytes expand into gigabytes
("billion laughs"). With them gone, the cost of a parse is linear in the text.
Parsing uses libyaml (`CSafeLoader`) where PyYAML was built with it.
"""

from __future__ import annotations

import builtins
import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from gateway.errors import Problem

__all__ = ["MAX_DEPTH", "Fields", "Node", "YamlSource", "parse_duration", "read_source"]

#: libyaml's parser when PyYAML has it (the C loader keeps marks), else the pure one
_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)

PathPart = str | int
E = TypeVar("E", bound=enum.Enum)

#: how deep collections may nest: a rule file needs about eight levels, a config six.
#: Deeper is refused on the event stream, before anything is built from it, so a
#: hostile file costs time linear in its size (building tracks each node's path).
MAX_DEPTH = 32

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, None: 1.0}


def parse_duration(text: str | int | float) -> float:
    """Seconds from `90`, `1.5`, `500ms`, `30s`, `15m`, `1h`, `180d` or `2w`.

    Raises ValueError for anything else.
    """
    if isinstance(text, bool):
        raise ValueError("not a duration")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError("negative duration")
        return float(text)
    m = _DURATION.match(text)
    if not m:
        raise ValueError("not a duration (use e.g. 30s, 15m, 1h, 180d)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def read_source(path: Path) -> str | Problem:
    """The text of the config or rule file at `path`, or the one-line problem reading it."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        return Problem(str(path), None, "", f"cannot read: {e.strerror}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        return Problem(str(path), line, "", "not UTF-8 text (save the file as UTF-8)")


@dataclass
class YamlSource:
    """One parsed YAML document: the plain value, the line of each key path, problems."""

    file: str
    data: Any
    lines: dict[tuple[PathPart, ...], int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    _constructor: yaml.constructor.SafeConstructor = field(
        default_factory=yaml.constructor.SafeConstructor, repr=False, compare=False
    )

    @classmethod
    def parse(cls, text: str, file: str) -> YamlSource:
        """Parse `text`; a YAML syntax error becomes a problem (data is then None)."""
        src = cls(file=file, data=None)
        try:
            # SECURITY: refuse anchors and aliases on the event stream, before composing:
            # a composed alias is a shared node that `_build` would expand once per use.
            depth = 0
            for event in yaml.parse(text, Loader=_LOADER):
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
                    line = mark.line + 1 if mark is not None else None
                    src.problems.append(Problem(file, line, "", refused))
                    return src
            node = yaml.compose(text, Loader=_LOADER)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            problem = getattr(e, "problem", None) or "invalid YAML"
            src.problems.append(Problem(file, line, "", f"YAML syntax: {problem}"))
            return src
        if node is None:
            src.data = None
            return src
        try:
            src.data = src._build(node, ())
        except (yaml.YAMLError, ValueError, TypeError, RecursionError) as e:
            src.problems.append(Problem(file, None, "", f"YAML: {e}"))
        return src

    def _build(self, node: yaml.Node, path: tuple[PathPart, ...]) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self._construct(key_node)
                if isinstance(key, str | int | bool | float) and not isinstance(key, bool):
                    k: Any = key
                else:
                    k = str(key)
                sub = (*path, str(k))
                if str(k) in out:
                    self.problems.append(
                        Problem(
                            self.file, key_node.start_mark.line + 1, _where(sub), "duplicate key"
                        )
                    )
                self.lines[sub] = key_node.start_mark.line + 1
                out[str(k)] = self._build(value_node, sub)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self._build(n, (*path, i)) for i, n in enumerate(node.value)]
        return self._construct(node)

    def _construct(self, node: yaml.Node) -> Any:
        # The safe constructor resolves tags exactly as safe_load would; one per document.
        return self._constructor.construct_object(node, deep=True)

    def root(self) -> Node:
        return Node(self, (), self.data)


def _where(path: tuple[PathPart, ...]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


class Node:
    """A value at a key path of a `YamlSource`; typed accessors record problems."""

    __slots__ = ("src", "path", "value")

    def __init__(self, src: YamlSource, path: tuple[PathPart, ...], value: Any) -> None:
        self.src = src
        self.path = path
        self.value = value

    # -- bookkeeping -------------------------------------------------------
    @property
    def where(self) -> str:
        return _where(self.path)

    @property
    def line(self) -> int | None:
        for i in range(len(self.path), -1, -1):
            line = self.src.lines.get(self.path[:i])
            if line is not None:
                return line
        return None

    def problem(self, message: str, where: str | None = None) -> None:
        self.src.problems.append(
            Problem(self.src.file, self.line, self.where if where is None else where, message)
        )

    def child(self, key: PathPart, value: Any) -> Node:
        return Node(self.src, (*self.path, key), value)

    @property
    def missing(self) -> bool:
        return self.value is None

    # -- structure ---------------------------------------------------------
    def mapping(self, allowed: Iterable[str], required: Iterable[str] = ()) -> Fields:
        """The mapping's entries as nodes; unknown and missing keys are problems.

        Indexing an absent key gives an empty node, whose accessors return their
        defaults; `key in fields` tells whether the author wrote it. Not a
        mapping: a problem, and no entries.
        """
        out = Fields(self)
        if self.value is None:
            value: dict[str, Any] = {}
        elif not isinstance(self.value, dict):
            self.problem(f"expected a mapping, got {_kind(self.value)}")
            return out
        else:
            value = self.value
        allowed_set = set(allowed)
        for k, v in value.items():
            node = self.child(k, v)
            if k not in allowed_set:
                hint = _close_match(k, allowed_set)
                node.problem(
                    "unknown key" + (f" (did you mean {hint!r}?)" if hint else ""),
                )
                continue
            out[k] = node
        for k in required:
            if k not in value or value[k] is None:
                self.problem(f"missing required key {k!r}")
        return out

    def items(self) -> list[tuple[str, Node]]:
        """Entries of a free-form mapping (keys chosen by the author)."""
        if self.value is None:
            return []
        if not isinstance(self.value, dict):
            self.problem(f"expected a mapping, got {_kind(self.value)}")
            return []
        return [(str(k), self.child(str(k), v)) for k, v in self.value.items()]

    def list(self) -> list[Node]:
        if self.value is None:
            return []
        if not isinstance(self.value, list):
            self.problem(f"expected a list, got {_kind(self.value)}")
            return []
        return [self.child(i, v) for i, v in enumerate(self.value)]

    # -- scalars -----------------------------------------------------------
    def str(self, default: str = "") -> str:
        if isinstance(self.value, str):
            return self.value
        if self.value is None:
            return default
        self.problem(f"expected a string, got {_kind(self.value)}")
        return default

    def opt_str(self) -> builtins.str | None:
        return None if self.value is None else self.str()

    def int(self, default: int = 0, *, min: int | None = None, max: int | None = None) -> int:
        v = self.value
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int):
            self.problem(f"expected an integer, got {_kind(v)}")
            return default
        if (min is not None and v < min) or (max is not None and v > max):
            lo = "" if min is None else f"{min} <= "
            hi = "" if max is None else f" <= {max}"
            self.problem(f"must satisfy {lo}value{hi}")
            return default
        return v

    def float(self, default: float = 0.0, *, min: float | None = None) -> float:
        v = self.value
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int | float):
            self.problem(f"expected a number, got {_kind(v)}")
            return default
        if min is not None and v < min:
            self.problem(f"must be >= {min}")
            return default
        return float(v)

    def bool(self, default: builtins.bool = False) -> builtins.bool:
        if self.value is None:
            return default
        if isinstance(self.value, bool):
            return self.value
        self.problem(f"expected true or false, got {_kind(self.value)}")
        return default

    def duration(self, default: builtins.float) -> builtins.float:
        """Seconds, from a number or a string such as `30s`, `15m`, `180d`."""
        if self.value is None:
            return default
        try:
            return parse_duration(self.value)
        except (ValueError, TypeError) as e:
            self.problem(str(e))
            return default

    def enum(self, cls: builtins.type[E], default: E) -> E:
        if self.value is None:
            return default
        try:
            return cls(self.value)
        except ValueError:
            choices = ", ".join(str(m.value) for m in cls)
            self.problem(f"must be one of: {choices}")
            return default

    def str_list(self) -> builtins.list[builtins.str]:
        """A list of strings; a single string is accepted as a one-item list."""
        if isinstance(self.value, str):
            return [self.value]
        out: builtins.list[builtins.str] = []
        for n in self.list():
            s = n.str()
            if s:
                out.append(s)
        return out


class Fields(dict[str, Node]):
    """The entries of a validated mapping; an absent key reads as an empty node."""

    def __init__(self, parent: Node) -> None:
        super().__init__()
        self.parent = parent

    def __missing__(self, key: str) -> Node:
        return self.parent.child(key, None)


def _kind(v: Any) -> str:
    if v is None:
        return "nothing"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int | float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    return type(v).__name__


def _close_match(word: str, choices: set[str]) -> str | None:
    import difflib

    m = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return m[0] if m else None
