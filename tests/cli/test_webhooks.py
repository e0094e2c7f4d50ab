"""gateway.cli.webhooks: `webhooks status` rows as a text table. The rows come from
`gateway.webhooks.dispatch.status` (tested with the dispatcher); the command end to end
is in tests/cli/test_commands.py."""

from __future__ import annotations

import time

import pytest

from gateway.cli.webhooks import format_status


def _row(name: str, **kw: object) -> dict[str, object]:
    """A `status` row: registered, nothing pending, never failed."""
    return {
        "name": name,
        "url": f"https://{name}.example.com/hook",
        "configured": True,
        "registered": True,
        "last_seq": 3,
        "backlog": 0,
        "delivered": 3,
        "attempts": 0,
        "last_error": None,
        "next_attempt": None,
        "retry_in": None,
        "last_success": None,
    } | kw


#: an endpoint whose receiver is down, and one registered once but no longer configured
FAILING = _row(
    "crm",
    url="http://127.0.0.1:8081/hook",
    last_seq=0,
    backlog=3,
    delivered=0,
    attempts=2,
    last_error="ClientConnectorError",
    next_attempt=time.time() + 0.04,
    retry_in=0.04,
)
LEGACY = _row("legacy", url=None, configured=False)


def test_one_line_per_endpoint_under_a_header() -> None:
    lines = format_status([FAILING, LEGACY]).splitlines()
    assert lines[0].split() == [
        "ENDPOINT",
        "URL",
        "LAST_SEQ",
        "BACKLOG",
        "DELIVERED",
        "ATTEMPTS",
        "RETRY_IN",
        "LAST_ERROR",
        "LAST_SUCCESS",
    ]
    assert lines[1].split() == [
        "crm",
        "http://127.0.0.1:8081/hook",
        "0",
        "3",
        "0",
        "2",
        "0.0s",
        "ClientConnectorError",
        "-",
    ]
    assert "legacy" in lines[2] and "(not configured)" in lines[2]
    assert len(lines) == 3
    # columns line up: every cell starts where its header does
    assert lines[1].index("ClientConnectorError") == lines[0].index("LAST_ERROR")


def test_unregistered_endpoint_shows_dashes() -> None:
    row = _row("cdp", registered=False, last_seq=None, backlog=None, delivered=0)
    assert format_status([row]).splitlines()[1].split()[:5] == [
        "cdp",
        "https://cdp.example.com/hook",
        "-",
        "-",
        "0",
    ]


@pytest.mark.parametrize(
    ("last_success", "shown"),
    [
        (1_764_412_800.5, "2025-11-29T10:40:00Z"),
        (1_764_412_800, "2025-11-29T10:40:00Z"),
        (None, "-"),
        (0, "-"),
        (True, "-"),  # not a time
        ("yesterday", "-"),
    ],
)
def test_last_success_in_utc(last_success: object, shown: str) -> None:
    line = format_status([_row("crm", last_success=last_success)]).splitlines()[1]
    assert line.split()[-1] == shown


def test_empty() -> None:
    assert format_status([]) == "no webhook endpoints configured or registered"
