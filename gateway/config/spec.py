"""How an option is declared: `opt(...)`, a dataclass field carrying a `Spec`.

The schema (`gateway.config.schema`) declares every option with `opt`: its default,
its help, and what the loader needs beyond the field's type (bounds, choices, the key
in the file when it is not the field's name, a named converter, checks and rules).
`spec_of` and `key_of` read them back for the loader, the docs and the tests.

Pure: no YAML, no files, no environment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["Spec", "key_of", "opt", "spec_of"]


@dataclass(frozen=True, slots=True)
class Spec:
    """What the loader needs to know of an option beyond its type and default."""

    help: str
    #: the key in the file when it is not the field's name; None: not read from the file
    key: str | None = ""
    min: int | None = None
    max: int | None = None
    #: durations: must be more than this
    gt: float | None = None
    choices: tuple[str, ...] = ()
    #: a named converter in gateway.config.convert, for options whose reading is special
    convert: str | None = None
    #: one value -> the problem with it, or None
    check: Callable[[Any], str | None] | None = None
    #: the built section -> problems of this option that depend on other options
    rule: Callable[[Any], Iterable[str]] | None = None
    #: reported when the option is written but empty (null, '' or [])
    empty: str | None = None
    #: records in a list: reported (formatted with the value) when two share this value
    unique: str | None = None
    #: records in a list: a problem with this value drops the record unread
    gate: bool = False
    #: the record is written as a mapping and this field is its key there
    from_key: bool = False
    #: a rule's problem goes to the section when the option is not written
    section_where: bool = False
    #: sections of a lower stage are read first (converters may look at them)
    stage: int = 0
    #: the value used when a required option is missing (None: the record is dropped)
    fallback: Any = None
    #: the default of the file's key, where the field holds what it leads to
    key_default: str | None = None


_NO_DEFAULT: Any = dataclasses.MISSING


def opt(
    default: Any = _NO_DEFAULT,
    *,
    help: str,
    factory: Callable[[], Any] | None = None,
    repr: bool = True,
    **spec: Any,
) -> Any:
    """A dataclass field for one option: its default, its help and its `Spec`."""
    meta = {"opt": Spec(help=help, **spec)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, repr=repr, metadata=meta)
    return dataclasses.field(default=default, repr=repr, metadata=meta)


def spec_of(f: dataclasses.Field[Any]) -> Spec:
    spec = f.metadata.get("opt")
    if not isinstance(spec, Spec):
        raise TypeError(f"{f.name} is not declared with opt()")
    return spec


def key_of(f: dataclasses.Field[Any]) -> str | None:
    """The option's key in the file, or None when the loader derives it."""
    spec = spec_of(f)
    if spec.from_key or spec.key is None:
        return None
    return spec.key or f.name
