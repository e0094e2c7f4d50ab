"""Holding a `Grammar`'s pattern to its check (gateway.grammar), for the test modules of
the grammars' declarations (tests/test_grammar.py, tests/ruleset/test_keys.py,
tests/config/test_json_schema.py).

An exact grammar: on ASCII text (no newline, which `$` reads differently in Python), the
pattern with `max_length` accepts a value exactly when the check does. A loose one: the
pattern accepts every value the check accepts, on printable ASCII without spaces.
Values are drawn three ways: strings the pattern generates, the same with one character
added, removed or replaced (near misses), and short strings of the characters grammars
are made of.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.grammar import Grammar

_ASCII = st.characters(codec="ascii", exclude_characters="\n")
_PRINTABLE = st.characters(codec="ascii", min_codepoint=0x21, max_codepoint=0x7E)
#: what the grammars are made of, and what breaks them
_PARTS = "az09AZ-._*/[]:;@#?%~!$'=+&\\ \t\x00\x7f"


def schema_accepts(grammar: Grammar, value: str) -> bool:
    """What an editor says of `value` by the grammar's JSON Schema."""
    if grammar.pattern is not None and re.search(grammar.pattern, value) is None:
        return False
    return grammar.max_length is None or len(value) <= grammar.max_length


def disagreement(grammar: Grammar, value: str) -> str | None:
    """Why the pattern and the check disagree on `value`, or None."""
    loader = grammar.error(value) is None
    editor = schema_accepts(grammar, value)
    if loader == editor or (not grammar.exact and editor):
        return None
    return f"{value!r}: the loader {'accepts' if loader else 'refuses'}, the schema does not"


def _mutate(args: tuple[str, int, str, int]) -> str:
    value, at, char, how = args
    at = at % (len(value) + 1)
    if how == 0:
        return value[:at] + char + value[at:]
    if how == 1:
        return value[:at] + value[at + 1 :]
    return value[:at] + char + value[at + 1 :]


def _values(grammar: Grammar, seeds: Iterable[str]) -> st.SearchStrategy[str]:
    alphabet = _ASCII if grammar.exact else _PRINTABLE
    chars = _PARTS if grammar.exact else "".join(c for c in _PARTS if c.isprintable() and c != " ")
    bases = [st.sampled_from(sorted(seeds))] if seeds else []
    if grammar.pattern is not None:
        bases.append(st.from_regex(grammar.pattern, fullmatch=True, alphabet=alphabet))
    near = st.tuples(
        st.one_of(bases) if bases else st.just(""),
        st.integers(0, 80),
        st.sampled_from(chars),
        st.integers(0, 2),
    ).map(_mutate)
    return st.one_of(*bases, near, st.text(chars, max_size=14))


def assert_agrees(grammar: Grammar, seeds: Iterable[str] = ()) -> None:
    """Fail with a value on which the grammar's pattern and its check disagree."""
    assert grammar.check is not None, "a grammar without a check has nothing to agree with"
    seeds = [s for s in seeds if grammar.exact or s.isprintable()]
    for seed in seeds:
        assert disagreement(grammar, seed) is None, disagreement(grammar, seed)

    @settings(
        max_examples=120,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(_values(grammar, seeds))
    def run(value: str) -> None:
        if not grammar.exact and not all(c in string.printable and c.strip() for c in value):
            return
        assert disagreement(grammar, value) is None, disagreement(grammar, value)

    run()
