"""Rule reloads: on SIGHUP and when a rule file changes, without a restart.

A reload compiles the whole rule set off the event loop and swaps it in one
assignment (`RulesHolder.swap`): a request in flight keeps the set it started
with, the next one sees the new set. A bad edit is reported (log, metrics,
`RulesHolder.last_error`, the admin page) and the last good set stays in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterable
from pathlib import Path

from gateway.errors import ConfigError
from gateway.ruleset.load import load_rules
from gateway.ruleset.match import RuleSet
from gateway.state import Gateway

__all__ = ["RuleReloader", "snapshot"]

log = logging.getLogger(__name__)

Snapshot = tuple[tuple[str, int, int], ...]


def snapshot(paths: Iterable[Path]) -> Snapshot:
    """(file, mtime_ns, size) of every rule file under `paths`: what a change changes."""
    out: list[tuple[str, int, int]] = []
    for p in paths:
        files = sorted(p.glob("*.y*ml")) if p.is_dir() else [p]
        for f in files:
            with contextlib.suppress(OSError):
                st = f.stat()
                out.append((str(f), st.st_mtime_ns, st.st_size))
    return tuple(out)


class RuleReloader:
    """Reloads `gw`'s rules on demand, on SIGHUP, and on file change (polling)."""

    def __init__(self, gw: Gateway, interval: float) -> None:
        self._gw = gw
        self._interval = interval
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._signal_installed = False
        self._seen: Snapshot = ()
        self._pending: asyncio.Task[bool] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._seen = await loop.run_in_executor(None, snapshot, self._gw.config.rules.paths)
        try:
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
            self._signal_installed = True
        except (NotImplementedError, RuntimeError, ValueError):
            # Not the main thread (tests, embedded use) or no signals on this platform.
            log.debug("SIGHUP reload not available here")
        if self._interval > 0:
            self._task = loop.create_task(self._watch(), name="rule-watch")

    async def close(self) -> None:
        if self._signal_installed:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._signal_installed = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _on_sighup(self) -> None:
        log.info("SIGHUP: reloading rules")
        task = asyncio.get_running_loop().create_task(self.reload())
        # Keep a reference until it finishes (the loop holds only a weak one).
        self._pending = task

    async def reload(self) -> bool:
        """Compile the rule files again and swap them in. True on success; on failure the
        rules in force stay, and the problems are logged and kept for operators."""
        async with self._lock:
            cfg = self._gw.config
            loop = asyncio.get_running_loop()
            self._seen = await loop.run_in_executor(None, snapshot, cfg.rules.paths)
            try:
                rules: RuleSet = await loop.run_in_executor(
                    None, load_rules, cfg.rules.paths, frozenset(cfg.consent.purposes)
                )
            except Exception as e:
                if isinstance(e, ConfigError):
                    problems = [str(p) for p in e.problems]
                else:
                    # A bug in the loader must not leave reloads stuck: report, keep serving.
                    log.exception("rule reload: unexpected error")
                    problems = [f"rules could not be loaded: {type(e).__name__} (see the log)"]
                self._gw.rules.last_error = problems
                self._gw.metrics.rule_reloads.labels("failed").inc()
                log.error(
                    "rule reload failed, keeping the %d rules in force:\n%s",
                    len(self._gw.rules.current.rules),
                    "\n".join(problems),
                )
                return False
            self._gw.rules.swap(rules)
            self._gw.metrics.rule_reloads.labels("ok").inc()
            log.info("rules reloaded: %d vendor rules", len(rules.rules))
            return True

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._interval)
            try:
                current = await loop.run_in_executor(None, snapshot, self._gw.config.rules.paths)
                if current != self._seen:
                    log.info("rule files changed: reloading")
                    await self.reload()
            except Exception:
                # One bad round must not end the watcher: every later edit would go unseen.
                log.exception("rule watcher: unexpected error, still watching")
