"""gateway.state: the rule set in force is swapped whole."""

from __future__ import annotations

from gateway.config import DEFAULT_PURPOSES
from gateway.ruleset.load import load_rules
from gateway.ruleset.match import RuleSet
from gateway.state import RulesHolder
from tests.conftest import RULES_DIR


def test_swap_replaces_the_whole_set_and_clears_the_error() -> None:
    full = load_rules([RULES_DIR], frozenset(DEFAULT_PURPOSES))
    holder = RulesHolder(RuleSet([]))
    holder.last_error = ["rules/x.yaml:1: broken"]
    in_flight = holder.current  # a request reads `current` once
    holder.swap(full)
    assert holder.current is full and holder.last_error == []
    assert in_flight.match("www.google-analytics.com", "/g/collect", "GET") is None
    assert holder.current.match("www.google-analytics.com", "/g/collect", "GET") is not None
