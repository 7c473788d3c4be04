"""Time windows and point-in-time joins, differential against DuckDB on the same generated Parquet files.

One seeded data set (module fixture): 50 sensors with a few thousand irregular readings each (about 100,000 in
all), in bursts seconds apart separated by gaps of minutes to days, over about two months (2024-01-20 to
2024-03-26); about 4% duplicate timestamps within a sensor, 5% of timestamps on whole minutes (so bucket and
RANGE-frame boundaries are hit exactly), 5% NULL temperatures, rows shuffled. Some sensors start weeks late, so
some events come before their first reading. Events (labels) name sensors and channels absent from the readings,
a few have a NULL sensor, and a third copy a reading's timestamp exactly (the `>=` of ASOF is inclusive).
`readings_unique` is the readings without duplicate (sensor_id, ts): ASOF picks one of several right rows that
tie on the greatest timestamp, so the queries that project right-side values other than its timestamp join that
table.

Each case runs the same query (or, for TUMBLE/HOP/SESSION, a DuckDB equivalent written with time_bucket, a
cross join with range() and window functions) on DuckDB over `read_parquet` views and on Kestrel through
`kestrel sql FILE --format json` (CREATE EXTERNAL TABLE ... STORED AS PARQUET, then the query), and compares the
results as sorted row multisets: column names in order, timestamps as pandas Timestamps, floats within 1e-9
relative, everything else exactly.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

duckdb = pytest.importorskip("duckdb")
pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

SEED = 20240229
N_SENSORS = 50
START = np.datetime64("2024-01-20T00:00:00", "us")
US_PER_S = 1_000_000
REL_TOL = 1e-9
ABS_TOL = 1e-12  # only for values that are (nearly) zero, where a relative tolerance means nothing


# ---------------------------------------------------------------------------------------------------------------
# Data


def _readings(rng: np.random.Generator) -> pd.DataFrame:
    frames = []
    for i in range(N_SENSORS):
        n = int(rng.integers(1500, 2500))
        # every fifth sensor starts up to 20 days late: events before its first reading
        late = rng.integers(0, 20 * 86400) if i % 5 == 0 else rng.integers(0, 3600)
        first = START.astype("int64") + int(late) * US_PER_S
        kind = rng.random(n)
        gaps = np.where(kind < 0.90, rng.exponential(30.0, n),  # within a burst
                        np.where(kind < 0.98, rng.exponential(1200.0, n),  # minutes
                                 rng.uniform(6 * 3600, 2 * 86400, n)))  # hours to days
        gaps_us = (gaps * US_PER_S).astype(np.int64)
        gaps_us[rng.random(n) < 0.04] = 0  # duplicate timestamps
        gaps_us[0] = 0
        ts = first + np.cumsum(gaps_us)
        on_minute = rng.random(n) < 0.05
        ts[on_minute] = ts[on_minute] // (60 * US_PER_S) * (60 * US_PER_S)
        temp = 15.0 + 0.3 * i + 5.0 * np.sin(ts / (86400.0 * US_PER_S) * 2 * np.pi) + rng.normal(0.0, 0.7, n)
        frames.append(pd.DataFrame({
            "ts": ts.astype("datetime64[us]"),
            "sensor_id": f"s{i + 1:03d}",
            "channel": rng.integers(0, 3, n).astype(np.int32),
            "temperature": pd.array(np.where(rng.random(n) < 0.05, np.nan, temp), dtype="Float64"),
        }))
    df = pd.concat(frames, ignore_index=True)
    return df.sample(frac=1.0, random_state=np.random.RandomState(SEED)).reset_index(drop=True)


def _events(rng: np.random.Generator, readings: pd.DataFrame) -> pd.DataFrame:
    n = 2000
    lo = START.astype("int64") - 2 * 86400 * US_PER_S
    hi = readings["ts"].max().value // 1000 + 86400 * US_PER_S
    ts = rng.integers(lo, hi, n)
    sensor = np.array([f"s{k:03d}" for k in rng.integers(1, N_SENSORS + 6, n)], dtype=object)  # s051..s055: absent
    channel = rng.integers(0, 4, n).astype(np.int32)  # channel 3: absent
    # a third copy a reading's (sensor, channel, ts): exact matches
    exact = rng.random(n) < 0.33
    picks = readings.iloc[rng.integers(0, len(readings), int(exact.sum()))]
    ts[exact] = picks["ts"].to_numpy().astype("datetime64[us]").astype(np.int64)
    sensor[exact] = picks["sensor_id"].to_numpy()
    channel[exact] = picks["channel"].to_numpy()
    sensor[rng.random(n) < 0.03] = None  # NULL keys never match
    return pd.DataFrame({
        "event_id": np.arange(n, dtype=np.int64),
        "ts": ts.astype("datetime64[us]"),
        "sensor_id": sensor,
        "channel": channel,
        "label": rng.integers(0, 2, n).astype(np.int64),
    })


READINGS_SCHEMA = pa.schema([("ts", pa.timestamp("us")), ("sensor_id", pa.string()), ("channel", pa.int32()),
                             ("temperature", pa.float64())])
EVENTS_SCHEMA = pa.schema([("event_id", pa.int64()), ("ts", pa.timestamp("us")), ("sensor_id", pa.string()),
                           ("channel", pa.int32()), ("label", pa.int64())])


def _write(df: pd.DataFrame, schema: pa.Schema, path: Path) -> None:
    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    pq.write_table(table, path, row_group_size=20_000)  # several row groups


@dataclass
class Data:
    tables: dict[str, Path]
    duck: "duckdb.DuckDBPyConnection"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Data:
    d = tmp_path_factory.mktemp("time_windows")
    rng = np.random.default_rng(SEED)
    readings = _readings(rng)
    events = _events(rng, readings)
    unique = readings.drop_duplicates(["sensor_id", "ts"], keep="first")
    assert len(unique) < len(readings)  # the duplicates are there
    tables = {"readings": d / "readings.parquet", "readings_unique": d / "readings_unique.parquet",
              "events": d / "events.parquet"}
    _write(readings, READINGS_SCHEMA, tables["readings"])
    _write(unique, READINGS_SCHEMA, tables["readings_unique"])
    _write(events, EVENTS_SCHEMA, tables["events"])
    duck = duckdb.connect()
    for name, path in tables.items():
        duck.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{path}')")
    yield Data(tables, duck)
    duck.close()


# ---------------------------------------------------------------------------------------------------------------
# Running and comparing


def run_kestrel(kestrel_bin: str, data: Data, sql: str, workdir: Path) -> list[dict]:
    script = workdir / "query.sql"
    setup = [f"CREATE EXTERNAL TABLE {name} STORED AS PARQUET LOCATION '{path}'" for name, path in data.tables.items()]
    script.write_text(";\n".join(setup + [sql.strip().rstrip(";")]) + ";\n")
    p = subprocess.run([kestrel_bin, "sql", str(script), "--format", "json"], capture_output=True, text=True,
                       timeout=120)
    if p.returncode != 0:
        pytest.fail(f"Kestrel failed (exit {p.returncode}):\n{p.stderr.strip()}\n--- query ---\n{sql.strip()}",
                    pytrace=False)
    return json.loads("[" + ",".join(line for line in p.stdout.splitlines() if line.strip()) + "]")


def _kind(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "timestamp"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float"
    if pa.types.is_integer(t):
        return "int"
    return "other"


def run_duckdb(data: Data, sql: str) -> tuple[dict[str, str], pd.DataFrame]:
    """The result's columns with a kind each (timestamp, float, int, other), and the result."""
    table = data.duck.sql(sql).to_arrow_table()
    kinds = {field.name: _kind(field.type) for field in table.schema}
    return kinds, pd.DataFrame({name: table.column(name).to_pandas() for name in kinds})


def _normalise(df: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """One representation per kind on both sides: timestamps as naive datetime64[ns] (UTC if zoned), numbers as
    float64 (NULL as NaN; integers compare exactly up to 2**53), the rest as Python objects (NULL as None)."""
    out = {}
    for name, kind in kinds.items():
        col = df[name] if name in df else pd.Series([None] * len(df), dtype=object)
        if kind == "timestamp":
            text = not pd.api.types.is_datetime64_any_dtype(col)  # Kestrel's JSON: ISO 8601 text
            col = pd.to_datetime(col, format="ISO8601") if text else col
            if getattr(col.dt, "tz", None) is not None:
                col = col.dt.tz_convert("UTC").dt.tz_localize(None)
            col = col.astype("datetime64[ns]")
        elif kind in ("float", "int"):
            col = pd.to_numeric(col.astype(object).where(col.notna(), np.nan)).astype(np.float64)
        else:
            col = col.astype(object).where(col.notna(), None)
        out[name] = col.reset_index(drop=True)
    return pd.DataFrame(out, columns=list(kinds))


def _sorted(df: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """Rows in a canonical order: exact columns first, then floats rounded (so that last-bit differences between
    the engines cannot reorder rows that tie on everything exact)."""
    keys = pd.DataFrame({f"k{i}": (df[n].round(6) if kinds[n] == "float" else df[n])
                         for i, n in enumerate(sorted(kinds, key=lambda n: kinds[n] == "float"))})
    order = keys.sort_values(list(keys.columns), na_position="last", kind="stable").index
    return df.loc[order].reset_index(drop=True)


def _readable(df: pd.DataFrame, kinds: dict[str, str], digits: int = 6) -> list[tuple]:
    """Rows as plain tuples for messages and rough set differences: floats rounded to `digits` significant
    digits, integers as int, timestamps as text, NULL as None."""
    def cell(v, kind):
        if v is None or (not isinstance(v, str) and pd.isna(v)):
            return None
        if kind == "float":
            return float(f"{v:.{digits}g}")
        if kind == "int":
            return int(v)
        if kind == "timestamp":
            return str(v)
        return v
    return [tuple(cell(v, kinds[n]) for n, v in zip(df.columns, row))
            for row in df.itertuples(index=False, name=None)]


def assert_same_rows(kinds: dict[str, str], duck: pd.DataFrame, kes_rows: list[dict], sql: str) -> None:
    names = list(kinds)
    if kes_rows:
        kes_names = list(kes_rows[0])
        assert kes_names == names, f"columns differ: Kestrel {kes_names}, DuckDB {names}"
    want = _sorted(_normalise(duck, kinds), kinds)
    got = _sorted(_normalise(pd.DataFrame(kes_rows, columns=names), kinds), kinds)
    problems = []
    if len(got) != len(want):
        problems.append(f"row count: Kestrel {len(got)}, DuckDB {len(want)}")
    n = min(len(got), len(want))
    bad = np.zeros(n, dtype=bool)
    bad_cols = []
    for name in names:
        g, w = got[name].iloc[:n], want[name].iloc[:n]
        gnull, wnull = g.isna().to_numpy(), w.isna().to_numpy()
        if kinds[name] in ("float", "int"):
            gv, wv = g.to_numpy(np.float64), w.to_numpy(np.float64)
            close = (np.isclose(gv, wv, rtol=REL_TOL, atol=ABS_TOL) if kinds[name] == "float" else gv == wv)
            diff = (gnull != wnull) | (~gnull & ~wnull & ~close)
        else:
            diff = (gnull != wnull) | (~gnull & ~wnull & (g.to_numpy(object) != w.to_numpy(object)))
        if diff.any():
            bad_cols.append(name)
        bad |= diff
    if bad.any():
        i = int(np.argmax(bad))
        problems.append(f"{int(bad.sum())} of {n} sorted rows differ, in {bad_cols}; the first, row {i}:\n"
                        f"  Kestrel {_readable(got.iloc[[i]], kinds, 17)[0]}\n"
                        f"  DuckDB  {_readable(want.iloc[[i]], kinds, 17)[0]}")
    if problems:
        missing = set(_readable(want, kinds)) - set(_readable(got, kinds))
        extra = set(_readable(got, kinds)) - set(_readable(want, kinds))
        problems.append(f"{len(missing)} DuckDB rows not in Kestrel's (e.g. {sorted(missing)[:3]}),\n"
                        f"{len(extra)} Kestrel rows not in DuckDB's (e.g. {sorted(extra)[:3]})")
        pytest.fail("\n".join(problems) + f"\n--- query ---\n{sql.strip()}", pytrace=False)


# ---------------------------------------------------------------------------------------------------------------
# Cases


def bucket_query(interval: str, origin: str | None = None) -> str:
    b = f"time_bucket(INTERVAL '{interval}', ts{f', TIMESTAMP {origin!r}' if origin else ''})"
    return f"""
        SELECT sensor_id, {b} AS bucket, avg(temperature) AS avg_t, stddev(temperature) AS sd_t,
               count(*) AS n, count(temperature) AS n_t
        FROM readings GROUP BY sensor_id, {b}"""


def rolling_query(interval: str, aggregates: dict[str, str], partition: str | None = "sensor_id") -> str:
    over = (f"OVER ({f'PARTITION BY {partition} ' if partition else ''}ORDER BY ts "
            f"RANGE BETWEEN INTERVAL '{interval}' PRECEDING AND CURRENT ROW)")
    cols = ",\n               ".join(f"{agg} {over} AS {name}" for name, agg in aggregates.items())
    keys = f"{partition}, " if partition else ""
    return f"""
        SELECT {keys}ts, temperature,
               {cols}
        FROM readings"""


def asof_query(kind: str, keys: list[str], right: str = "readings_unique",
               right_cols: str = "r.ts AS reading_ts, r.temperature") -> str:
    on = " AND ".join([f"e.{k} = r.{k}" for k in keys] + ["e.ts >= r.ts"])
    return f"""
        SELECT e.event_id, e.sensor_id, e.channel, e.ts, e.label, {right_cols}
        FROM events e {kind} {right} r ON {on}"""


def tumble(size: str) -> tuple[str, str]:
    kestrel = f"""
        SELECT sensor_id, window_start, window_end, count(*) AS n, avg(temperature) AS avg_t
        FROM TUMBLE(readings, ts, INTERVAL '{size}')
        GROUP BY sensor_id, window_start, window_end"""
    b = f"time_bucket(INTERVAL '{size}', ts)"
    duck = f"""
        SELECT sensor_id, {b} AS window_start, {b} + INTERVAL '{size}' AS window_end,
               count(*) AS n, avg(temperature) AS avg_t
        FROM readings GROUP BY ALL"""
    return kestrel, duck


def hop(slide: str, size: str, copies: int) -> tuple[str, str]:
    """`copies` = ceil(size / slide): the most windows one row can fall in."""
    kestrel = f"""
        SELECT sensor_id, window_start, window_end, count(*) AS n, avg(temperature) AS avg_t
        FROM HOP(readings, ts, INTERVAL '{slide}', INTERVAL '{size}')
        GROUP BY sensor_id, window_start, window_end"""
    duck = f"""
        SELECT sensor_id, window_start, window_start + INTERVAL '{size}' AS window_end,
               count(*) AS n, avg(temperature) AS avg_t
        FROM (SELECT r.*, time_bucket(INTERVAL '{slide}', ts) - k * INTERVAL '{slide}' AS window_start
              FROM readings r, range(0, {copies}) AS c(k))
        WHERE ts < window_start + INTERVAL '{size}'
        GROUP BY ALL"""
    return kestrel, duck


def session(gap: str, key: str | None) -> tuple[str, str]:
    keyarg = f", {key}" if key else ""
    keycol = f"{key}, " if key else ""
    part = f"PARTITION BY {key} " if key else ""
    kestrel = f"""
        SELECT {keycol}window_start, window_end, count(*) AS n, avg(temperature) AS avg_t
        FROM SESSION(readings, ts, INTERVAL '{gap}'{keyarg})
        GROUP BY {keycol}window_start, window_end"""
    # rows tied on ts share a session (a zero gap never opens one); the default RANGE frame sums over the ties
    duck = f"""
        WITH marked AS (
            SELECT *, CASE WHEN ts - lag(ts) OVER (w) <= INTERVAL '{gap}' THEN 0 ELSE 1 END AS opens
            FROM readings WINDOW w AS ({part}ORDER BY ts)),
        numbered AS (SELECT *, sum(opens) OVER ({part}ORDER BY ts) AS session_no FROM marked)
        SELECT {keycol}min(ts) AS window_start, max(ts) + INTERVAL '{gap}' AS window_end,
               count(*) AS n, avg(temperature) AS avg_t
        FROM numbered GROUP BY {keycol}session_no"""
    return kestrel, duck


CASES = [
    # time_bucket: same SQL on both engines
    pytest.param(bucket_query("5 minutes"), None, id="time_bucket-5min"),
    pytest.param(bucket_query("7 minutes"), None, id="time_bucket-7min-origin-matters"),
    pytest.param(bucket_query("1 hour"), None, id="time_bucket-1hour"),
    pytest.param(bucket_query("1 day"), None, id="time_bucket-1day"),
    pytest.param(bucket_query("1 week"), None, id="time_bucket-1week-monday"),
    pytest.param(bucket_query("1 week", "2024-01-07 06:00:00"), None, id="time_bucket-1week-origin"),
    pytest.param(bucket_query("1 week", "2031-05-04 12:30:00"), None, id="time_bucket-1week-origin-after-data"),
    pytest.param(bucket_query("5 minutes", "2000-01-01 00:02:30"), None, id="time_bucket-5min-origin"),
    pytest.param(bucket_query("1 month"), None, id="time_bucket-1month"),
    pytest.param(bucket_query("3 months"), None, id="time_bucket-3months"),
    pytest.param(bucket_query("1 year"), None, id="time_bucket-1year"),
    # rolling RANGE windows
    pytest.param(rolling_query("5 minutes", {"avg_5m": "avg(temperature)", "n_5m": "count(temperature)",
                                             "rows_5m": "count(*)"}), None, id="rolling-5min-avg-count"),
    pytest.param(rolling_query("1 hour", {"sum_1h": "sum(temperature)", "min_1h": "min(temperature)",
                                          "max_1h": "max(temperature)"}), None, id="rolling-1hour-sum-min-max"),
    pytest.param(rolling_query("1 minute", {"rows_1m": "count(*)"}, partition=None), None,
                 id="rolling-1min-count-unpartitioned"),
    # ASOF joins
    pytest.param(asof_query("ASOF JOIN", ["sensor_id"]), None, id="asof-join-1key"),
    pytest.param(asof_query("ASOF LEFT JOIN", ["sensor_id"]), None, id="asof-left-join-1key"),
    pytest.param(asof_query("ASOF JOIN", ["sensor_id", "channel"]), None, id="asof-join-2keys"),
    pytest.param(asof_query("ASOF LEFT JOIN", ["sensor_id", "channel"]), None, id="asof-left-join-2keys"),
    pytest.param(asof_query("ASOF LEFT JOIN", ["sensor_id"], right="readings", right_cols="r.ts AS reading_ts"),
                 None, id="asof-left-join-right-duplicate-ts"),
    # window table functions against DuckDB equivalents
    pytest.param(*tumble("10 minutes"), id="tumble-10min"),
    pytest.param(*tumble("1 week"), id="tumble-1week"),
    pytest.param(*tumble("1 month"), id="tumble-1month"),
    pytest.param(*hop("5 minutes", "15 minutes", 3), id="hop-5min-15min"),
    pytest.param(*hop("10 minutes", "25 minutes", 3), id="hop-10min-25min-not-a-multiple"),
    pytest.param(*hop("6 hours", "1 day", 4), id="hop-6hours-1day"),
    pytest.param(*session("10 minutes", "sensor_id"), id="session-10min-per-sensor"),
    pytest.param(*session("2 minutes", None), id="session-2min-unkeyed"),
]


@pytest.mark.parametrize("kestrel_sql, duckdb_sql", CASES)
def test_matches_duckdb(kestrel_bin, data, tmp_path, kestrel_sql, duckdb_sql):
    kinds, duck = run_duckdb(data, duckdb_sql or kestrel_sql)
    assert len(duck), "the DuckDB reference result is empty: the case tests nothing"
    assert_same_rows(kinds, duck, run_kestrel(kestrel_bin, data, kestrel_sql, tmp_path), kestrel_sql)


def test_data_has_the_edge_cases(data):
    """The generated data keeps the properties the cases rely on."""
    q = data.duck.execute
    dup = q("SELECT count(*) FROM (SELECT sensor_id, ts FROM readings GROUP BY ALL HAVING count(*) > 1)").fetchone()[0]
    nulls = q("SELECT count(*) FROM readings WHERE temperature IS NULL").fetchone()[0]
    early = q("""SELECT count(*) FROM events e JOIN (SELECT sensor_id, min(ts) AS first FROM readings GROUP BY ALL) f
                 ON e.sensor_id = f.sensor_id WHERE e.ts < f.first""").fetchone()[0]
    absent = q("SELECT count(*) FROM events WHERE sensor_id NOT IN (SELECT sensor_id FROM readings)").fetchone()[0]
    exact = q("""SELECT count(*) FROM events e WHERE EXISTS (SELECT 1 FROM readings r
                 WHERE r.sensor_id = e.sensor_id AND r.ts = e.ts)""").fetchone()[0]
    months = q("SELECT count(DISTINCT date_trunc('month', ts)) FROM readings").fetchone()[0]
    assert dup > 100 and nulls > 1000 and early > 20 and absent > 50 and exact > 300 and months >= 3
