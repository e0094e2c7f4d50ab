"""The webhooks' wire format: what a receiver implements, and imports to check a delivery.

Each change of a subject's current consent is one POST to every configured endpoint, with

- `Content-Type: application/json`, the body being `event_body(change)`:
  `{"id", "type", "seq", "subject", "purposes", "vendors", "policy_version", "source",
  "at", "record_id"}` where `type` is `consent.updated` or `consent.erased` and `vendors`
  holds the visitor's own answers vendor by vendor (rule vendor id -> allowed). The body
  never contains the send time, so every retry of one event sends the same bytes.
- `Consent-Gateway-Event-Id: <id>`: the event's unique, stable id (the body's `id`).
- `Consent-Gateway-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` (Stripe-style): the
  HMAC is keyed by the endpoint's secret over `f"{t}.".encode() + body` (the raw bytes, before
  any JSON parsing). A receiver checks it with `verify(secret, header, body, time.time())`,
  which also refuses a timestamp more than 5 minutes from its clock (replays). Several `v1=`
  entries may appear (key rotation); one matching is enough.

Delivery is at least once (`gateway.webhooks.dispatch`): receivers deduplicate on the event
id. This module loads no aiohttp: a receiver imports it without the gateway's HTTP client.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from typing import Final

import orjson

from gateway.store.base import Change, ChangeKind

__all__ = ["EVENT_ID_HEADER", "SIGNATURE_HEADER", "event_body", "sign", "verify"]

SIGNATURE_HEADER: Final = "Consent-Gateway-Signature"
EVENT_ID_HEADER: Final = "Consent-Gateway-Event-Id"
#: a signature header longer than this is refused unread (no work for garbage)
_MAX_HEADER: Final = 4096
_EVENT_TYPES: Final = {
    ChangeKind.CONSENT: "consent.updated",
    ChangeKind.ERASURE: "consent.erased",
}


def _mac(secret: bytes, body: bytes, timestamp: int) -> str:
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The `Consent-Gateway-Signature` value for `body` sent at `timestamp` (unix seconds):
    `t=<timestamp>,v1=<hex HMAC-SHA256(secret, f"{timestamp}." + body)>`."""
    return f"t={int(timestamp)},v1={_mac(secret, body, int(timestamp))}"


def verify(secret: bytes, header: str, body: bytes, now: float, tolerance: float = 300) -> bool:
    """True if `header` (a `Consent-Gateway-Signature` value) signs `body` with `secret` and
    its timestamp is within `tolerance` seconds of `now`. False on anything else (malformed
    header, wrong signature, stale or future timestamp, empty secret); never raises."""
    try:
        # SECURITY: an empty key would let anyone sign; a huge header is refused unread.
        if not isinstance(secret, bytes) or not secret or not isinstance(body, bytes):
            return False
        if not isinstance(header, str) or len(header) > _MAX_HEADER:
            return False
        if not math.isfinite(now) or not math.isfinite(tolerance):
            return False
        timestamp: int | None = None
        candidates: list[str] = []
        for part in header.split(","):
            key, sep, value = part.strip().partition("=")
            if not sep:
                return False
            if key == "t":
                # one timestamp, plain ASCII digits (int() would also take "+1", " 1", "١")
                if timestamp is not None or not (value.isascii() and value.isdigit()):
                    return False
                timestamp = int(value)
            elif key == "v1":
                candidates.append(value)
            # other schemes (v0, a future v2) are ignored, as Stripe's receivers do
        if timestamp is None or not candidates or abs(now - timestamp) > tolerance:
            return False
        expected = _mac(secret, body, timestamp).encode()
        ok = False
        for candidate in candidates:
            # SECURITY: constant-time compare, over bytes (compare_digest refuses non-ASCII
            # str); every candidate is compared so the time does not tell which matched.
            ok |= hmac.compare_digest(expected, candidate.encode("utf-8", "replace"))
        return ok
    except (ValueError, TypeError, OverflowError):
        return False


def event_body(change: Change) -> bytes:
    """The JSON body POSTed for `change`: the same bytes on every retry (keys sorted, no
    send time). `type` is `consent.updated` or `consent.erased`."""
    doc = {
        "id": change.event_id,
        "type": _EVENT_TYPES[change.kind],
        "seq": change.seq,
        "subject": change.subject,
        "purposes": dict(change.purposes),
        "vendors": dict(change.vendors),
        "policy_version": change.policy_version,
        "source": change.source,
        # float always: a change read back from the store and one just written compare equal
        "at": float(change.at),
        "record_id": change.record_id,
    }
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
