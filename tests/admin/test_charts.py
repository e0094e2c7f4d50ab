"""gateway.admin.charts: well-formed SVG, every label escaped, nothing executable."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from markupsafe import Markup

from gateway.admin.charts import Bar, Point, bar_chart, share_bar, timeline_chart

SVG = "{http://www.w3.org/2000/svg}"
SERIES = ("forward", "strip", "drop", "reject")


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def texts(root: ET.Element, cls: str) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text") if t.get("class") == cls]


def bars(root: ET.Element) -> list[ET.Element]:
    return [r for r in root.iter(f"{SVG}rect") if "bar" in (r.get("class") or "").split()]


def test_well_formed_with_legend_rows_and_values() -> None:
    svg = bar_chart(
        "chart-x",
        "Requests by vendor",
        SERIES,
        [Bar("google-analytics-4", (0, 2, 5, 0)), Bar("meta-pixel", (1, 0, 0, 0))],
    )
    assert isinstance(svg, Markup)
    root = parse(svg)
    assert root.get("class") == "chart" and root.get("id") == "chart-x"
    assert root.get("role") == "img" and root.get("aria-labelledby") == "chart-x-title"
    title = root.find(f"{SVG}title")
    assert title is not None and title.text == "Requests by vendor"
    assert title.get("id") == "chart-x-title"
    legend = [
        "".join(g.itertext()) for g in root.iter(f"{SVG}g") if g.get("class") == "legend-item"
    ]
    assert legend == list(SERIES)
    assert texts(root, "label") == ["google-analytics-4", "meta-pixel"]
    assert texts(root, "value") == ["7", "1"]
    # One rect per non-zero value, coloured by series position (a class, never data).
    assert [r.get("class") for r in bars(root)] == [
        "bar series-1",
        "bar series-2",
        "bar series-0",
    ]
    viewbox = root.get("viewBox")
    assert viewbox is not None and viewbox.split()[3] == root.get("height")


def test_bar_lengths_are_proportional() -> None:
    root = parse(bar_chart("c", "t", ("n",), [Bar("a", (10,)), Bar("b", (5,)), Bar("c", (1,))]))
    widths = [float(r.get("width") or 0) for r in bars(root)]
    assert widths[0] == pytest.approx(2 * widths[1]) == pytest.approx(10 * widths[2])
    xs = {r.get("x") for r in bars(root)}
    assert len(xs) == 1  # every bar starts on the same axis


def test_one_series_has_no_legend() -> None:
    root = parse(bar_chart("c", "t", ("requests",), [Bar("a", (3,))]))
    assert not [g for g in root.iter(f"{SVG}g") if g.get("class") == "legend-item"]


HOSTILE = [
    "<script>alert(1)</script>",
    '"><svg onload=alert(1)>',
    "a & b ' \" <",
    "]]><script>x</script>",
    "ctrl\x00\x01\x1b[31mchars\ud800",
]


@pytest.mark.parametrize("label", HOSTILE)
def test_labels_are_escaped(label: str) -> None:
    svg = str(bar_chart("c", label, (label, "x"), [Bar(label, (1, 1))]))
    assert "<script" not in svg and "<svg onload" not in svg
    root = parse(svg)  # well-formed even with characters XML forbids
    shown = label.translate({c: "?" for c in range(0x20) if c not in (9, 10, 13)})
    shown = shown.replace("\ud800", "?")
    title = root.find(f"{SVG}title")
    assert title is not None and title.text == shown
    [row] = [g for g in root.iter(f"{SVG}g") if g.get("class") == "row"]
    row_title = row.find(f"{SVG}title")
    assert row_title is not None and row_title.text == f"{shown}: 2"
    # Nothing executable or styled, whatever the data.
    for el in root.iter():
        assert el.tag not in (f"{SVG}script", f"{SVG}style", f"{SVG}foreignObject")
        assert not any(a.startswith("on") or a == "style" for a in el.attrib)
        assert not any("javascript:" in v for v in el.attrib.values())


def test_long_labels_are_cut_on_the_chart_but_whole_in_the_tooltip() -> None:
    label = "a-very-long-vendor-name-that-goes-on-and-on"
    root = parse(bar_chart("c", "t", ("n",), [Bar(label, (1,))]))
    [shown] = texts(root, "label")
    assert shown.endswith("…") and len(shown) < len(label) and label.startswith(shown[:-1])
    assert label in "".join(root.itertext())


@pytest.mark.parametrize("data", [[], [Bar("a", (0, 0)), Bar("b", (0, 0))]])
def test_empty_data(data: list[Bar]) -> None:
    root = parse(bar_chart("c", "Nothing", ("x", "y"), data))
    assert texts(root, "empty") == ["No data for this period"]
    assert not bars(root)
    assert int(root.get("height") or 0) > 0


@pytest.mark.parametrize(
    ("chart_id", "series", "data"),
    [
        ("Bad Id", ("n",), [Bar("a", (1,))]),
        ('c" onload="x', ("n",), [Bar("a", (1,))]),
        ("c", ("n", "m"), [Bar("a", (1,))]),
        ("c", ("n",), [Bar("a", (-1,))]),
    ],
)
def test_rejects_bad_input(chart_id: str, series: tuple[str, ...], data: list[Bar]) -> None:
    with pytest.raises(ValueError):
        bar_chart(chart_id, "t", series, data)


CLASSES = tuple(f"action-{a}" for a in SERIES)


def test_classes_colour_series_by_name() -> None:
    root = parse(bar_chart("c", "t", SERIES, [Bar("a", (1, 0, 2, 0))], classes=CLASSES))
    assert [r.get("class") for r in bars(root)] == ["bar action-forward", "bar action-drop"]
    swatches = [
        r.get("class") for r in root.iter(f"{SVG}rect") if "swatch" in (r.get("class") or "")
    ]
    assert swatches == [f"swatch {c}" for c in CLASSES]
    with pytest.raises(ValueError):
        bar_chart("c", "t", SERIES, [], classes=("x",))
    with pytest.raises(ValueError):
        bar_chart("c", "t", ("n",), [], classes=('a" onload="x',))


def test_timeline_stacks_columns_in_order() -> None:
    points = [
        Point("10:00", "10:00", (4, 0, 4, 0)),
        Point("10:01", "", (0, 0, 0, 0)),
        Point("10:02 <b>", "10:02", (1, 1, 0, 2)),
    ]
    root = parse(timeline_chart("chart-t", "Requests", SERIES, points, classes=CLASSES))
    cols = [g for g in root.iter(f"{SVG}g") if g.get("class") == "col"]
    assert len(cols) == 3
    tips = ["".join(t.itertext()) for c in cols for t in c.findall(f"{SVG}title")]
    assert tips[2] == "10:02 <b>: forward 1, strip 1, drop 0, reject 2"
    stacked = [
        [r.get("class") for r in c.iter(f"{SVG}rect") if "bar" in (r.get("class") or "")]
        for c in cols
    ]
    assert stacked == [
        ["bar action-forward", "bar action-drop"],
        [],
        ["bar action-forward", "bar action-strip", "bar action-reject"],
    ]
    # the tallest column (8) reaches the top; heights are proportional
    first = [
        float(r.get("height") or 0)
        for r in cols[0].iter(f"{SVG}rect")
        if "bar" in (r.get("class") or "")
    ]
    assert first[0] == pytest.approx(first[1])
    assert texts(root, "tick") == ["10:00", "10:02"]
    assert "8" in texts(root, "value")


def test_timeline_without_data_says_so() -> None:
    root = parse(timeline_chart("c", "t", SERIES, [Point("a", "a", (0, 0, 0, 0))]))
    assert texts(root, "empty") == ["No data for this period"]
    assert not bars(root)
    with pytest.raises(ValueError):
        timeline_chart("c", "t", SERIES, [Point("a", "a", (1,))])


def test_share_bar_splits_its_width() -> None:
    root = parse(share_bar("ga4 <x>: 50 %", ("a", "b", "c"), (1, 0, 1), ("s-a", "s-b", "s-c")))
    assert root.get("aria-label") == "ga4 <x>: 50 %"
    widths = [(r.get("class"), float(r.get("width") or 0)) for r in bars(root)]
    assert widths == [("bar s-a", 60.0), ("bar s-c", 60.0)]
    assert not bars(parse(share_bar("none", ("a",), (0,), ("s-a",))))
    with pytest.raises(ValueError):
        share_bar("t", ("a", "b"), (1,), ("s-a", "s-b"))
