"""Server-rendered SVG bar charts for the admin overview: no scripts, no styles inline.

`bar_chart` returns one `<svg class="chart">` element as `markupsafe.Markup`, so a
template places it as is: this module is the one that escapes. Every label and
title is XML-escaped, with characters XML 1.0 forbids replaced by `?`, so the
output is well-formed XML (a standalone SVG) as well as valid inline SVG in HTML.
Colours come from classes styled in `static/admin.css` (the page's CSP allows no
inline styles): `series-0`, `series-1`, … by series position, or the caller's own
slugs (`action-drop`: one colour per action on every page), never from data.

`timeline_chart` draws stacked columns over time (requests by action per bucket) and
`share_bar` one thin 100 % bar (a vendor's requests by outcome), on the same terms.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from xml.sax.saxutils import escape

from markupsafe import Markup

__all__ = ["Bar", "Point", "bar_chart", "share_bar", "timeline_chart"]

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


def _classes(series: Sequence[str], classes: Sequence[str] | None) -> list[str]:
    """Each series' colour class: the caller's slugs, else `series-<position>`."""
    if classes is None:
        return [f"series-{i}" for i in range(len(series))]
    if len(classes) != len(series) or not all(_CHART_ID.fullmatch(c) for c in classes):
        raise ValueError("classes must be one lower-case slug per series")
    return list(classes)


def _legend(series: Sequence[str], cls: Sequence[str], x0: int) -> tuple[list[str], int]:
    """Legend items (colour swatch and name) from `x0`, and the height they take."""
    per_row = max(1, (_WIDTH - x0) // _LEGEND_ITEM)
    out = []
    for i, name in enumerate(series):
        lx = x0 + (i % per_row) * _LEGEND_ITEM
        ly = (i // per_row) * _LEGEND_ROW
        out.append(
            f'<g class="legend-item"><rect class="swatch {cls[i]}" x="{lx}" y="{ly + 4}" '
            f'width="12" height="12"/><text x="{lx + 16}" y="{ly + 14}">'
            f"{_text(_cut(name, _LEGEND_CHARS))}</text></g>"
        )
    return out, ((len(series) - 1) // per_row + 1) * _LEGEND_ROW + _GAP


def bar_chart(
    chart_id: str,
    title: str,
    series: Sequence[str],
    bars: Sequence[Bar],
    classes: Sequence[str] | None = None,
) -> Markup:
    """A horizontal (stacked, with several series) bar chart of `bars`, in the given order.

    `chart_id` (a lower-case slug of the caller's, not data) prefixes element ids.
    Long labels are cut on the chart and given whole in each row's tooltip (`<title>`).
    With no bars, or only zeros, the chart says there is no data. `classes`: each
    series' colour class (default `series-<position>`). Raises `ValueError` for a bad
    `chart_id` or `classes`, or a bar whose values do not match `series`.
    """
    if not _CHART_ID.fullmatch(chart_id):
        raise ValueError("chart_id must be a lower-case slug")
    if any(len(b.values) != len(series) or min(b.values, default=0) < 0 for b in bars):
        raise ValueError("each bar needs one non-negative value per series")
    cls = _classes(series, classes)
    out: list[str] = []
    y = 0
    if len(series) > 1:
        out, y = _legend(series, cls, _LABEL_WIDTH)
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
                    f'<rect class="bar {cls[i]}" x="{x:.1f}" y="{y}" width="{max(w, 1.0):.1f}" '
                    f'height="{_ROW - 4}"><title>{label}, {_text(name)}: {value}</title></rect>'
                )
                x += w
            parts.append(f'<text class="value" x="{x + 6:.1f}" y="{y + 15}">{bar.total}</text></g>')
            out.append("".join(parts))
            y += _ROW + _GAP
    return _svg(chart_id, title, out, y + _GAP)


def _svg(chart_id: str, title: str, parts: Sequence[str], height: int) -> Markup:
    title_id = f"{chart_id}-title"
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{chart_id}" '
        f'viewBox="0 0 {_WIDTH} {height}" width="{_WIDTH}" height="{height}" '
        f'role="img" aria-labelledby="{title_id}">'
        f'<title id="{title_id}">{_text(title)}</title>{"".join(parts)}</svg>'
    )


@dataclass(frozen=True, slots=True)
class Point:
    """One column of a timeline: its tooltip label, its axis label (or "" for none) and
    one value per series."""

    label: str
    tick: str
    values: tuple[int, ...]


_PLOT_LEFT: Final = 48
_PLOT_HEIGHT: Final = 160
_AXIS: Final = 22


def timeline_chart(
    chart_id: str,
    title: str,
    series: Sequence[str],
    points: Sequence[Point],
    classes: Sequence[str] | None = None,
) -> Markup:
    """Stacked columns, one per point, oldest on the left, with a legend, the highest
    total on the y axis and each point's `tick` under it; each column's tooltip gives
    its label and every series' value. With only zeros the chart says there is no
    data. Raises `ValueError` as `bar_chart` does.
    """
    if not _CHART_ID.fullmatch(chart_id):
        raise ValueError("chart_id must be a lower-case slug")
    if any(len(p.values) != len(series) or min(p.values, default=0) < 0 for p in points):
        raise ValueError("each point needs one non-negative value per series")
    cls = _classes(series, classes)
    out, top_y = _legend(series, cls, _PLOT_LEFT)
    top = max((sum(p.values) for p in points), default=0)
    base = top_y + _PLOT_HEIGHT
    out.append(
        f'<line class="axis" x1="{_PLOT_LEFT}" y1="{base}" x2="{_WIDTH}" y2="{base}"/>'
        f'<text class="value" x="{_PLOT_LEFT - 6}" y="{top_y + 10}" text-anchor="end">'
        f"{top}</text>"
        f'<text class="value" x="{_PLOT_LEFT - 6}" y="{base}" text-anchor="end">0</text>'
    )
    if top == 0:
        out.append(
            f'<text class="empty" x="{(_WIDTH + _PLOT_LEFT) // 2}" y="{base - _PLOT_HEIGHT // 2}"'
            ' text-anchor="middle">No data for this period</text>'
        )
    step = (_WIDTH - _PLOT_LEFT) / max(len(points), 1)
    gap = min(2.0, step / 4)
    for i, p in enumerate(points):
        x = _PLOT_LEFT + i * step
        parts = []
        if top:
            detail = ", ".join(f"{_text(n)} {v}" for n, v in zip(series, p.values, strict=True))
            parts.append(f'<g class="col"><title>{_text(p.label)}: {detail}</title>')
            # a transparent full-height target, so a thin column still shows its tooltip
            parts.append(
                f'<rect class="hit" x="{x:.1f}" y="{top_y}" width="{step:.1f}" '
                f'height="{_PLOT_HEIGHT}"/>'
            )
            y = float(base)
            for c, value in zip(cls, p.values, strict=True):
                if value == 0:
                    continue
                h = value / top * (_PLOT_HEIGHT - 12)
                y -= h
                parts.append(
                    f'<rect class="bar {c}" x="{x + gap / 2:.1f}" y="{y:.1f}" '
                    f'width="{max(step - gap, 1.0):.1f}" height="{max(h, 1.0):.1f}"/>'
                )
            parts.append("</g>")
        if p.tick:
            parts.append(
                f'<text class="tick" x="{x + step / 2:.1f}" y="{base + 16}" '
                f'text-anchor="middle">{_text(p.tick)}</text>'
            )
        out.append("".join(parts))
    return _svg(chart_id, title, out, base + _AXIS + _GAP)


_SHARE_WIDTH: Final = 120
_SHARE_HEIGHT: Final = 12


def share_bar(
    title: str, series: Sequence[str], values: Sequence[int], classes: Sequence[str]
) -> Markup:
    """A thin bar, its full width `sum(values)`, split by series in order: a table cell's
    picture of one row's shares (the numbers are in the row as text). Raises
    `ValueError` for values or classes that do not match `series`."""
    cls = _classes(series, classes)
    if len(values) != len(series) or min(values, default=0) < 0:
        raise ValueError("one non-negative value per series")
    total = sum(values)
    parts = []
    x = 0.0
    for c, name, value in zip(cls, series, values, strict=True):
        if value == 0 or total == 0:
            continue
        w = value / total * _SHARE_WIDTH
        parts.append(
            f'<rect class="bar {c}" x="{x:.1f}" y="0" width="{w:.1f}" '
            f'height="{_SHARE_HEIGHT}"><title>{_text(name)}: {value}</title></rect>'
        )
        x += w
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="share-bar" '
        f'viewBox="0 0 {_SHARE_WIDTH} {_SHARE_HEIGHT}" width="{_SHARE_WIDTH}" '
        f'height="{_SHARE_HEIGHT}" role="img" aria-label="{_text(title)}">'
        f"{''.join(parts)}</svg>"
    )
