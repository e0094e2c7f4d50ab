"""How a rule file's keys are declared: value types, `Key`, `Block`, rules between keys.

`gateway.ruleset.keys` declares every mapping of a rule file as a `Block` subclass whose
class attributes are its `Key`s, in the order `rules/README.md` documents them; each key
has a type (`Text`, `Integer`, `Flag`, `Choice`, `Names` of a `Grammar`, a `Nested` block,
`Items` of one, a `PurposeMap`, ...) and a help text. Two readers share a declaration:

- `gateway.ruleset.parse` reads a mapping through its block (`Block.mapping`: the keys it
  allows and requires) and each scalar with its key (`Key.read`: the type's conversion,
  the grammar's check, the declared problem of an empty list), recording every problem
  at its node;
- `gateway.ruleset.keys.rule_schema` writes them as JSON Schema (`Block.schema`,
  `Key.schema`), for editors.

Rules between keys that a JSON Schema can say are declared on the block (`Block.one_of`,
`Block.exclusive`, `When`, `Needs`); the parser reports each with its own message.

Pure: no I/O.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from gateway.grammar import PURPOSE, Grammar, Json, described, one_or_list
from gateway.model import NECESSARY
from gateway.yamlsrc import Fields, Node

__all__ = [
    "Anything",
    "Block",
    "Choice",
    "Flag",
    "Integer",
    "Items",
    "Key",
    "Names",
    "Needs",
    "Nested",
    "PurposeMap",
    "Scalar",
    "Text",
    "TextMap",
    "Value",
    "When",
    "strings",
]

V = TypeVar("V")
E = TypeVar("E", bound=enum.Enum)
T_co = TypeVar("T_co", bound="Value", covariant=True)


def strings(node: Node) -> list[tuple[str, Node]]:
    """A list of non-empty strings with their nodes; a single string is a one-item list."""
    items = [node] if isinstance(node.value, str) else node.list()
    out: list[tuple[str, Node]] = []
    for item in items:
        value = item.str()
        if value:
            out.append((value, item))
        elif isinstance(item.value, str):
            item.problem("must not be empty")
    return out


class Value:
    """A key's type: what its value may be, as a JSON Schema."""

    __slots__ = ()

    def schema(self) -> Json:
        raise NotImplementedError

    def default(self) -> Any:
        """The documented default, as JSON; None: none."""
        return None

    def nested(self) -> Iterator[Nested]:
        """The blocks this type holds (the schema defines each once)."""
        return iter(())


class Scalar(Value, Generic[V]):
    """A type the parser reads with `read`: a problem is recorded at the node."""

    __slots__ = ()

    def read(self, node: Node, fallback: V | None = None) -> V:
        """The value at `node`; where it is absent or wrong, `fallback` (else the type's
        default), with the problem recorded at the node."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Text(Scalar[str]):
    """A string, of `grammar` when it has one (an empty string is left to the parser)."""

    grammar: Grammar | None = None
    default_value: str | None = None

    def read(self, node: Node, fallback: str | None = None) -> str:
        value = node.str()
        if value and self.grammar is not None and (error := self.grammar.error(value)):
            node.problem(error)
        return value

    def schema(self) -> Json:
        return {"type": "string"} if self.grammar is None else self.grammar.schema()

    def default(self) -> Any:
        return self.default_value


@dataclass(frozen=True, slots=True)
class Integer(Scalar[int]):
    """An integer within `min`..`max` (a boolean is not one)."""

    min: int
    max: int

    def read(self, node: Node, fallback: int | None = None) -> int:
        return node.int(fallback or 0, min=self.min, max=self.max)

    def schema(self) -> Json:
        return {"type": "integer", "minimum": self.min, "maximum": self.max}


@dataclass(frozen=True, slots=True)
class Flag(Scalar[bool]):
    """`true` or `false`."""

    default_value: bool = False

    def read(self, node: Node, fallback: bool | None = None) -> bool:
        return node.bool(self.default_value if fallback is None else fallback)

    def schema(self) -> Json:
        return {"type": "boolean"}

    def default(self) -> Any:
        return self.default_value


@dataclass(frozen=True, slots=True)
class Choice(Scalar[E]):
    """One of an enum's values; `default_value` None: the key has no documented default
    (the parser passes the value to fall back on)."""

    cls: type[E]
    default_value: E | None = None

    def read(self, node: Node, fallback: E | None = None) -> E:
        default = self.default_value if fallback is None else fallback
        assert default is not None, "a Choice without a default is read with a fallback"
        return node.enum(self.cls, default)

    def schema(self) -> Json:
        return {"type": "string", "enum": [m.value for m in self.cls]}

    def default(self) -> Any:
        return None if self.default_value is None else self.default_value.value


@dataclass(frozen=True, slots=True)
class Names(Scalar[frozenset[str]]):
    """A list of names, each of `grammar`; one name alone is a one-item list."""

    grammar: Grammar
    #: the problem when it is written as an empty list; None: an empty list is fine
    empty: str | None = None
    #: a name may be listed once (the parser reports which)
    unique: bool = False
    default_value: tuple[str, ...] | None = None

    def read(self, node: Node, fallback: frozenset[str] | None = None) -> frozenset[str]:
        out: set[str] = set()
        for value, item in strings(node):
            if error := self.grammar.error(value):
                item.problem(error)
            else:
                out.add(value)
        self.check_empty(node)
        return frozenset(out)

    def check_empty(self, node: Node) -> None:
        if self.empty is not None and node.value == []:
            node.problem(self.empty)

    def schema(self) -> Json:
        return one_or_list(
            self.grammar.schema(), at_least_one=self.empty is not None, unique=self.unique
        )

    def default(self) -> Any:
        return None if self.default_value is None else list(self.default_value)


@dataclass(frozen=True, slots=True)
class Nested(Value):
    """A mapping of the keys of `block`; `when_denied`: as a `when_denied` entry."""

    block: type[Block]
    when_denied: bool = False

    @property
    def ref(self) -> str:
        variant = self.when_denied and any(k.when_denied_only for k in self.block.keys())
        return self.block.ref + ("_when_denied" if variant else "")

    def schema(self) -> Json:
        return {"$ref": f"#/$defs/{self.ref}"}

    def nested(self) -> Iterator[Nested]:
        yield self


@dataclass(frozen=True, slots=True)
class Items(Value):
    """A list of mappings of the keys of `item.block`."""

    item: Nested
    empty: str | None = None

    def check_empty(self, node: Node) -> None:
        if self.empty is not None and node.value == []:
            node.problem(self.empty)

    def schema(self) -> Json:
        out: Json = {"type": "array", "items": self.item.schema()}
        if self.empty is not None:
            out["minItems"] = 1
        return out

    def nested(self) -> Iterator[Nested]:
        yield self.item


@dataclass(frozen=True, slots=True)
class PurposeMap(Value, Generic[T_co]):
    """A mapping of purposes to `value`; `necessary` only when `necessary` is true."""

    value: T_co
    necessary: bool = True

    def schema(self) -> Json:
        names: Json = {"pattern": PURPOSE.pattern}
        if not self.necessary:
            names["not"] = {"const": NECESSARY}
        return {
            "type": "object",
            "propertyNames": names,
            "additionalProperties": self.value.schema(),
        }

    def nested(self) -> Iterator[Nested]:
        return self.value.nested()


@dataclass(frozen=True, slots=True)
class TextMap(Value):
    """A mapping of names to strings (request headers)."""

    def schema(self) -> Json:
        return {"type": "object", "additionalProperties": {"type": "string"}}


@dataclass(frozen=True, slots=True)
class Anything(Value):
    """Any JSON value."""

    def schema(self) -> Json:
        return {}


class Key(Generic[T_co]):
    """One key of a `Block`: named by the class attribute it is assigned to."""

    __slots__ = ("name", "type", "help", "required", "when_denied_only")

    def __init__(
        self, type: T_co, help: str, *, required: bool = False, when_denied_only: bool = False
    ) -> None:
        self.name = ""
        self.type = type
        self.help = help
        self.required = required
        #: a strip block's key that only a `when_denied` entry may hold
        self.when_denied_only = when_denied_only

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Key({self.name!r})"

    def read(self: Key[Scalar[V]], fields: Fields, fallback: V | None = None) -> V:
        """The value written under this key in `fields` (a problem is recorded there)."""
        return self.type.read(fields[self.name], fallback)

    def check(self, value: str) -> str | None:
        """The problem with `value` by this key's grammar (a `Text` or `Names`), or None."""
        grammar = getattr(self.type, "grammar", None)
        return grammar.error(value) if isinstance(grammar, Grammar) else None

    def schema(self) -> Json:
        out = described(self.help, self.type.schema())
        default = None if self.required else self.type.default()
        if default is not None:
            out["default"] = default
        return out


#: what no value satisfies: the key may not be written (editors read `false` so; written
#: out because jsonschema, which the tests use, puts a `false` key's error at its mapping)
_NOTHING: Json = {"not": {}}


@dataclass(frozen=True, slots=True)
class When:
    """Where `key` holds one of `values`, `then` may hold only one of `allowed` (may not
    be written at all when `allowed` is empty)."""

    key: str
    values: tuple[str, ...]
    then: str
    allowed: tuple[str, ...] = ()

    def refuses(self, value: str, then_value: str | None = None) -> bool:
        """Whether `then` written (as `then_value`) is refused where `key` holds `value`."""
        return value in self.values and (not self.allowed or then_value not in self.allowed)

    def schema(self) -> Json:
        then: Json = {"enum": list(self.allowed)} if self.allowed else _NOTHING
        return {
            "if": {"required": [self.key], "properties": {self.key: {"enum": list(self.values)}}},
            "then": {"properties": {self.then: then}},
        }


@dataclass(frozen=True, slots=True)
class Needs:
    """`key` may be written only beside `other`."""

    key: str
    other: str

    def schema(self) -> Json:
        return {
            "if": {"not": {"required": [self.other]}},
            "then": {"properties": {self.key: _NOTHING}},
        }


class Block:
    """One kind of mapping in a rule file: its keys are its `Key` class attributes."""

    #: its name among the schema's `$defs`
    ref: ClassVar[str]
    #: exactly one of these keys is written
    one_of: ClassVar[tuple[str, ...]] = ()
    #: at most one of these keys is written
    exclusive: ClassVar[tuple[str, ...]] = ()
    #: rules between its keys that the schema says too (the parser reports each)
    rules: ClassVar[tuple[When | Needs, ...]] = ()

    @classmethod
    def keys(cls) -> tuple[Key[Value], ...]:
        return tuple(v for v in vars(cls).values() if isinstance(v, Key))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(k.name for k in cls.keys())

    @classmethod
    def required(cls) -> tuple[str, ...]:
        return tuple(k.name for k in cls.keys() if k.required)

    @classmethod
    def mapping(cls, node: Node) -> Fields:
        """The mapping's entries: unknown and missing required keys are problems."""
        return node.mapping(cls.names(), required=cls.required())

    @classmethod
    def schema(cls, *, when_denied: bool = False) -> Json:
        keys = [k for k in cls.keys() if when_denied or not k.when_denied_only]
        out: Json = {
            "description": " ".join(inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0].split()),
            "type": "object",
            "properties": {k.name: k.schema() for k in keys},
            "additionalProperties": False,
        }
        if required := [k.name for k in keys if k.required]:
            out["required"] = required
        if cls.one_of:
            out["oneOf"] = [{"required": [k]} for k in cls.one_of]
        if cls.exclusive:
            out["not"] = {"required": list(cls.exclusive)}
        if cls.rules:
            out["allOf"] = [r.schema() for r in cls.rules]
        return out
