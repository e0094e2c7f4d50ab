"""gateway.grammar: string grammars as the loader checks them and as JSON Schema says them."""

from __future__ import annotations

import re

import pytest

from gateway.config import DEFAULT_PURPOSES, parse_config
from gateway.grammar import (
    PURPOSE,
    VENDOR_ID,
    Grammar,
    alternatives,
    check_purpose_name,
    ci,
    described,
    escape,
    one_or_list,
)
from tests.conftest import CONFIG_ENV, CONFIG_KEYS, config_problems
from tests.grammar_harness import assert_agrees, disagreement

SEEDS = {
    "vendor_id": ["meta-pixel", "google-analytics-4", "a", "a" * 64, "a" * 65, "a--b", "-a"],
    "purpose": [*DEFAULT_PURPOSES, "ads_2", "_", "-", "a" * 32, "a" * 33, "é"],
}


@pytest.mark.parametrize(("name", "grammar"), [("vendor_id", VENDOR_ID), ("purpose", PURPOSE)])
def test_pattern_accepts_what_the_check_accepts(name: str, grammar: Grammar) -> None:
    assert_agrees(grammar, SEEDS[name])


@pytest.mark.parametrize("name", ["ads", "ads_2", "a-b", "_", "--", "a" * 33, "é", "a b"])
def test_the_purpose_grammar_is_the_configs(name: str) -> None:
    # the config refuses exactly the purpose names the grammar (and so the schema) refuses
    text = CONFIG_KEYS + f"consent:\n  purposes: [necessary, advertising, {name!r}]\n"
    error = check_purpose_name(name)
    if error is None:
        parse_config(text, "gw.yaml", env=CONFIG_ENV)
    else:
        assert f"gw.yaml:4: consent.purposes: {error}" in config_problems(text)


def test_a_disagreement_is_found() -> None:
    # control: a pattern one character looser than its check
    loose = Grammar("slug", r"^[a-z-]+$", VENDOR_ID.check)
    assert disagreement(loose, "a--b") is not None
    with pytest.raises(AssertionError):
        assert_agrees(loose, ["a-b"])
    # a loose grammar may accept more, never less
    assert disagreement(Grammar("slug", r"^[a-z-]+$", VENDOR_ID.check, exact=False), "a--b") is None


@pytest.mark.parametrize(
    ("text", "matches", "misses"),
    [
        ("get", ["get", "GET", "gEt"], ["gets", "xget", "g.t"]),
        ("cg.js", ["CG.JS", "cg.js"], ["cgxjs"]),
        ("x-forwarded-", ["X-Forwarded-"], ["x_forwarded-"]),
    ],
)
def test_ci_is_case_blind_and_literal(text: str, matches: list[str], misses: list[str]) -> None:
    pattern = f"^{ci(text)}$"
    assert all(re.search(pattern, m) for m in matches)
    assert not any(re.search(pattern, m) for m in misses)


def test_escape_and_alternatives_are_literal() -> None:
    words = ["/cg.js", "a+b", "(x)", "[y]", "a|b", "/t"]
    pattern = f"^(?:{alternatives(words)})$"
    assert all(re.search(pattern, w) for w in words)
    assert not re.search(pattern, "/cgxjs") and not re.search(pattern, "aab")
    assert escape("a.b") == r"a\.b" and escape("/-_~") == "/-_~"


def test_one_or_list() -> None:
    slug = VENDOR_ID.schema()
    assert one_or_list(slug, at_least_one=True, unique=True) == {
        **slug,
        "type": ["string", "array"],
        "items": slug,
        "minItems": 1,
        "uniqueItems": True,
    }
    # an item a type list cannot merge with is one of the two
    choice = {"type": "string", "enum": ["a", "b"]}
    assert one_or_list(choice) == {"anyOf": [choice, {"type": "array", "items": choice}]}


def test_described_adds_a_grammars_own_description() -> None:
    assert described("the id", VENDOR_ID.schema())["description"] == (
        f"the id — {VENDOR_ID.description}"
    )
    assert described("the id", {"type": "string"}) == {"description": "the id", "type": "string"}


def test_a_grammar_schema() -> None:
    assert VENDOR_ID.schema() == {
        "description": VENDOR_ID.description,
        "type": "string",
        "pattern": VENDOR_ID.pattern,
        "maxLength": 64,
    }
    assert Grammar("any", None).schema() == {"description": "any", "type": "string"}
    assert Grammar("any", None).error("whatever") is None
