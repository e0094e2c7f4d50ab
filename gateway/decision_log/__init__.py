"""The decision log (DESIGN §7): what the gateway decided, and why, off the hot path.

```
record_for(facts, decision, consent) ─▶ DecisionLog.submit ─▶ bounded queue
    ─▶ batch writer task ─▶ executor thread ─▶ SqliteSink / JsonlSink
LogReader(path) ─▶ records / counts / unknown_hosts   (`consent-gateway logs`, admin)
```

One job per module; import from them, this package re-exports nothing:

- `record`: `DecisionRecord` and `record_for`, the privacy gate (names, never values),
  and `record_to_dict`, the record's JSON shape.
- `sinks`: the `Sink` protocol, `SqliteSink` (the `decisions` table and its schema
  version) and `JsonlSink`; `sinks_for` builds them from the config.
- `writer`: `DecisionLog`, the bounded queue and batch writer that hands records to
  the sinks in one thread and to the admin page's live subscribers, counting losses.
- `query`: `LogReader`, the read-only queries over the SQLite file (its failures as
  `gateway.errors.LogUnavailable`), the `LogQuery` filter and `parse_since`.

Printing the log for `consent-gateway logs` lives in `gateway.cli.logs`.
"""

__all__: list[str] = []
