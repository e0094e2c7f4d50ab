"""gateway.webhooks.wire: the signature scheme and the event body, what a receiver relies on;
and that a receiver can import it without aiohttp."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.store.base import Change, ChangeKind
from gateway.webhooks.wire import event_body, sign, verify
from tests.conftest import ROOT

#: fixed, so that the tables' ids are the same in every run (pytest-xdist compares them)
SECRET = b"whsec-" + b"0f1e2d3c4b5a6978" * 2
TS = 1_700_000_000

# -- signing ----------------------------------------------------------------------------------


def test_sign_is_stripe_style_hmac() -> None:
    body = b'{"id":"e1"}'
    mac = hmac.new(SECRET, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, body, TS) == f"t=1700000000,v1={mac}"


def test_verify_round_trip() -> None:
    body = b'{"a":1}'
    assert verify(SECRET, sign(SECRET, body, TS), body, now=TS)


_BODY = b'{"id":"e1","type":"consent.updated"}'
_SIG = sign(SECRET, _BODY, TS).split("v1=")[1]


@pytest.mark.parametrize(
    ("secret", "header", "body", "now", "ok"),
    [
        # (secret, header, body, now, verifies?)
        (SECRET, f"t={TS},v1={_SIG}", _BODY, TS, True),
        (SECRET, f"t={TS},v1={_SIG}", _BODY, TS + 300, True),  # at the tolerance: accepted
        (SECRET, f"t={TS},v1={_SIG}", _BODY, TS - 300, True),
        (SECRET, f" t={TS} , v1={_SIG} ", _BODY, TS, True),  # spaces around parts
        (SECRET, f"t={TS},v0=old,v1={_SIG}", _BODY, TS, True),  # other schemes ignored
        (SECRET, f"t={TS},v1={'0' * 64},v1={_SIG}", _BODY, TS, True),  # key rotation
        (SECRET, f"t={TS},v1={_SIG}", _BODY + b" ", TS, False),  # tampered body
        (SECRET, f"t={TS},v1={_SIG}", _BODY.replace(b"e1", b"e2"), TS, False),
        (SECRET, f"t={TS + 1},v1={_SIG}", _BODY, TS, False),  # tampered timestamp
        (SECRET + b"x", f"t={TS},v1={_SIG}", _BODY, TS, False),  # wrong secret
        (b"", sign(b"", _BODY, TS), _BODY, TS, False),  # an empty secret verifies nothing
        (SECRET, f"t={TS},v1={_SIG}", _BODY, TS + 301, False),  # stale (replay)
        (SECRET, f"t={TS},v1={_SIG}", _BODY, TS - 301, False),  # from the future
        (SECRET, f"t={TS},v1={_SIG}", _BODY, float("nan"), False),
    ],
)
def test_verify_table(secret: bytes, header: str, body: bytes, now: float, ok: bool) -> None:
    assert verify(secret, header, body, now) is ok


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        f"v1={_SIG}",  # no timestamp
        f"t={TS}",  # no signature
        f"t={TS},v1=",
        f"t=,v1={_SIG}",
        f"t=abc,v1={_SIG}",
        f"t=+{TS},v1={_SIG}",
        f"t=-{TS},v1={_SIG}",
        f"t={TS}.0,v1={_SIG}",
        "t=١٧٠٠٠٠٠٠٠٠,v1=" + _SIG,  # non-ASCII digits
        f"t={TS},t={TS},v1={_SIG}",  # two timestamps
        f"t={TS};v1={_SIG}",
        f"t={TS},v1={_SIG},junk",
        f"t={TS},v1={_SIG}é",
        f"t={TS},v1={_SIG}\udcff",  # a lone surrogate
        f"t={TS},v1={_SIG[:-1]}",
        f"t={TS},v1={_SIG.upper()}",
        f"t={'9' * 5000},v1={_SIG}",  # huge
        f"t={'9' * 400},v1={_SIG}",  # too big for a float
        None,
        b"t=1,v1=00",
    ],
)
def test_verify_refuses_malformed_headers(header: Any) -> None:
    assert verify(SECRET, header, _BODY, TS) is False


@given(
    secret=st.binary(min_size=1, max_size=128),
    body=st.binary(max_size=2048),
    ts=st.integers(min_value=0, max_value=2**40),
    skew=st.integers(min_value=-300, max_value=300),
)
def test_verify_accepts_every_signature(secret: bytes, body: bytes, ts: int, skew: int) -> None:
    assert verify(secret, sign(secret, body, ts), body, now=ts + skew)


@given(secret=st.binary(min_size=1, max_size=64), body=st.binary(max_size=256), other=st.binary())
def test_verify_refuses_another_body(secret: bytes, body: bytes, other: bytes) -> None:
    if other != body:
        assert not verify(secret, sign(secret, body, TS), other, now=TS)


# -- the event body ---------------------------------------------------------------------------


def _change(kind: ChangeKind, **kw: Any) -> Change:
    fields: dict[str, Any] = {
        "seq": 7,
        "event_id": "ev-7",
        "kind": kind,
        "subject": "subj",
        "purposes": {"analytics": True, "advertising": False},
        "policy_version": 3,
        "at": 1000.5,
        "source": "banner",
        "record_id": 42,
    }
    return Change(**(fields | kw))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            _change(ChangeKind.CONSENT, vendors={"posthog": False}),
            {
                "id": "ev-7",
                "type": "consent.updated",
                "seq": 7,
                "subject": "subj",
                "purposes": {"advertising": False, "analytics": True},
                "vendors": {"posthog": False},
                "policy_version": 3,
                "source": "banner",
                "at": 1000.5,
                "record_id": 42,
            },
        ),
        (
            _change(
                ChangeKind.ERASURE, purposes={}, policy_version=0, source="erasure", record_id=None
            ),
            {
                "id": "ev-7",
                "type": "consent.erased",
                "seq": 7,
                "subject": "subj",
                "purposes": {},
                "vendors": {},
                "policy_version": 0,
                "source": "erasure",
                "at": 1000.5,
                "record_id": None,
            },
        ),
    ],
)
def test_event_body(change: Change, expected: dict[str, object]) -> None:
    body = event_body(change)
    assert orjson.loads(body) == expected
    assert event_body(change) == body  # stable: a retry sends the same bytes


# -- what a receiver imports ------------------------------------------------------------------


def test_a_receiver_imports_the_wire_format_without_aiohttp() -> None:
    # a fresh interpreter: this process has loaded aiohttp already
    code = "import sys, gateway.webhooks.wire\nprint('aiohttp' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert (done.returncode, done.stdout.strip()) == (0, "False"), done.stderr
