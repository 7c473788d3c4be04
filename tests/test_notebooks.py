"""Every notebook in tutorials/ and notebooks/ runs top to bottom on the Kestrel kernel, and its key outputs are
what the text around them promises."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pyarrow.parquet as pq
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted([*ROOT.glob("tutorials/*.ipynb"), *ROOT.glob("notebooks/*.ipynb")])

# For each notebook: (a snippet of a cell's source, a snippet its output must contain).
EXPECTED: dict[str, list[tuple[str, str]]] = {
    "01-first-queries.ipynb": [
        ("'Hello, Kestrel'", "| Hello, Kestrel |     42 |"),
        ("CREATE TABLE sessions", "Inserted 6 rows into sessions"),
        ("AVG(duration)        AS avg_session", "|       1 | 16.666666666666668 |              2 |"),
        ("WHERE user_id = 2 ORDER BY page", "|       2 | checkout |     NULL |"),
        ("AS sessions_last_7_days", "(3 rows)"),
        ("SHOW TABLES", "sessions"),
        ("DESCRIBE sessions", "Timestamp(ns)"),
        ("ORDER BY visits DESC", "| product  |     75 |         35.5 |"),
        ("TO 'output/user_features.parquet'", "Copied 25 rows to 'output/user_features.parquet'"),
        ("AS mean_avg_session", "|    25 |             36.4 |"),
        ("SELECT value AS n, value * value AS n_squared FROM generate_series(1, 2000000)", "(showing 50 of 2,000,000 rows)"),
        ("title='Visits per page'", 'bar plot "Visits per page", x=page (categories), y=visits; 6 rows, 6 bars drawn'),
        ("bins=20 title='How long sessions last", "of duration, y=duration; 400 rows, 15 non-empty bins drawn (20 bins over 400 rows)"),
        ("title='Two million points'", "2,000,000 rows"),
        ("FROM sesions", "table 'datafusion.public.sesions' not found"),
    ],
    "02-vector-search.ipynb": [
        ('CREATE TABLE points', 'Inserted 4 rows into points'),
        ('l2_distance(v, [1.0, 0.0, 0.0])', '2.236'),
        ('[10.2, 10.3]', '0.006134969'),
        ('AS dot_of_units', '0.96'),
        ("'too short'", 'expected a vector of 3 values'),
        ('CREATE TABLE articles AS', 'Created table articles'),
        ('DESCRIBE articles', 'FixedSizeList(384 x Float32)'),
        ('AS since', '(8 rows)'),
        ('WHERE id = 286', '384'),
        ("LOCATION 'data/questions.parquet'", 'how do plants make food from sunlight?'),
        ("'how do plants make food from sunlight?'", 'Chlorophyll in leaves'),
        ("ILIKE '%plant%'", 'Duplantis'),
        ("embed('which animals live in the ocean?')", "|  87 | science  | Whales are descended from land mammals"),
        ("AS lowest_cosine", "|        12 |           1.0 |"),
        ("WHERE KNN_MATCH(embedding, (SELECT embedding FROM questions WHERE question = 'why did ancient Rome fall apart')", 'FTX'),
        ("WHERE category = 'history'", 'Overexpansion'),
        ('AND year >= 2023', 'Federal Reserve'),
        ('AND _score > 0.5', '(3 rows)'),
        ('q.embedding) > 0.45', '(4 rows)'),
        ('AND id <> 134', "Spain won the men's European Championship"),
        ('EXPLAIN SELECT id, _score', 'search=exact'),
        ('CREATE INDEX articles_embedding', '481 vectors, cosine'),
        ('SELECT * FROM sys.indexes', 'articles_embedding'),
        ('EXPLAIN SELECT id, category, _score', 'search=hnsw index articles_embedding'),
        ('SELECT id, category, text, round(_score, 3) AS cosine', 'Maldives'),
        ('SELECT 1001 AS id', 'Inserted 1 row into articles'),
        ('SELECT name, rows_indexed, rows_pending FROM sys.indexes', '481 |            1 |'),
        ('SELECT id, year, text, round(_score, 3) AS cosine', '1001'),
        ("TO 'output/breakfast_ideas.parquet'", "Copied 10 rows to 'output/breakfast_ideas.parquet'"),
        ('AS hits FROM breakfast_ideas', '| cooking  |    6 |'),
    ],
    "03-time-series-features.ipynb": [
        ("title='5-minute averages, 24 April'", "x=bucket (time), 3 series: s14, s01, s05; 839 rows"),
        ("title='s05 through its silence'", "3 series: carried, interpolated, measured; 24 rows"),
        ("title='s03: week 1 and week 2'", "2 series: week 1, week 2; 40,325 rows"),
        ("DESCRIBE readings", "| ts          | Timestamp(µs) | YES         |"),
        ("GROUP BY sensor_id\nORDER BY sensor_id", "| s20       |     9091 | 2026-04-23T09:03:06 | 2026-05-05T23:59:08 |     21 |"),
        ("stddev(temperature) AS std_temp, count(*) AS n", "(showing 50 of 79,825 rows)"),
        ("AND ts >= '2026-04-24 15:00:00'", "| 2026-04-24T15:20:00 |   21.817 |    0.274 | 10 |"),
        ("time_bucket(INTERVAL '1 week', ts) AS week", "| 2026-04-20T00:00:00 |   135613 | 2026-04-22T00:00:35 |"),
        ("time_bucket(INTERVAL '1 month', ts) AS month", "| 2026-05-01T00:00:00 |   135840 |    22.21 |"),
        ("AS rolling_avg_5min", "| 2026-04-24T10:47:52 |        25.5 |             25.5 |      1 |  0.59 |"),
        ("FROM TUMBLE(readings, ts, INTERVAL '1 hour')", "(showing 50 of 6,661 rows)"),
        ("FROM HOP(readings", "| 2026-04-24T13:30:00 | 2026-04-24T14:30:00 |    20.16 | 41 |"),
        ("AS sessions,", "| s14       |       15 |            9.1 |          23.7 |"),
        ("WHERE sensor_id IN ('s05', 's08', 's19')", "| s19       | 2026-05-03T02:00:56 | 2026-05-06T00:09:45 |     2798 |"),
        ("AS locf_temp", "| 2026-04-24T10:30:00 | s05       |               NULL |              24.91 | 25.4966666666666"),
        ("AS filled", "|      24 |            16 |      8 |"),
        ("AS has_battery", "| 2026-04-29T03:01:48 | s05       | 1.4.2 | plant-1 |    NULL | false       |      2 |"),
        ("AS firmware_versions", "| s03       | plant-3 |          74 |                 2 | 2.0.0     |"),
        ("CREATE MATERIALIZED VIEW hourly_features", "Created materialized view hourly_features (6,661 rows)"),
        ("SELECT * FROM sys.views", "| live_readings | 6661 |"),
        ("INSERT INTO live_readings", "Inserted 3 rows into live_readings"),
        ("-- before REFRESH", "(2 rows)"),
        ("REFRESH MATERIALIZED VIEW hourly_features", "Refreshed materialized view hourly_features (6,662 rows)"),
        ("-- after REFRESH", "| s01       | 2026-05-06T00:00:00 |     16.6 |  3 |      1 |"),
        ("AS first_inspection", "|         558 |     33 | 2026-04-22T06:00:56 | 2026-05-05T20:58:23 |"),
        ("AS from_the_future", "| 1129100 |          558924 |"),
        ("WHERE r.ts IS NULL", "| 2026-04-23T08:30:00 | s20       | false  |        NULL | NULL                |"),
        ("WHERE r.ts IS NULL", "| 2026-05-02T18:12:20 | s19       | false  |       20.81 | 2026-05-02T05:58:44 |       44016.0 |"),
        ("MATCH_CONDITION (f.ts >= r.ts)", "|    558 |          557 |"),
        ("TO 'output/training_set.parquet'", "Copied 558 rows to 'output/training_set.parquet'"),
        ("AS unfinished_hours_used", "|    558 |     33 |          557 |                    0 |                     0 |"),
        ("ks_statistic(temperature", "| s11       | 0.768 | 4.161 |\n| s03       | 0.452 | 1.977 |\n"
                                     "| s17       | 0.381 | 1.053 |\n| s06       | 0.157 | 0.335 |\n| s09       | 0.025 | 0.031 |"),
        ("'2026-04-22 00:00:00') AS week", "| s06       | 2026-04-29T00:00:00 | 1.4.2 |    24.22 |     1.81 |    30.81 |"),
    ],
    "05-rust-cells.ipynb": [
        ("title='Raw readings'", "3 series: tutorial-1, tutorial-2, tutorial-3; 4,200 rows, 4,200 points drawn"),
        ('kestrel::register("smoothed", &out)', "registered 4200 rows as table smoothed"),
        # EWMA restarts and averages, checked against a Python loop over the same formula
        ("sum(restart) AS restarts",
         "| tutorial-1 |     1440 |      1.0 |   19.957 |\n| tutorial-2 |     1440 |      1.0 |   19.881 |\n"
         "| tutorial-3 |     1320 |      2.0 |   19.673 |"),
        ("title='tutorial-3: raw and smoothed'", "2 series: temperature, ewma; 1,320 rows, 2,640 points drawn"),
        ("title='Residuals'", "4,200 rows"),
        ("kestrel::show(", "| tutorial-3 | 5      | 5.7   |"),
        ('let threshold: f64 = "three";', "CompileError: mismatched types"),
        ("SELECT count(*) AS spikes FROM spikes", "|     17 |"),
    ],
    "04-streaming-features.ipynb": [
        ("title='Average temperature per sensor, live'", 'bar plot "Average temperature per sensor, live", x=sensor_id (categories)'),
        ("kafka_demo('readings', 3000, 0.01, 'sensors', 6000)", "| readings | kafka://demo/readings | sensors |     3000.0 |"),
        ("STORED AS KAFKA LOCATION 'kafka://demo/readings'", "Created live table readings: topic readings at the demo broker, 3 partitions"),
        ("SELECT count(*) AS readings", "|     5940 |      20 |   20.768 |"),
        ("count(DISTINCT _key) AS sensors", "|          0 |     1500 |       5 |"),
        ("GROUP BY error ORDER BY error", "| column ts: 'yesterday' is not a timestamp (RFC 3339 text or epoch milliseconds)"),
        ("GROUP BY error ORDER BY error", "(4 rows)"),
        ("WHERE payload = 'sensor offline'", "|         2 |     44 | s-19 | sensor offline |"),
        ("SELECT table_name, topic, partitions", "| readings   | readings |          3 | 5940 |     6000 |   0 |     60 | live  | 1 hour    |"),
        ("CREATE MATERIALIZED VIEW sensor_features", "Created materialized view sensor_features (20 rows)"),
        ("FROM sensor_features ORDER BY sensor_id LIMIT 5", "| s-00      |      300 |    18.42 |    2.185 |   21.764 |"),
        ("AS readings_in_features", "|                 9900 |      20 |"),
        ("SELECT name, incremental, continuous, rows FROM sys.views", "| sensor_features | true        | true       |   20 |"),
        ("%%watch 1s\nSELECT sensor_id, readings", "⟳ every 1 s"),
        ("%%watch stop", "stopped 2 watches"),
        ("SELECT * FROM kafka_wait('items')", "| items      | 2000 |     2000 |      0 |   0 |"),
        ("count(*) AS nearest", "| c2       |      10 |"),
        ("CREATE INDEX items_embedding ON items", "Created index items_embedding on items (embedding): 2,000 vectors, euclidean"),
        ('SELECT name, "table", rows_indexed', "| items_embedding | items |         2000 |            0 |        1 |"),
        ("EXPLAIN SELECT category FROM items", "search=hnsw index items_embedding (euclidean, hora)"),
        ("INSERT INTO alerts", "Inserted 11 rows into alerts"),
        ("SELECT _key, sensor_id, avg_temp, reason FROM alerts", "| s-19 | s-19      |"),
        ("SELECT _key, sensor_id, avg_temp, reason FROM alerts", "(11 rows)"),
        ("SELECT table_name, state FROM sys.sources", "| items      | live  |\n| readings   | live  |"),
    ],
    "06-text-and-hybrid-search.ipynb": [
        ("embed(text) AS e FROM raw_articles", "Created table articles"),
        ("embed('which animals live in the ocean?'), 5)", "|  87 | science  | Whales are descended from land mammals"),
        ("CREATE INDEX articles_ft", "481 rows, analyzer english"),
        ("highlight(text, 'plants leaves sunlight'", "| 286 | science  | 3.945 | Chlorophyll in <em>leaves</em>"),
        ("USING phrase AND year >= 2010", "World Cup in Russia"),
        ("'vulcano'", "Mars has the tallest volcano"),
        ("FROM hybrid_search('articles'", "| 280 | science  | 0.0323 |         2 |           2 |"),
        ("FULL OUTER JOIN knn", "| 280 | 0.0323 |         2 |           2 |"),
        ("SELECT topic FROM kafka_demo('tickets'", "| tickets    |    2 |"),
        ("MATCH(tickets_ft, 'leak')", "|  1 | The pump in hall 3 is <em>leaking</em> oil |\n+"),
        ("INSERT INTO tickets VALUES (3", "| tickets    |    3 |"),
        ("MATCH(tickets_ft, 'leaks')", "|  3 | Another <em>leak</em> near valve 7         |"),
        ("FROM sys.indexes ORDER BY name", "| tickets_ft  | tickets  | body   | fulltext | english  |            3 |"),
        ("MATCH(body_ft, 'ocean')", "body_ft is neither a full-text index nor an indexed column of articles"),
    ],
    "realtime-feature-store.ipynb": [
        ("FROM generate_series(0, 959)", "Inserted 960 rows into feature_events"),
        ("max(feature_value) AS high", "| session_seconds |    312 |    12 | 30.0 |  629.0 |"),
        ("CREATE TABLE real_time_features", "Created procedure refresh_feature_aggregates"),
        ("RETURNS TRIGGER", "kafka_to_features uses a trigger (RETURNS TRIGGER)"),
        ("RETURNS TRIGGER", "CREATE EXTERNAL TABLE ... STORED AS KAFKA"),
        ("-- the events not copied yet", "Inserted 960 rows into real_time_features"),
        ("-- the same statement, a second time", "Inserted 0 rows into real_time_features"),
        ("ORDER BY timestamp DESC LIMIT 3", "| user-00   | clicks       |  0.0000000000 | 5 mins            |"),
        ("AS equal_to_own_text", "|  960 |          960 |               960 |"),
        ("WHERE entity_id = 'user-00'\nORDER BY feature_name", "| user-00   | clicks          |      5.16 |         3.45 |    25 |"),
        ("SELECT count(*) AS groups", "|     36 |    900 |"),
        ("WITH (timescaledb.continuous)", "Created materialized view feature_aggregates_live (36 rows)"),
        ("SELECT name, maintained FROM sys.views", "| feature_aggregates      | a snapshot: REFRESH MATERIALIZED VIEW re-runs it"),
        ("SELECT name, maintained FROM sys.views", "recomputed on every write to real_time_features, and every 1 s"),
        ("FROM generate_series(0, 119)", "Inserted 120 rows into feature_events"),
        ("-- the new minute's events", "Inserted 120 rows into real_time_features"),
        ("AS snapshot_events", "|             900 |        1020 |"),
        ("RETURNS TABLE (", "Created table function calculate_real_time_features"),
        ("AS within_5_minutes", "|  720 |       12 | true             |"),
        ("WHERE entity_id = 'user-00'\nORDER BY window_end DESC", "| user-00   | rolling_avg_5min |"),
        ("TO 'output/realtime_training_set.parquet'", "Copied 720 rows to 'output/realtime_training_set.parquet'"),
        ("AS min_hour_count", "| clicks          |  252 |"),
        ("AS min_hour_count", "(3 rows)"),
    ],
    "churn-features-export.ipynb": [
        ("AS customers, MIN", "| 200000 |      5000 | 2026-05-01T00:00:00 |"),
        ("sanity checks", "| 5000 |      5000 |             0 |      0.143 |"),
        ("TO 'output/churn_training_set.parquet'", "Copied 5,000 rows to 'output/churn_training_set.parquet'"),
    ],
}

# Files a notebook exports, with the rows and columns a training job reading them with pyarrow must find.
EXPORTS: dict[str, dict[str, tuple[int, list[str]]]] = {
    "realtime-feature-store.ipynb": {
        "output/realtime_training_set.parquet": (
            720,
            ["entity_id", "feature_name", "timestamp", "feature_value", "rolling_avg_5min", "rolling_count_5min",
             "hour_avg", "hour_stddev", "hour_count"],
        ),
    },
    "03-time-series-features.ipynb": {
        "output/training_set.parquet": (
            558,
            ["label_ts", "sensor_id", "failed", "temperature", "reading_ts", "reading_age_s", "error_code", "fw",
             "battery", "feature_hour", "hour_avg_temp", "hour_std_temp", "hour_max_temp", "hour_readings"],
        ),
    },
}


def output_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out["output_type"] in ("execute_result", "display_data"):
            parts.append(out["data"].get("text/plain", ""))
        elif out["output_type"] == "error":
            parts.append(f"{out['ename']}: {out['evalue']}")
        elif out["output_type"] == "stream":
            parts.append(out["text"])
    return "\n".join(parts)


def test_every_notebook_has_expectations():
    assert NOTEBOOKS, "no notebooks found"
    missing = [nb.name for nb in NOTEBOOKS if nb.name not in EXPECTED]
    assert not missing, f"notebooks without asserted outputs: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_and_shows_what_it_promises(path: Path):
    shutil.rmtree(path.parent / "output", ignore_errors=True)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="kestrel", resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    for source_snippet, expected in EXPECTED.get(path.name, []):
        cells = [c for c in nb.cells if c.cell_type == "code" and source_snippet in c.source]
        assert len(cells) == 1, f"{path.name}: {len(cells)} cells contain {source_snippet!r}"
        text = output_text(cells[0])
        assert expected in text, f"{path.name}: cell with {source_snippet!r} printed:\n{text}"
    # exports are readable by pyarrow, as a training job would read them
    for parquet in (path.parent / "output").glob("*.parquet"):
        assert pq.read_table(parquet).num_rows > 0
    for name, (rows, columns) in EXPORTS.get(path.name, {}).items():
        table = pq.read_table(path.parent / name)
        found = (table.num_rows, table.column_names)
        assert found == (rows, columns), f"{path.name}: {name} holds {found[0]} rows of {found[1]}"
