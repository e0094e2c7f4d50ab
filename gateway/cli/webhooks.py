"""`consent-gateway webhooks status` as text: the rows of `gateway.webhooks.dispatch.status`
as a table, one line per endpoint.

Shows only what `status` returned, which holds no secret and no URL userinfo or query.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

__all__ = ["format_status"]


def _when(value: object) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool) or not value:
        return "-"
    return datetime.fromtimestamp(float(value), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_status(rows: Sequence[dict[str, object]]) -> str:
    """`status` rows as a plain-text table (one line per endpoint, a header first).
    Shows only what `status` returned: no secrets, no URL queries."""
    headers: tuple[str, ...] = ("ENDPOINT", "URL", "LAST_SEQ", "BACKLOG", "DELIVERED")
    headers += ("ATTEMPTS", "RETRY_IN", "LAST_ERROR", "LAST_SUCCESS")
    table: list[tuple[str, ...]] = [headers]
    for r in rows:
        url = r.get("url") if r.get("configured", True) else "(not configured)"
        retry = r.get("retry_in")
        table.append(
            (
                str(r.get("name")),
                "-" if url is None else str(url),
                "-" if r.get("last_seq") is None else str(r.get("last_seq")),
                "-" if r.get("backlog") is None else str(r.get("backlog")),
                str(r.get("delivered", 0)),
                str(r.get("attempts", 0)),
                f"{retry:.1f}s" if isinstance(retry, int | float) else "-",
                str(r.get("last_error") or "-"),
                _when(r.get("last_success")),
            )
        )
    if len(table) == 1:
        return "no webhook endpoints configured or registered"
    widths = [max(len(line[i]) for line in table) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in table
    )
