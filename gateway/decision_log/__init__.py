"""The decision log (DESIGN §7): what the gateway decided, and why, off the hot path.

```
record_for(facts, decision, consent) ─▶ DecisionLog.submit ─▶ bounded queue
    ─▶ batch writer task ─▶ a host: writer process / thread ─▶ SqliteSink / JsonlSink
                         └▶ PostgresHost (backend postgres) ─▶ COPY, a partition a day
DecisionLog.count (every request) ─▶ Tally ─▶ per-minute rollups, every 10 s
reader_for(cfg) ─▶ SqliteReader / PgLogReader ─▶ records, counts, ...   (logs, admin)
```

One job per module; import from them, this package re-exports nothing:

- `record`: `DecisionRecord` and `record_for`, the privacy gate (names, never values),
  and `record_to_dict`, the record's JSON shape.
- `sinks`: the `Sink` protocol, `SqliteSink` (the `decisions` table and its schema
  version) and `JsonlSink`; `sinks_for` builds them from the config.
- `hosts`: where the sinks run (a writer process, or a thread of the gateway).
- `postgres`: `PostgresHost`, the PostgreSQL log every instance writes to (day
  partitions, NOTIFY per batch, retention under an advisory lease).
- `rollups`: the per-minute `Tally` of every request, SQLite's rollups and retention.
- `writer`: `DecisionLog`, the bounded queue and batch writer that hands records to
  the host and to the admin page's live subscribers, counting losses; it also writes
  the rollups and runs retention.
- `query`: `LogReader`, the read-only queries over the SQLite file (its failures as
  `gateway.errors.LogUnavailable`), the `LogQuery` filter and `parse_since`.
- `pg_query`: `PgLogReader`, the same queries over PostgreSQL, and `PgTail`, the live
  tail of every instance's records.
- `readers`: `reader_for`, the one asynchronous reader of either backend.
- `bypasses`: the aggregated sightings of report endpoints.

Printing the log for `consent-gateway logs` lives in `gateway.cli.logs`.
"""

__all__: list[str] = []
