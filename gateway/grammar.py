"""String grammars declared once: the loader's check, and the same grammar as JSON Schema.

A `Grammar` pairs the function a loader calls on a value (`check`: None for a valid value,
else what is wrong, the message the loader reports at the value's line) with its JSON
Schema form (`pattern`, `max_length`), which `gateway.schemas` writes into
`schemas/*.schema.json` so that an editor flags a bad value as it is typed.

A pattern is written in the regular-expression syntax that ECMA-262 (the editors') and
Python's `re` (the tests') read alike: no inline flags, no `\\p{…}`; case-blind words are
spelled out with `ci`. `$` is the end of the text for an editor; Python's `re` also lets
a final newline through, which no YAML scalar holds unless block-quoted.

An `exact` grammar's pattern accepts exactly the ASCII strings its check accepts
(tests/grammar_harness.py samples both with hypothesis); past ASCII it may be looser. A
grammar that is not exact leaves to the loader what a regular expression cannot say (a
percent-encoded dot segment, a regex that does not compile): its pattern is looser than
the check, never stricter, on every value the shipped files hold.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gateway.model import check_vendor_id

__all__ = [
    "DNS_NAME_PATTERN",
    "PURPOSE",
    "VENDOR_ID",
    "Grammar",
    "Json",
    "alternatives",
    "check_purpose_name",
    "ci",
    "described",
    "escape",
    "one_or_list",
]

#: a JSON Schema (or a fragment of one), as `json.dumps` writes it
Json = dict[str, Any]

#: what a regular expression treats specially: escaped with a backslash, which ECMA-262
#: (also with its `u` flag) and Python both read as the character itself
_SYNTAX = frozenset("\\^$.|?*+()[]{}")
#: the keywords of a plain string schema: those a list of such strings can carry too
_STRING_KEYWORDS = frozenset(
    {"type", "pattern", "minLength", "maxLength", "format", "examples", "description"}
)


@dataclass(frozen=True, slots=True)
class Grammar:
    """A string's grammar: what the loader checks, and what the JSON Schema says of it."""

    #: for rule and config authors: the schema's `description`
    description: str
    #: the whole value must match (`^…$`); None: no pattern (see `format`)
    pattern: str | None
    #: the loader's check: None for a valid value, else the problem; None: the loader
    #: checks the value against something only it knows (the configured purposes)
    check: Callable[[str], str | None] | None = None
    max_length: int | None = None
    #: the pattern accepts exactly the ASCII strings `check` accepts
    exact: bool = True
    #: a JSON Schema `format` (an annotation editors may check: `regex`)
    format: str | None = None
    #: values an editor offers to complete
    examples: tuple[str, ...] = ()

    def error(self, value: str) -> str | None:
        """The loader's problem with `value`, or None."""
        return None if self.check is None else self.check(value)

    def schema(self) -> Json:
        out: Json = {"description": self.description, "type": "string"}
        if self.pattern is not None:
            out["pattern"] = self.pattern
        if self.max_length is not None:
            out["maxLength"] = self.max_length
        if self.format is not None:
            out["format"] = self.format
        if self.examples:
            out["examples"] = list(self.examples)
        return out


def escape(text: str) -> str:
    """`text` as a regular expression matching itself, in ECMA-262 and Python alike."""
    return "".join(f"\\{c}" if c in _SYNTAX else c for c in text)


def ci(text: str) -> str:
    """`text` as a case-blind regular expression (`get` -> `[gG][eE][tT]`): neither
    dialect has an inline flag the other reads."""
    return "".join(
        f"[{c.lower()}{c.upper()}]" if c.lower() != c.upper() else escape(c) for c in text
    )


def described(help: str, schema: Json) -> Json:
    """`schema` described by `help`, and by its own description after it (a grammar's)."""
    own = schema.get("description")
    text = help if not own or own == help else f"{help} — {own}"
    return {"description": text, **{k: v for k, v in schema.items() if k != "description"}}


def one_or_list(item: Json, *, at_least_one: bool = False, unique: bool = False) -> Json:
    """A list of `item`, or one `item` on its own, as the loaders read a list of names.

    A plain string item is written with a type list (the string keywords constrain the
    single value, `items` the list's), so an editor reports a bad name at the name.
    """
    array: Json = {"type": "array", "items": item}
    if at_least_one:
        array["minItems"] = 1
    if unique:
        array["uniqueItems"] = True
    if item.get("type") == "string" and set(item) <= _STRING_KEYWORDS:
        return {**item, **array, "type": ["string", "array"]}
    return {"anyOf": [item, array]}


def alternatives(words: Iterable[str]) -> str:
    """A regular expression matching any of `words` (no anchors, no group)."""
    return "|".join(escape(w) for w in words)


def check_purpose_name(name: str) -> str | None:
    """A purpose's name as `consent.purposes` may declare it (it travels in every cookie)."""
    if name.isascii() and name.replace("_", "").replace("-", "").isalnum() and len(name) <= 32:
        return None
    return f"purpose {name!r} must be 1-32 ASCII letters, digits, _ or -"


_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_END = r"(?:/|$)"
#: a lower-case DNS name (`gateway.ruleset.schema.is_dns_name`): two labels or more, 253
#: characters at most, the last not a number; then `/` or the end (no anchors)
DNS_NAME_PATTERN = (
    rf"(?=[^/]{{1,253}}{_END})(?:{_LABEL}\.)+(?![0-9]+{_END})(?!0x[0-9a-f]*{_END}){_LABEL}"
)

#: `vendor:` of a rule file, and every rule vendor id the config names
VENDOR_ID = Grammar(
    "a rule vendor id: lower-case letters, digits and single '-' (e.g. meta-pixel)",
    r"^[a-z0-9]+(?:-[a-z0-9]+)*$",
    check_vendor_id,
    max_length=64,
)
#: a purpose: the configured ones are what a rule may name (the loader checks)
PURPOSE = Grammar(
    "one of the gateway's purposes (`consent.purposes` in the config)",
    r"^(?=[A-Za-z0-9_-]*[A-Za-z0-9])[A-Za-z0-9_-]{1,32}$",
    check_purpose_name,
)
