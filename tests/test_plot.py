"""%%plot through jupyter_client: every kind draws an SVG with its title and legend, times on x read as times,
large results are reduced in the engine, and mistakes are named."""

from __future__ import annotations

import re
import time

import pytest

from conftest import execute

SETUP = """
CREATE TABLE readings AS
SELECT to_timestamp(1700000000 + value * 60) AS ts,
       CASE value % 3 WHEN 0 THEN 'north' WHEN 1 THEN 'south' ELSE 'east' END AS site,
       20 + 5 * sin(value / 50.0) AS temperature,
       40 + (value % 17) AS humidity
FROM generate_series(0, 1439)
"""


@pytest.fixture(scope="module", autouse=True)
def readings(kc):
    assert execute(kc, SETUP).status == "ok"


def plot(kc, code: str, timeout: float = 60):
    ex = execute(kc, code, timeout=timeout)
    assert ex.status == "ok", ex.outputs
    data = ex.result
    assert set(data) >= {"image/svg+xml", "text/plain"}, data.keys()
    svg = data["image/svg+xml"]
    assert svg.lstrip().startswith("<svg") and svg.rstrip().endswith("</svg>")
    return svg, data["text/plain"]


def texts(svg: str) -> list[str]:
    """The text elements of an SVG, unescaped enough for assertions."""
    return [re.sub(r"&amp;", "&", t).strip() for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]


def test_a_line_plot_with_several_y_columns_has_title_axes_and_legend(kc):
    svg, text = plot(kc, "%%plot line x=ts y=temperature,humidity title='Climate & comfort'\nSELECT * FROM readings")
    t = texts(svg)
    assert "Climate & comfort" in t
    assert "temperature" in t and "humidity" in t  # legend
    assert "ts" in t  # x axis label
    # times on x are drawn as times of day (the data spans one day)
    assert any(re.fullmatch(r"\d\d:\d\d", label) for label in t), t
    assert "<polyline" in svg or "<path" in svg
    assert text.startswith('line plot "Climate & comfort", x=ts (time), 2 series: temperature, humidity; 1,440 rows')


def test_a_series_column_gives_one_line_per_value(kc):
    svg, text = plot(kc, "%%plot line x=ts y=temperature series=site\nSELECT * FROM readings")
    t = texts(svg)
    assert {"north", "south", "east"} <= set(t)
    assert "3 series: north, south, east" in text
    assert "temperature by ts" in t  # default title


def test_scatter_area_bar_and_histogram_draw(kc):
    svg, text = plot(kc, "%%plot scatter x=temperature y=humidity title='T vs H'\nSELECT * FROM readings")
    assert "T vs H" in texts(svg) and svg.count("<circle") == 1440
    assert "1,440 points" in text

    svg, text = plot(kc, "%%plot area x=ts y=temperature title=Warmth\nSELECT * FROM readings")
    assert "Warmth" in texts(svg) and "<polygon" in svg

    svg, text = plot(
        kc,
        "%%plot bar x=site y=avg_t,max_h title='By site'\n"
        "SELECT site, avg(temperature) AS avg_t, max(humidity) AS max_h FROM readings GROUP BY site ORDER BY site",
    )
    t = texts(svg)
    assert {"By site", "east", "north", "south", "avg_t", "max_h"} <= set(t)
    assert "x=site (categories)" in text and "6 bars" in text

    svg, text = plot(kc, "%%plot histogram y=temperature bins=12 title='Temperatures'\nSELECT * FROM readings")
    assert "Temperatures" in texts(svg) and "count" in texts(svg)
    assert "12 bins over 1,440 rows" in text
    # every row is counted once: the bars' heights add up to the rows (checked through the engine's text)
    assert "non-empty bins" in text


def test_box_plots_show_exact_quartiles_per_series(kc):
    svg, text = plot(kc, "%%plot box y=humidity series=site title='Humidity by site'\nSELECT * FROM readings")
    t = texts(svg)
    assert {"Humidity by site", "east", "north", "south", "site", "humidity"} <= set(t)
    # humidity is 40 + value % 17 over 0..1439: each site's quartiles, checked against numpy's
    assert "3 series: east (min 40, q1 44, median 48, q3 52, max 56, n=480)" in text, text
    assert "3 boxes" in text


def test_a_histogram_by_series_overlays_a_legend(kc):
    svg, text = plot(kc, "%%plot histogram y=humidity series=site bins=17\nSELECT * FROM readings")
    assert {"north", "south", "east"} <= set(texts(svg))
    assert "distribution of humidity" in texts(svg)


def test_two_million_points_are_reduced_in_the_engine(kc):
    svg, text = plot(
        kc,
        "%%plot line x=i y=v title='Two million'\n"
        "SELECT value AS i, CASE WHEN value = 1234567 THEN 5 ELSE sin(value / 20000.0) END AS v "
        "FROM generate_series(1, 2000000)",
        timeout=120,
    )
    assert len(svg.encode()) < 2_000_000, len(svg)
    assert "2,000,000 rows" in text and "M4: 2,000,000 points →" in text
    drawn = int(re.search(r"M4: 2,000,000 points → ([\d,]+)", text).group(1).replace(",", ""))
    assert 1_000 < drawn <= 4 * 3200, drawn
    # the one spike of 5 among values in [-1, 1] survives the reduction: the y axis reaches it
    labels = [float(t) for t in texts(svg) if re.fullmatch(r"-?\d+(\.\d+)?", t)]
    assert max(labels) >= 4.5, texts(svg)


def test_a_dense_scatter_becomes_a_density_grid(kc):
    svg, text = plot(
        kc,
        "%%plot scatter x=a y=b\nSELECT value % 1000 AS a, (value * 7919) % 997 AS b FROM generate_series(1, 300000)",
    )
    assert "density: 300,000 rows →" in text
    assert svg.count("<circle") == 0 and svg.count("<rect") > 100
    assert len(svg.encode()) < 2_000_000


@pytest.mark.parametrize(
    ("code", "ename", "message"),
    [
        ("%%plot line x=nope\nSELECT * FROM readings", "PlanError", "no column 'nope' in the query's result; its columns are: ts, site"),
        ("%%plot line x=ts y=site\nSELECT * FROM readings", "PlanError", "y column 'site' is Utf8, not numeric"),
        ("%%plot pie\nSELECT * FROM readings", "UsageError", "unknown plot kind 'pie'; kinds: line, area, scatter, bar, histogram"),
        ("%%plot line x=site y=temperature\nSELECT * FROM readings", "PlanError", "x column 'site' is Utf8; a line plot needs numbers or times"),
        ("%%plot line\n", "UsageError", "%%plot needs a query"),
        ("%%plot line x=ts\nCREATE TABLE t2 AS SELECT 1", "PlanError", "expected a query (SELECT ...) as the last statement"),
        ("%%plot line x=ts\nSELECT * FROM missing_table", "PlanError", "missing_table"),
        ("%%plot bar width=10\nSELECT 1", "UsageError", "width=10 is not a whole number from 200 to 4000"),
    ],
)
def test_plot_mistakes_are_named(kc, code, ename, message):
    ex = execute(kc, code)
    assert ex.status == "error"
    assert ex.error["ename"] == ename, ex.error
    assert message in ex.error["evalue"], ex.error["evalue"]
    # the kernel lives on
    assert execute(kc, "SELECT 1").status == "ok"


def test_a_watched_plot_redraws_in_place(kc):
    assert execute(kc, "CREATE TABLE growing (k TEXT, n BIGINT); INSERT INTO growing VALUES ('a', 1)").status == "ok"
    ex = execute(kc, "%%watch 300ms\n%%plot bar x=k y=n title='Growing'\nSELECT k, n FROM growing")
    assert ex.status == "ok", ex.outputs
    first = ex.of_type("display_data")[0]["content"]
    display_id = first["transient"]["display_id"]
    assert "1 bars" in first["data"]["text/plain"] and "Growing" in first["data"]["image/svg+xml"]
    assert "every 300.0 ms" in first["data"]["image/svg+xml"]  # the watch footer is drawn into the picture
    watch_id = ex.reply["parent_header"]["msg_id"]
    assert execute(kc, "INSERT INTO growing VALUES ('b', 2)").status == "ok"
    deadline = time.monotonic() + 30
    while True:
        assert time.monotonic() < deadline, "no redrawn plot with the new bar"
        msg = kc.get_iopub_msg(timeout=10)
        if msg["parent_header"].get("msg_id") != watch_id or msg["msg_type"] != "update_display_data":
            continue
        assert msg["content"]["transient"]["display_id"] == display_id
        if "2 bars" in msg["content"]["data"]["text/plain"]:
            assert ">b<" in msg["content"]["data"]["image/svg+xml"].replace("\n", "")
            break
    assert "stopped 1 watch" in execute(kc, "%%watch stop").result["text/plain"]
