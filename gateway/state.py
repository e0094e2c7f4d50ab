"""The running gateway's state, shared by every handler through one `web.AppKey`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from gateway.config import GatewayConfig
from gateway.decision_log.writer import DecisionLog
from gateway.metrics import Metrics
from gateway.ruleset.match import RuleSet
from gateway.store.cache import ConsentBook
from gateway.upstream import Upstream

__all__ = ["Gateway", "RulesHolder"]


class RulesHolder:
    """The rule set in force. Swapped whole on reload, so a request in flight keeps the
    set it started with (it reads `current` once)."""

    def __init__(self, rules: RuleSet, now: float | None = None) -> None:
        self.current = rules
        #: problems of the last failed reload, shown to operators; empty when it succeeded
        self.last_error: list[str] = []
        #: epoch seconds the rules in force were loaded at (startup, or the last good reload)
        self.loaded_at = time.time() if now is None else now
        #: (epoch seconds, succeeded) of the last reload attempt; None before any
        self.last_reload: tuple[float, bool] | None = None

    def swap(self, rules: RuleSet, now: float | None = None) -> RuleSet:
        """Put `rules` in force; the set replaced (its caller decides how it is freed)."""
        old, self.current = self.current, rules
        self.last_error = []
        self.loaded_at = time.time() if now is None else now
        self.last_reload = (self.loaded_at, True)
        return old

    def failed(self, problems: list[str], now: float | None = None) -> None:
        """Record a reload that failed with `problems`; the rules in force stay."""
        self.last_error = problems
        self.last_reload = (time.time() if now is None else now, False)


@dataclass
class Gateway:
    config: GatewayConfig
    rules: RulesHolder
    metrics: Metrics
    upstream: Upstream
    decision_log: DecisionLog
    #: cookies of the gateway's own that never reach a vendor
    own_cookies: frozenset[str] = field(default_factory=frozenset)
    #: the consent store behind its cache; set by the app's lifecycle once the store is open
    book: ConsentBook | None = None
    #: a graceful stop has begun: /readyz answers 503 so balancers stop sending, while
    #: the listeners still serve (`server.drain_delay`)
    draining: bool = False
