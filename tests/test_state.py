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


def test_reloads_are_recorded_with_their_time_and_result() -> None:
    holder = RulesHolder(RuleSet([]), now=100.0)
    assert holder.loaded_at == 100.0 and holder.last_reload is None
    holder.failed(["rules/x.yaml:1: broken"], now=200.0)
    assert _last(holder) == (200.0, False) and holder.last_error == ["rules/x.yaml:1: broken"]
    assert holder.loaded_at == 100.0  # the rules in force are still the startup ones
    holder.swap(RuleSet([]), now=300.0)
    assert _last(holder) == (300.0, True) and holder.loaded_at == 300.0
    assert holder.last_error == []


def _last(holder: RulesHolder) -> tuple[float, bool] | None:
    # read through a call: mypy keeps an attribute narrowed to None across method calls
    return holder.last_reload
