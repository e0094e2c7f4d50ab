"""Server-rendered SVG bar charts for the admin overview: no scripts, no styles inline.

`bar_chart` returns one `<svg class="chart">` element as `markupsafe.Markup`, so a
template places it as is: this module is the one that escapes. Every label and
title is XML-escaped, with characters XML 1.0 forbids replaced by `?`, so the
output is well-formed XML (a standalone SVG) as well as valid inline SVG in HTML.
Colours come from classes (`series-0`, `series-1`, …, by series position, never
from data) styled in `static/admin.css`: the page's CSP allows no inline styles.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from xml.sax.saxutils import escape

from markupsafe import Markup

__all__ = ["Bar", "bar_chart"]

_WIDTH: Final = 640
_LABEL_WIDTH: Final = 190
_VALUE_WIDTH: Final = 60
_ROW: Final = 22
_GAP: Final = 6
_LEGEND_ITEM: Final = 120
_LEGEND_ROW: Final = 20
_LABEL_CHARS: Final = 26
_LEGEND_CHARS: Final = 14
# XML 1.0 §2.2 Char: everything else may not appear in a document, even escaped.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_CHART_ID = re.compile(r"[a-z][a-z0-9-]*")


@dataclass(frozen=True, slots=True)
class Bar:
    """One row of a chart: its label and one value per series (in series order)."""

    label: str
    values: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.values)


def _text(value: str) -> str:
    """`value` as XML character data (and as a double-quoted attribute value)."""
    return escape(_NOT_XML.sub("?", value), {'"': "&quot;"})


def _cut(value: str, chars: int) -> str:
    return value if len(value) <= chars else value[: chars - 1] + "…"


def bar_chart(chart_id: str, title: str, series: Sequence[str], bars: Sequence[Bar]) -> Markup:
    """A horizontal (stacked, with several series) bar chart of `bars`, in the given order.

    `chart_id` (a lower-case slug of the caller's, not data) prefixes element ids.
    Long labels are cut on the chart and given whole in each row's tooltip (`<title>`).
    With no bars, or only zeros, the chart says there is no data. Raises `ValueError`
    for a bad `chart_id` or a bar whose values do not match `series`.
    """
    if not _CHART_ID.fullmatch(chart_id):
        raise ValueError("chart_id must be a lower-case slug")
    if any(len(b.values) != len(series) or min(b.values, default=0) < 0 for b in bars):
        raise ValueError("each bar needs one non-negative value per series")
    title_id = f"{chart_id}-title"
    out: list[str] = []
    y = 0
    if len(series) > 1:
        per_row = max(1, (_WIDTH - _LABEL_WIDTH) // _LEGEND_ITEM)
        for i, name in enumerate(series):
            lx = _LABEL_WIDTH + (i % per_row) * _LEGEND_ITEM
            ly = (i // per_row) * _LEGEND_ROW
            out.append(
                f'<g class="legend-item"><rect class="swatch series-{i}" x="{lx}" y="{ly + 4}" '
                f'width="12" height="12"/><text x="{lx + 16}" y="{ly + 14}">'
                f"{_text(_cut(name, _LEGEND_CHARS))}</text></g>"
            )
        y = ((len(series) - 1) // per_row + 1) * _LEGEND_ROW + _GAP
    top = max((b.total for b in bars), default=0)
    if top == 0:
        out.append(
            f'<text class="empty" x="{_WIDTH // 2}" y="{y + 20}" text-anchor="middle">'
            "No data for this period</text>"
        )
        y += 32
    else:
        span = _WIDTH - _LABEL_WIDTH - _VALUE_WIDTH
        for bar in bars:
            label = _text(bar.label)
            parts = [
                f'<g class="row"><title>{label}: {bar.total}</title>',
                (
                    f'<text class="label" x="{_LABEL_WIDTH - 8}" y="{y + 15}" text-anchor="end">'
                    f"{_text(_cut(bar.label, _LABEL_CHARS))}</text>"
                ),
            ]
            x = float(_LABEL_WIDTH)
            for i, (name, value) in enumerate(zip(series, bar.values, strict=True)):
                if value == 0:
                    continue
                w = value / top * span
                parts.append(
                    f'<rect class="bar series-{i}" x="{x:.1f}" y="{y}" width="{max(w, 1.0):.1f}" '
                    f'height="{_ROW - 4}"><title>{label}, {_text(name)}: {value}</title></rect>'
                )
                x += w
            parts.append(f'<text class="value" x="{x + 6:.1f}" y="{y + 15}">{bar.total}</text></g>')
            out.append("".join(parts))
            y += _ROW + _GAP
    height = y + _GAP
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{chart_id}" '
        f'viewBox="0 0 {_WIDTH} {height}" width="{_WIDTH}" height="{height}" '
        f'role="img" aria-labelledby="{title_id}">'
        f'<title id="{title_id}">{_text(title)}</title>{"".join(out)}</svg>'
    )
