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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from gateway.errors import Problem

__all__ = [
    "DURATION_PATTERN",
    "MAX_DEPTH",
    "Fields",
    "Node",
    "YamlSource",
    "parse_duration",
    "read_source",
]

#: libyaml's parser when PyYAML has it (the C loader keeps marks), else the pure one
_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)

PathPart = str | int
E = TypeVar("E", bound=enum.Enum)
T = TypeVar("T")

#: how deep collections may nest: a rule file needs about eight levels, a config six.
#: Deeper is refused on the event stream, before anything is built from it, so a
#: hostile file costs time linear in its size (building tracks each node's path).
MAX_DEPTH = 32

#: what `parse_duration` reads from a string (also the config JSON Schema's pattern)
DURATION_PATTERN = r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$"
_DURATION = re.compile(DURATION_PATTERN)
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
        """Parse `text`; a YAML syntax error becomes a problem (data is then None).

        One pass over libyaml's event stream builds the values, checking each event
        before anything is built from it: values are what `yaml.safe_load` gives (tags
        resolved and scalars constructed by PyYAML's own resolver and safe constructor),
        but no node tree is composed first (the composer's tree and a second pass over
        the text were two thirds of loading a rule file)."""
        src = cls(file=file, data=None)
        events = yaml.parse(text, Loader=_LOADER)
        try:
            try:
                src.data = _Builder(src).document(events)
            except _Unbuildable:
                # Composing read the whole text before constructing a scalar: a syntax
                # error further on was the problem it reported. Read on to find one.
                for _ in events:
                    pass
                raise
        except _Refused as e:
            src.data, src.lines = None, {}
            src.problems[:] = [Problem(file, e.line, "", e.message)]
        except _Unbuildable as e:  # a scalar the safe constructor refuses: what was read stays
            src.data = None
            src.problems.append(Problem(file, None, "", f"YAML: {e.__cause__}"))
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            problem = getattr(e, "problem", None) or "invalid YAML"
            src.data, src.lines = None, {}
            src.problems[:] = [Problem(file, line, "", f"YAML syntax: {problem}")]
        return src

    def _construct(self, node: yaml.Node) -> Any:
        # The safe constructor resolves tags exactly as safe_load would; one per document.
        return self._constructor.construct_object(node, deep=True)

    def root(self) -> Node:
        return Node(self, (), self.data)


class _Unbuildable(Exception):
    """A scalar PyYAML's safe constructor refused (the cause)."""


class _Refused(Exception):
    """What the event stream may not hold (an anchor, an alias, too deep), at `line`."""

    def __init__(self, message: str, event: yaml.Event) -> None:
        super().__init__(message)
        self.message = message
        self.line = _line(event)


def _line(event: yaml.Event) -> int | None:
    mark = event.start_mark
    return mark.line + 1 if mark is not None else None


_STR = "tag:yaml.org,2002:str"


class _Builder:
    """Values from one stream of events, as `YamlSource.parse` describes.

    SECURITY: anchors and aliases are refused where they appear, before anything is
    built from them (an alias is how a few hundred bytes expand into gigabytes), and so
    is nesting past `MAX_DEPTH`: building is then linear in the text."""

    def __init__(self, src: YamlSource) -> None:
        self.src = src
        self.resolver = yaml.resolver.Resolver()

    def document(self, events: Iterable[yaml.Event]) -> Any:
        it = iter(events)
        data: Any = None
        documents = depth = 0
        extra: yaml.Event | None = None
        for event in it:
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents == 1:
                    data = self.value(next(it), it, (), 1)
                elif extra is None:
                    extra = event  # refused below, once the rest is checked
            elif isinstance(event, yaml.NodeEvent):  # a later document's: checked only
                depth += isinstance(event, yaml.CollectionStartEvent)
                self.check(event, depth)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        if extra is not None:
            # as the composer says it (yaml.compose takes one document)
            raise yaml.composer.ComposerError(
                "expected a single document in the stream",
                None,
                "but found another document",
                extra.start_mark,  # type: ignore[arg-type]
            )
        return data

    @staticmethod
    def check(event: yaml.Event, depth: int) -> None:
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise _Refused("YAML anchors and aliases (& and *) are not allowed", event)
        if isinstance(event, yaml.CollectionStartEvent) and depth > MAX_DEPTH:
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels", event)

    def value(
        self, event: yaml.Event, it: Iterator[yaml.Event], path: tuple[PathPart, ...], depth: int
    ) -> Any:
        self.check(event, depth)
        lines = self.src.lines
        if path not in lines:
            lines[path] = _line(event) or 0
        if isinstance(event, yaml.ScalarEvent):
            return self.scalar(event)
        if isinstance(event, yaml.SequenceStartEvent):
            out: list[Any] = []
            for item in it:
                if isinstance(item, yaml.SequenceEndEvent):
                    return out
                out.append(self.value(item, it, (*path, len(out)), depth + 1))
        elif isinstance(event, yaml.MappingStartEvent):
            mapping: dict[str, Any] = {}
            for key_event in it:
                if isinstance(key_event, yaml.MappingEndEvent):
                    return mapping
                key = self.key(key_event, it, depth + 1)
                sub = (*path, key)
                line = _line(key_event) or 0
                if key in mapping:
                    problem = Problem(self.src.file, line, _where(sub), "duplicate key")
                    self.src.problems.append(problem)
                lines[sub] = line
                mapping[key] = self.value(next(it), it, sub, depth + 1)
        raise yaml.YAMLError(f"unexpected {type(event).__name__}")  # pragma: no cover

    def key(self, event: yaml.Event, it: Iterator[yaml.Event], depth: int) -> str:
        """A mapping key as text (a number written as a key is its text form)."""
        self.check(event, depth)
        if isinstance(event, yaml.ScalarEvent):
            return str(self.scalar(event))
        # A collection as a key (YAML allows it; no config or rule has one): composed and
        # constructed as safe_load would, then its text.
        node = self.node(event, it, depth)  # a syntax error here is the text's
        try:
            return str(self.src._construct(node))
        except (yaml.YAMLError, ValueError, TypeError, RecursionError) as e:
            raise _Unbuildable from e

    def node(self, event: yaml.Event, it: Iterator[yaml.Event], depth: int) -> yaml.Node:
        """The node `yaml.compose` makes of `event` and what follows it."""
        self.check(event, depth)
        mark = event.start_mark
        if isinstance(event, yaml.ScalarEvent):
            tag = event.tag
            if tag is None or tag == "!":
                tag = self.resolver.resolve(  # type: ignore[no-untyped-call]
                    yaml.ScalarNode, event.value, event.implicit
                )
            return yaml.ScalarNode(tag, event.value, mark, mark, event.style)  # type: ignore[arg-type]
        assert isinstance(event, yaml.CollectionStartEvent)
        seq = isinstance(event, yaml.SequenceStartEvent)
        kind = yaml.SequenceNode if seq else yaml.MappingNode
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.resolver.resolve(kind, None, event.implicit)  # type: ignore[no-untyped-call]
        items: list[Any] = []
        for item in it:
            if isinstance(item, yaml.CollectionEndEvent):
                break
            child = self.node(item, it, depth + 1)
            items.append(child if seq else (child, self.node(next(it), it, depth + 1)))
        return kind(tag, items, mark, mark, flow_style=event.flow_style)  # type: ignore[arg-type]

    def scalar(self, event: yaml.ScalarEvent) -> Any:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.resolver.resolve(  # type: ignore[no-untyped-call]
                yaml.ScalarNode, event.value, event.implicit
            )
        if tag == _STR:
            return event.value
        node = yaml.ScalarNode(
            tag,
            event.value,
            event.start_mark,  # type: ignore[arg-type]
            event.end_mark,  # type: ignore[arg-type]
            event.style,
        )
        try:
            return self.src._construct(node)
        except (yaml.YAMLError, ValueError, TypeError, RecursionError) as e:
            raise _Unbuildable from e


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

    def build(self, cls: Callable[..., T], **fields: Any) -> T | None:
        """`cls(**fields)`, or None and a problem here if the spec refuses them.

        A loader checks every field first, so this is a backstop: an invariant a spec
        checks itself (`ValueError`) becomes a problem, never an exception out of it.
        """
        try:
            return cls(**fields)
        except ValueError as e:
            self.problem(str(e))
            return None

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
