"""Rule reloads: on SIGHUP and when a rule file changes, without a restart.

A reload compiles the whole rule set off the event loop and swaps it in one
assignment (`RulesHolder.swap`): a request in flight keeps the set it started
with, the next one sees the new set. A bad edit is reported (log, metrics,
`RulesHolder.last_error`, the admin page) and the last good set stays in force.

Off the loop is not enough on its own: the compiling thread held the GIL long enough to
stall the loop 150-220 ms per reload of 1,000 rules (garbage collections, and a switch
interval waited out many times). `quiet_collector` is the remedy, for reloads and the
start-up alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

from gateway.errors import ConfigError
from gateway.ruleset.load import configured_rules
from gateway.ruleset.match import RuleSet
from gateway.ruleset.schema import VendorRule
from gateway.state import Gateway

__all__ = ["RuleReloader", "quiet_collector", "snapshot"]

log = logging.getLogger(__name__)

Snapshot = tuple[tuple[str, int, int], ...]


@contextlib.contextmanager
def quiet_collector() -> Iterator[None]:
    """While a rule set is compiled in another thread: no cyclic garbage collection, and
    the loop's thread given the GIL back within a millisecond; on leaving, every object
    then tracked is frozen (moved where collections never look) and both are restored.

    The compile allocates about a million objects, and collections those allocations
    triggered walked the whole heap holding the GIL: the loop stalled 150-220 ms per
    reload of 1,000 rules. With collections held off it still stalled 45-75 ms: libyaml's
    composer and the rule parser run long between the points where a thread asked for
    the GIL can be given it, and each of the loop's wake-ups waited out a 5 ms switch
    interval several times over. What a compile builds lives until the next reload and
    is acyclic (refcounting frees a replaced set: tests/test_reload.py checks), so
    walking it would only cost pauses. Nested blocks act once, at the outermost."""
    was, interval = gc.isenabled(), sys.getswitchinterval()
    gc.disable()
    sys.setswitchinterval(min(interval, _RELOAD_SWITCH))
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        if was:
            gc.freeze()
            gc.enable()


#: seconds a thread holds the GIL before the loop's thread may take it, while compiling
_RELOAD_SWITCH: Final = 0.001


async def _release(rules: list[VendorRule]) -> None:
    """Free a replaced rule set's rules a few at a time, yielding to the loop in between.

    Freeing is not interruptible: the last reference to 1,000 rules, dropped at once,
    freed every object they hold in one go (16-17 ms with the GIL). The set itself (its
    indexes) went with `swap`'s caller; a request still holding it, or a match of it,
    frees what remains when it is done, a little at a time."""
    while rules:
        del rules[-_RELEASE:]
        await asyncio.sleep(0)


#: rules freed between two yields to the loop (about 1.6 ms of work)
_RELEASE: Final = 100


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
                with quiet_collector():
                    rules: RuleSet = await loop.run_in_executor(None, configured_rules, cfg)
            except Exception as e:
                if isinstance(e, ConfigError):
                    problems = [str(p) for p in e.problems]
                else:
                    # A bug in the loader must not leave reloads stuck: report, keep serving.
                    log.exception("rule reload: unexpected error")
                    problems = [f"rules could not be loaded: {type(e).__name__} (see the log)"]
                self._gw.rules.failed(problems)
                self._gw.metrics.rule_reloads.labels("failed").inc()
                log.error(
                    "rule reload failed, keeping the %d rules in force:\n%s",
                    len(self._gw.rules.current.rules),
                    "\n".join(problems),
                )
                return False
            parts = list(self._gw.rules.swap(rules).rules)
            self._gw.metrics.rule_reloads.labels("ok").inc()
            log.info("rules reloaded: %d vendor rules", len(rules.rules))
            await _release(parts)
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
