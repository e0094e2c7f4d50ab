"""Where the decision log's sinks run: a thread of the gateway, or a writer process.

```
DecisionLog ─▶ ThreadHost ─▶ one executor thread ─▶ sinks
            └▶ ProcessHost ─▶ socket (pickled batches) ─▶ writer process ─▶ sinks
```

Both answer every call with one `Outcome` per sink, so the log counts and warns the
same way whichever runs its sinks. They never raise for a sink's failure.

The process (`decision_log.writer: process`, the default) exists for the event loop's
sake: a sink's work in a thread of the gateway (building rows, binding parameters)
holds the GIL, and under load every batch made the loop wait for it. Measured with wrk
on a dropped hit (bench/PROFILE.md, step 23), the writer thread cost the loop three to
four times its own CPU. In a process of its own the loop's share is pickling the batch
as tuples (0.3 us a record) and one socket write.

The writer process is `python -m gateway.decision_log.hosts`: its standard input is
one end of a socket pair, carrying length-prefixed pickles both ways, one reply per
request; its standard output and error are the gateway's (a JSONL sink on `-` writes
where it did). It ignores SIGINT and SIGTERM, which reach a whole process group, and
ends when its socket closes (the gateway closed the log, or died): it writes every
batch it was sent, closes its sinks and exits, so nothing it accepted is cut short by
a signal meant for the gateway. Pickle is safe here: both ends are this program, and
the socket is private to them.
"""

from __future__ import annotations

import asyncio
import copyreg
import io
import os
import pickle
import signal
import socket
import sqlite3
import struct
import sys
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from functools import partial
from operator import attrgetter
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, NamedTuple, Protocol

from gateway.config import DecisionLogConfig, StoreBackend
from gateway.decision_log.bypasses import Seen
from gateway.decision_log.record import DecisionRecord
from gateway.decision_log.rollups import Cutoffs, Pruned, RollupRow
from gateway.decision_log.sinks import Row, Sink, SqliteSink, sinks_for

__all__ = ["Host", "Outcome", "ProcessHost", "Pruning", "ThreadHost", "host_for"]


class Outcome(NamedTuple):
    """What one call did to one sink: `failure` is None when it succeeded; otherwise
    `unexpected` tells a bug (a traceback) from an outage (`type: message`)."""

    sink: str
    failure: str | None = None
    unexpected: bool = False


#: what a retention run did: its outcome, and what it deleted
Pruning = tuple[Outcome, Pruned]


class Host(Protocol):
    """Runs the sinks of one log. `open` before anything else; `close` last, once."""

    #: the sinks' names, in the order of every call's outcomes
    names: tuple[str, ...]
    #: whether a sink keeps the sightings of reports (the SQLite sink)
    keeps_sightings: bool

    async def open(self) -> list[Outcome]: ...
    async def write(self, records: Sequence[DecisionRecord]) -> list[Outcome]: ...
    async def write_sightings(self, seen: Sequence[Seen]) -> Outcome: ...
    async def write_rollups(self, rows: Sequence[RollupRow]) -> Outcome: ...
    async def prune(self, cut: Cutoffs) -> Pruning: ...
    async def close(self) -> list[Outcome]: ...


# ---------------------------------------------------------------------------
# What a sink call did, the same in a thread and in the writer process


def _call(sink: Sink, fn: Callable[[], object]) -> Outcome:
    try:
        fn()
    except (sqlite3.Error, OSError) as e:
        # SECURITY: the failure names the sink's error, never a record's contents.
        return Outcome(sink.name, f"{type(e).__name__}: {e}")
    except Exception:
        return Outcome(sink.name, traceback.format_exc(), True)
    return Outcome(sink.name)


class _Sinks:
    """The sinks and the four calls, run synchronously where the host runs them."""

    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = sinks
        self.sqlite = next((s for s in sinks if isinstance(s, SqliteSink)), None)
        #: what a host tells the log (`Host.names`, `Host.keeps_sightings`)
        self.names = tuple(s.name for s in sinks)
        self.keeps_sightings = self.sqlite is not None

    def open(self) -> list[Outcome]:
        return [_call(s, s.open) for s in self.sinks]

    def write(self, records: Sequence[DecisionRecord]) -> list[Outcome]:
        return [_call(s, partial(s.write, records)) for s in self.sinks]

    def write_rows(self, rows: Sequence[Row]) -> list[Outcome]:
        """`write` for rows off the wire: the SQLite sink takes them as they are, other
        sinks the records they stand for (built once, only when such a sink exists)."""
        records: list[DecisionRecord] = []
        if any(not isinstance(s, SqliteSink) for s in self.sinks):
            records = [_record(row) for row in rows]
        out = []
        for sink in self.sinks:
            if isinstance(sink, SqliteSink):
                out.append(_call(sink, partial(sink.write_rows, rows)))
            else:
                out.append(_call(sink, partial(sink.write, records)))
        return out

    def write_sightings(self, seen: Sequence[Seen]) -> Outcome:
        sink = self.sqlite
        if sink is None:
            return Outcome("sqlite", "no SQLite sink")
        return _call(sink, partial(sink.write_sightings, seen))

    def write_rollups(self, rows: Sequence[RollupRow]) -> Outcome:
        sink = self.sqlite
        if sink is None:
            return Outcome("sqlite")  # no table to keep them in: nothing to lose
        return _call(sink, partial(sink.write_rollups, rows))

    def prune(self, cut: Cutoffs) -> Pruning:
        sink, pruned = self.sqlite, Pruned()
        if sink is None:
            return Outcome("sqlite"), pruned

        def run() -> None:
            nonlocal pruned
            pruned = sink.prune(cut)

        return _call(sink, run), pruned

    def close(self) -> list[Outcome]:
        return [_call(s, s.close) for s in self.sinks]


# ---------------------------------------------------------------------------
# In a thread of the gateway


class ThreadHost:
    """The sinks in one dedicated thread of the gateway's process."""

    def __init__(self, cfg: DecisionLogConfig) -> None:
        self._sinks = _Sinks(sinks_for(cfg))
        self.names, self.keeps_sightings = self._sinks.names, self._sinks.keeps_sightings
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decision-log")

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self) -> list[Outcome]:
        out: list[Outcome] = await self._run(self._sinks.open)
        return out

    async def write(self, records: Sequence[DecisionRecord]) -> list[Outcome]:
        out: list[Outcome] = await self._run(self._sinks.write, records)
        return out

    async def write_sightings(self, seen: Sequence[Seen]) -> Outcome:
        out: Outcome = await self._run(self._sinks.write_sightings, seen)
        return out

    async def write_rollups(self, rows: Sequence[RollupRow]) -> Outcome:
        out: Outcome = await self._run(self._sinks.write_rollups, rows)
        return out

    async def prune(self, cut: Cutoffs) -> Pruning:
        out: Pruning = await self._run(self._sinks.prune, cut)
        return out

    async def close(self) -> list[Outcome]:
        # Queued behind any write still in flight (one thread, first in first out), and
        # shielded: even if close is cancelled, the sinks are closed by their own thread.
        future = self._executor.submit(self._sinks.close)
        self._executor.shutdown(wait=False)
        out: list[Outcome] = await asyncio.shield(asyncio.wrap_future(future))
        return out


# ---------------------------------------------------------------------------
# In a writer process

_LENGTH: Final = struct.Struct("!I")
#: a record as the wire carries it: its fields in the order `DecisionRecord` takes them
#: (all but `id`, which only a stored record has), read in C
_ROW: Final = attrgetter(*(f.name for f in fields(DecisionRecord) if f.name != "id"))
#: a record's `sources` is a read-only view of a dict: pickled as its (purpose, source)
#: pairs, once per batch for the records of one template (the pickler's memo keeps the
#: view's id), hashable so that the SQLite sink can look a row's kind up by its fields
_DISPATCH: Final = {
    **copyreg.dispatch_table,
    MappingProxyType: lambda m: (tuple, (tuple(m.items()),)),
}
#: what an exchange with a writer process that is not there raises
_GONE: Final = (OSError, EOFError, asyncio.IncompleteReadError, pickle.UnpicklingError)
#: how long `close` waits for the process to write what it was sent and exit
CLOSE_TIMEOUT: Final = 30.0


def _dumps(message: object) -> bytes:
    buf = io.BytesIO()
    buf.write(b"\0\0\0\0")
    pickler = pickle.Pickler(buf, pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _DISPATCH
    pickler.dump(message)
    data = buf.getbuffer()
    _LENGTH.pack_into(data, 0, len(data) - _LENGTH.size)
    return bytes(data)


def _rows(records: Sequence[DecisionRecord]) -> list[Row]:
    return [_ROW(r) for r in records]


def _pairs(rows: list[Row]) -> list[Row]:
    """`rows` with every `sources` as pairs: a record built with a plain dict (not
    `record_for`'s read-only view) arrives as that dict."""
    return [
        row if type(row[6]) is tuple else (*row[:6], tuple(row[6].items()), *row[7:])
        for row in rows
    ]


def _record(row: Row) -> DecisionRecord:
    """The record a wire row stands for (its `sources` a dict again)."""
    values: list[Any] = list(row)
    values[6] = dict(values[6])
    return DecisionRecord(*values)


class WriterGone(Exception):
    """The writer process is not there to answer (it exited, or never started)."""


class ProcessHost:
    """The sinks in a writer process of their own (module docstring).

    One request is in flight at a time (the log's writer awaits each). A process that
    dies fails the request it was given (every sink's outcome names the exit) and is
    started afresh for the next one, so a crash costs one batch, counted as lost.
    """

    def __init__(self, cfg: DecisionLogConfig) -> None:
        self._cfg = cfg
        # The process has the sinks; the same configuration names them here.
        sinks = _Sinks(sinks_for(cfg))
        self.names, self.keeps_sightings = sinks.names, sinks.keeps_sightings
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        """The writer process's id while it runs."""
        return None if self._proc is None else self._proc.pid

    async def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                __name__,
                stdin=theirs.fileno(),
                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._reader, self._writer = await asyncio.open_connection(sock=ours)

    async def _ask(self, message: tuple[object, ...]) -> Any:
        async with self._lock:
            try:
                if self._writer is None:
                    await self._spawn()
                    await self._exchange(("open", _config_of(self._cfg)))
                return await self._exchange(message)
            except _GONE as e:
                await self._forget()
                raise WriterGone(f"writer process gone ({type(e).__name__})") from e

    async def _exchange(self, message: tuple[object, ...]) -> Any:
        assert self._reader is not None and self._writer is not None
        self._writer.write(_dumps(message))
        await self._writer.drain()
        (n,) = _LENGTH.unpack(await self._reader.readexactly(_LENGTH.size))
        return pickle.loads(await self._reader.readexactly(n))

    async def _forget(self) -> None:
        writer, proc = self._writer, self._proc
        self._reader = self._writer = self._proc = None
        if writer is not None:
            writer.close()
        if proc is not None:
            try:
                await asyncio.wait_for(proc.wait(), CLOSE_TIMEOUT)
            except TimeoutError:
                proc.kill()
                await proc.wait()

    def _gone(self, e: WriterGone) -> list[Outcome]:
        return [Outcome(name, str(e)) for name in self.names]

    async def open(self) -> list[Outcome]:
        try:
            out: list[Outcome] = await self._ask(("ping",))
        except WriterGone as e:
            return self._gone(e)
        return out

    async def write(self, records: Sequence[DecisionRecord]) -> list[Outcome]:
        try:
            out: list[Outcome] = await self._ask(("write", _rows(records)))
        except WriterGone as e:
            return self._gone(e)
        return out

    async def write_sightings(self, seen: Sequence[Seen]) -> Outcome:
        try:
            out: Outcome = await self._ask(("sightings", list(seen)))
        except WriterGone as e:
            return Outcome("sqlite", str(e))
        return out

    async def write_rollups(self, rows: Sequence[RollupRow]) -> Outcome:
        try:
            out: Outcome = await self._ask(("rollups", [tuple(r) for r in rows]))
        except WriterGone as e:
            return Outcome("sqlite", str(e))
        return out

    async def prune(self, cut: Cutoffs) -> Pruning:
        try:
            out: Pruning = await self._ask(("prune", tuple(cut)))
        except WriterGone as e:
            return Outcome("sqlite", str(e)), Pruned()
        return out

    async def close(self) -> list[Outcome]:
        """Close the sinks and end the process. Shielded: a cancelled close still ends it."""
        return await asyncio.shield(self._close())

    async def _close(self) -> list[Outcome]:
        async with self._lock:
            if self._writer is None:
                return [Outcome(name) for name in self.names]
            try:
                out: list[Outcome] = await self._exchange(("close",))
            except _GONE as e:
                out = self._gone(WriterGone(f"writer process gone ({type(e).__name__})"))
            await self._forget()
            return out


def _config_of(cfg: DecisionLogConfig) -> tuple[str | None, str | None]:
    sqlite = cfg.sqlite_path if cfg.backend == StoreBackend.SQLITE else None
    return (None if sqlite is None else str(sqlite), cfg.jsonl)


def host_for(cfg: DecisionLogConfig) -> Host:
    """The host `cfg.writer` names."""
    return ProcessHost(cfg) if cfg.writer == "process" else ThreadHost(cfg)


# ---------------------------------------------------------------------------
# The writer process itself


def _read_exactly(sock: socket.socket, n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _answer(sinks: _Sinks | None, message: tuple[Any, ...]) -> tuple[_Sinks | None, object]:
    op = message[0]
    if op == "open":
        sqlite_path, jsonl = message[1]
        cfg = DecisionLogConfig(
            sqlite_path=None if sqlite_path is None else Path(sqlite_path), jsonl=jsonl
        )
        return _Sinks(sinks_for(cfg)), None
    assert sinks is not None, "the first request opens the sinks"
    if op == "ping":
        return sinks, sinks.open()
    if op == "write":
        return sinks, sinks.write_rows(_pairs(message[1]))
    if op == "sightings":
        return sinks, sinks.write_sightings(message[1])
    if op == "rollups":
        return sinks, sinks.write_rollups([RollupRow(*r) for r in message[1]])
    if op == "prune":
        return sinks, sinks.prune(Cutoffs(*message[1]))
    if op == "close":
        return sinks, sinks.close()
    raise ValueError(f"unknown request {op!r}")


def main() -> int:
    """The writer process: answer requests on standard input until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=os.dup(0))
    sinks: _Sinks | None = None
    try:
        while True:
            head = _read_exactly(sock, _LENGTH.size)
            if head is None:
                return 0
            body = _read_exactly(sock, _LENGTH.unpack(head)[0])
            if body is None:
                return 0
            sinks, reply = _answer(sinks, pickle.loads(body))
            sock.sendall(_dumps(reply))
    finally:
        if sinks is not None:
            sinks.close()
        sock.close()


if __name__ == "__main__":
    # Run as the imported module, so what it pickles (`Outcome`) names that module and
    # not `__main__`.
    from gateway.decision_log import hosts

    sys.exit(hosts.main())
