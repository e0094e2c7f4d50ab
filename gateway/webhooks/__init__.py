"""Signed consent-change webhooks: every change in the store's feed, POSTed to each endpoint.

- `wire`: the wire format, what a receiver implements and imports: the event body
  (`event_body`), the headers, `sign` and `verify`. No aiohttp.
- `dispatch`: the delivery (`WebhookDispatcher`: cursors, leases, retries with `backoff`,
  erasure scrubbing) and `status`, the delivery state that `consent-gateway webhooks status`
  prints (its formatting lives in `gateway.cli.webhooks`).

Nothing is re-exported here: importing the package must not load the dispatcher (and
aiohttp) for a receiver that only verifies signatures.
"""

__all__: list[str] = []
