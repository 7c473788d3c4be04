"""Time windows and feature engineering: Kestrel next to DuckDB on one sensor data set, one harness, one run.

Five queries, the same SQL text on both engines except where noted:
  (a) 5-minute time_bucket avg / stddev / count per sensor;
  (b) 5-minute rolling RANGE window avg per sensor;
  (c) training-set extraction: error_code IS NULL, a sensor_id IN set, a temperature range, a 7-day ts range,
      several columns projected;
  (d) per-sensor avg, COUNT(DISTINCT date_trunc('hour', ts)) and a 95th percentile (Kestrel
      approx_percentile_cont, DuckDB approx_quantile: both t-digest estimates, compared loosely);
  (e) ASOF JOIN of the events to the readings on sensor_id (point-in-time features).
(a), (b), (c) and (e) are wrapped in count / sum / avg so that moving millions of result rows does not dominate;
the wrapping is the same on both engines. Both engines must return the same values: a mismatch is printed loudly
and makes the exit status 1.

Kestrel is measured by an external program, `sql_bench` (built with
`cargo build --release --locked -p kestrel-engine --example sql_bench`; `--build` runs that), given SETUP.sql
(CREATE EXTERNAL TABLE ... STORED AS PARQUET), QUERIES.json ([[name, sql], ...]), --repeat and --warmup; it prints
one JSON line a query: {"name", "rows", "times_ms"}. DuckDB runs in this process over read_parquet views, with the
same warm-up and repeats, threads = --threads (default: all cores), which Kestrel is also asked for (through
TOKIO_WORKER_THREADS and DATAFUSION_EXECUTION_TARGET_PARTITIONS; DataFusion's default is all cores anyway).

Data: deterministic (numpy default_rng(seed)); written once to bench/data/ (gitignored) and reused while the
parameters match. Readings: --rows rows (default 10,000,000) over --days days from 2025-01-01, --sensors sensors
('s0001', ...), each sensor's readings arriving as a Poisson process (irregular gaps, the mean gap is
days / (rows / sensors)); columns ts timestamp[us], sensor_id string, temperature double, error_code int32
(NULL but for 2%); rows in time order, row groups of 131,072 rows. Events: --events rows (ts from a day before
the readings start, so some precede every reading; 1% name sensors with no readings), columns ts, sensor_id,
label int64.

    .venv/bin/python bench/time_windows.py [--rows 10000000] [--repeat 5] [--warmup 1] [--build] [--record]

--record appends the tables to bench/RESULTS.md (only with Kestrel measured).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
GENERATOR = "sensors-poisson-v1"
META_KEY = b"kestrel.bench"
START = np.datetime64("2025-01-01T00:00:00", "us")
US_PER_DAY = 86_400 * 1_000_000
ROW_GROUP = 131_072
CHUNK = 1 << 20
REL_TOL = 1e-6  # sums over millions of doubles in different orders
APPROX_REL_TOL = 1e-2  # two t-digests
RATIO_TARGET = 1.0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Data


def sensor_names(count: int) -> list[str]:
    return [f"s{i + 1:04d}" for i in range(count)]


def data_params(args, role: str) -> dict:
    p = {"generator": GENERATOR, "role": role, "sensors": args.sensors, "days": args.days, "seed": args.seed}
    p.update({"events": args.events} if role == "events" else {"rows": args.rows})
    return p


def is_current(path: Path, params: dict) -> bool:
    if not path.exists():
        return False
    try:
        meta = pq.read_schema(path).metadata or {}
        return json.loads(meta.get(META_KEY, b"{}")) == params
    except Exception as e:  # a torn or foreign file: regenerate
        log(f"ignoring {path.name}: {e}")
        return False


def write_readings(args, path: Path, params: dict) -> None:
    """Uniform arrival times over the span, a uniformly drawn sensor each: per sensor a Poisson process."""
    s_time, s_sensor, s_values = np.random.SeedSequence(args.seed).spawn(3)
    span = args.days * US_PER_DAY
    offsets = np.sort(np.random.default_rng(s_time).integers(0, span, args.rows, dtype=np.int64))
    sensor = np.random.default_rng(s_sensor).integers(0, args.sensors, args.rows, dtype=np.int32)
    rng = np.random.default_rng(s_values)
    phase = rng.uniform(0, 2 * np.pi, args.sensors)
    level = rng.normal(20.0, 3.0, args.sensors)
    names = pa.array(sensor_names(args.sensors), type=pa.string())
    schema = pa.schema([("ts", pa.timestamp("us")), ("sensor_id", pa.string()), ("temperature", pa.float64()),
                        ("error_code", pa.int32())],
                       metadata={META_KEY: json.dumps(params, sort_keys=True).encode()})
    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        for lo in range(0, args.rows, CHUNK):
            hi = min(args.rows, lo + CHUNK)
            off, sid = offsets[lo:hi], sensor[lo:hi]
            n = hi - lo
            day_angle = (off % US_PER_DAY) / US_PER_DAY * 2 * np.pi
            temp = np.round(level[sid] + 4.0 * np.sin(day_angle + phase[sid]) + rng.normal(0.0, 0.5, n), 3)
            has_error = rng.random(n) < 0.02
            codes = rng.integers(1, 30, n, dtype=np.int32)
            table = pa.Table.from_arrays([
                pa.array((START.astype(np.int64) + off).astype("datetime64[us]"), type=pa.timestamp("us")),
                names.take(pa.array(sid)),
                pa.array(temp, type=pa.float64()),
                pa.array(codes, type=pa.int32(), mask=~has_error),
            ], schema=schema)
            writer.write_table(table, row_group_size=ROW_GROUP)
    tmp.replace(path)


def write_events(args, path: Path, params: dict) -> None:
    rng = np.random.default_rng(np.random.SeedSequence([args.seed, 1]))
    n = args.events
    lo = START.astype(np.int64) - US_PER_DAY  # some events before every reading
    ts = np.sort(rng.integers(lo, START.astype(np.int64) + args.days * US_PER_DAY, n, dtype=np.int64))
    names = np.array(sensor_names(args.sensors), dtype=object)
    sensor = names[rng.integers(0, args.sensors, n)]
    unknown = rng.random(n) < 0.01  # no readings at all
    sensor[unknown] = [f"x{i:04d}" for i in rng.integers(0, 100, int(unknown.sum()))]
    schema = pa.schema([("ts", pa.timestamp("us")), ("sensor_id", pa.string()), ("label", pa.int64())],
                       metadata={META_KEY: json.dumps(params, sort_keys=True).encode()})
    table = pa.Table.from_arrays([pa.array(ts.astype("datetime64[us]"), type=pa.timestamp("us")),
                                  pa.array(sensor, type=pa.string()),
                                  pa.array(rng.integers(0, 2, n), type=pa.int64())], schema=schema)
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp, row_group_size=ROW_GROUP)
    tmp.replace(path)


def load_or_generate(args) -> tuple[Path, Path]:
    args.data_dir.mkdir(parents=True, exist_ok=True)
    tag = f"{args.sensors}-{args.days}d-s{args.seed}"
    readings = args.data_dir / f"sensor-readings-{args.rows}x{tag}.parquet"
    events = args.data_dir / f"sensor-events-{args.events}x{tag}.parquet"
    for path, role, write in ((readings, "readings", write_readings), (events, "events", write_events)):
        params = data_params(args, role)
        if is_current(path, params):
            log(f"reusing {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
            continue
        t0 = time.perf_counter()
        write(args, path, params)
        log(f"generated {path.name} ({path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t0:.1f} s")
    return readings, events


# ---------------------------------------------------------------------------------------------------------------
# Queries


def queries(args) -> list[dict]:
    """name, what it measures, the SQL for each engine, and which result columns are estimates."""
    start = pd.Timestamp(START)
    lo, hi = start + pd.Timedelta(days=10), start + pd.Timedelta(days=17)
    chosen = ", ".join(f"'{s}'" for s in sensor_names(args.sensors)[::5])  # every fifth sensor
    roll = ("avg(temperature) OVER (PARTITION BY sensor_id ORDER BY ts "
            "RANGE BETWEEN INTERVAL '5 minutes' PRECEDING AND CURRENT ROW)")
    per_sensor = """
        SELECT sensor_id, avg(temperature) AS avg_t, count(DISTINCT date_trunc('hour', ts)) AS hours,
               {pct} AS p95
        FROM readings GROUP BY sensor_id"""
    qs = [
        {"name": "a_time_bucket_5min",
         "what": "5-minute time_bucket avg/stddev/count per sensor (wrapped in count/sum)",
         "sql": """
        SELECT count(*) AS buckets, sum(n) AS n, sum(avg_t) AS sum_avg, sum(sd_t) AS sum_sd FROM (
            SELECT sensor_id, time_bucket(INTERVAL '5 minutes', ts) AS bucket, avg(temperature) AS avg_t,
                   stddev(temperature) AS sd_t, count(*) AS n
            FROM readings GROUP BY sensor_id, time_bucket(INTERVAL '5 minutes', ts)) AS b"""},
        {"name": "b_rolling_5min",
         "what": "5-minute rolling RANGE window avg per sensor (wrapped in count/sum)",
         "sql": f"""
        SELECT count(*) AS n, sum(rolling) AS sum_rolling FROM (
            SELECT {roll} AS rolling FROM readings) AS w"""},
        {"name": "c_training_set",
         "what": (f"training-set extraction: error_code IS NULL, sensor_id IN ({len(sensor_names(args.sensors)[::5])}"
                  " sensors), temperature range, 7-day ts range (wrapped in count/sum/min/max)"),
         "sql": f"""
        SELECT count(*) AS n, sum(temperature) AS sum_t, sum(hour_of_day) AS sum_hour,
               count(DISTINCT sensor_id) AS sensors, min(ts) AS first_ts, max(ts) AS last_ts FROM (
            SELECT ts, sensor_id, temperature, extract(hour FROM ts) AS hour_of_day
            FROM readings
            WHERE error_code IS NULL AND sensor_id IN ({chosen}) AND temperature BETWEEN 15 AND 25
              AND ts >= TIMESTAMP '{lo}' AND ts < TIMESTAMP '{hi}') AS t"""},
        {"name": "d_per_sensor_stats",
         "what": "per-sensor avg, COUNT(DISTINCT date_trunc('hour', ts)), exact 95th percentile (one row a sensor)",
         "kestrel": per_sensor.format(pct="percentile_cont(0.95) WITHIN GROUP (ORDER BY temperature)"),
         "duckdb": per_sensor.format(pct="quantile_cont(temperature, 0.95)"),
         "note": "d: exact percentiles on both (Kestrel percentile_cont ... WITHIN GROUP, DuckDB quantile_cont)"},
        {"name": "d2_per_sensor_stats_approx",
         "what": "the same with an approximate 95th percentile (t-digest)",
         "kestrel": per_sensor.format(pct="approx_percentile_cont(temperature, 0.95)"),
         "duckdb": per_sensor.format(pct="approx_quantile(temperature, 0.95)"),
         "approx": {"p95"},
         "note": "d2: Kestrel approx_percentile_cont, DuckDB approx_quantile (both t-digest estimates; compared "
                 f"within {APPROX_REL_TOL:g} relative)"},
        {"name": "e_asof_join",
         "what": f"ASOF JOIN of {args.events:,} events to the readings on sensor_id (wrapped in count/avg/sum)",
         "sql": """
        SELECT count(*) AS matched, avg(r.temperature) AS avg_t, sum(e.label) AS positives,
               min(r.ts) AS first_match, max(r.ts) AS last_match
        FROM events e ASOF JOIN readings r ON e.sensor_id = r.sensor_id AND e.ts >= r.ts"""},
    ]
    for q in qs:
        q.setdefault("kestrel", q.get("sql"))
        q.setdefault("duckdb", q.get("sql"))
        q.setdefault("approx", set())
        q["kestrel"] = " ".join(q["kestrel"].split())
        q["duckdb"] = " ".join(q["duckdb"].split())
    return qs


# ---------------------------------------------------------------------------------------------------------------
# Engines


def run_duckdb(readings: Path, events: Path, qs: list[dict], args) -> dict:
    con = duckdb.connect()
    con.execute(f"SET threads = {args.threads}")
    con.execute(f"CREATE VIEW readings AS SELECT * FROM read_parquet('{readings}')")
    con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{events}')")
    out = {}
    for q in qs:
        for _ in range(args.warmup):
            con.execute(q["duckdb"]).fetchall()
        times, rows, names = [], None, None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            cur = con.execute(q["duckdb"])
            rows = cur.fetchall()
            times.append((time.perf_counter() - t0) * 1000)
            names = [d[0] for d in cur.description]
        out[q["name"]] = {"names": names, "rows": [dict(zip(names, r)) for r in rows], "times_ms": times}
        log(f"DuckDB  {q['name']}: median {statistics.median(times):.1f} ms")
    con.close()
    return out


def build_kestrel() -> None:
    cmd = ["cargo", "build", "--release", "--locked", "-p", "kestrel-engine", "--example", "sql_bench"]
    log("running " + " ".join(cmd))
    if subprocess.run(cmd, cwd=ROOT).returncode != 0:
        sys.exit("building sql_bench failed")


def run_kestrel(binary: Path, readings: Path, events: Path, qs: list[dict], args) -> dict:
    setup = args.data_dir / "time_windows-setup.sql"
    setup.write_text(f"CREATE EXTERNAL TABLE readings STORED AS PARQUET LOCATION '{readings}';\n"
                     f"CREATE EXTERNAL TABLE events STORED AS PARQUET LOCATION '{events}';\n")
    qfile = args.data_dir / "time_windows-queries.json"
    qfile.write_text(json.dumps([[q["name"], q["kestrel"]] for q in qs], indent=1))
    cmd = [str(binary), str(setup), str(qfile), "--repeat", str(args.repeat), "--warmup", str(args.warmup)]
    env = dict(os.environ, TOKIO_WORKER_THREADS=str(args.threads),
               DATAFUSION_EXECUTION_TARGET_PARTITIONS=str(args.threads))
    log("running " + " ".join(cmd))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    log(f"Kestrel sql_bench finished in {time.perf_counter() - t0:.1f} s (exit {proc.returncode})")
    out = {}
    for line in proc.stdout.splitlines():
        if not line.lstrip().startswith("{"):
            continue
        obj = json.loads(line)
        out[obj["name"]] = obj
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        log(f"WARNING: {binary.name} exited with {proc.returncode}; stderr ends:\n{tail}")
        for q in qs:
            out.setdefault(q["name"], {"name": q["name"], "error": f"exit {proc.returncode}: {tail[-300:]}"})
    for name, obj in out.items():
        if "times_ms" in obj and obj["times_ms"]:
            log(f"Kestrel {name}: median {statistics.median(obj['times_ms']):.1f} ms")
        elif "error" in obj:
            log(f"Kestrel {name}: ERROR {obj['error']}")
    return out


# ---------------------------------------------------------------------------------------------------------------
# Comparing results


def _value(v):
    """One representation for both engines: timestamps (Kestrel prints ISO text) as pandas Timestamps, numbers as
    float, the rest unchanged."""
    if v is None:
        return None
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float, np.integer, np.floating)):
        return None if isinstance(v, float) and math.isnan(v) else float(v)
    if isinstance(v, (datetime.datetime, datetime.date)):
        return pd.Timestamp(v)
    if isinstance(v, str) and len(v) >= 19 and v[4] == "-" and v[10] in "T ":
        try:
            t = pd.Timestamp(v)
            return t.tz_convert(None) if t.tzinfo is not None else t
        except ValueError:
            return v
    return v


def _rows(raw, names: list[str]) -> list[tuple]:
    rows = []
    for r in raw:
        vals = [r.get(n) for n in names] if isinstance(r, dict) else list(r)
        rows.append(tuple(_value(v) for v in vals))
    return rows


def _key(row: tuple):
    return [(v is None, "" if v is None else (round(v, 3) if isinstance(v, float) else str(v))) for v in row]


def compare(q: dict, duck: dict, kes: dict) -> tuple[bool | None, str]:
    """(same, details): None when Kestrel gave no rows to compare."""
    raw = kes.get("rows")
    if not isinstance(raw, list):
        return None, "Kestrel returned no rows to compare" + (f" (rows = {raw})" if raw is not None else "")
    names = duck["names"]
    if raw and isinstance(raw[0], dict) and list(raw[0]) != names:
        return False, f"columns differ: Kestrel {list(raw[0])}, DuckDB {names}"
    if kes.get("columns") and list(kes["columns"]) != names:
        return False, f"columns differ: Kestrel {kes['columns']}, DuckDB {names}"
    want = sorted(_rows(duck["rows"], names), key=_key)
    got = sorted(_rows(raw, names), key=_key)
    if len(got) != len(want):
        return False, f"row count: Kestrel {len(got)}, DuckDB {len(want)}"
    worst, worst_approx, n_bad, bad = 0.0, 0.0, 0, []
    for i, (g, w) in enumerate(zip(got, want)):
        for name, a, b in zip(names, g, w):
            if a is None or b is None:
                ok = a is None and b is None
            elif isinstance(a, float) and isinstance(b, float):
                rel = 0.0 if abs(a - b) <= 1e-12 else abs(a - b) / max(abs(a), abs(b))
                if name in q["approx"]:
                    ok, worst_approx = rel <= APPROX_REL_TOL, max(worst_approx, rel)
                else:
                    ok, worst = rel <= REL_TOL, max(worst, rel)
            else:
                ok = a == b
            if not ok:
                n_bad += 1
                if len(bad) < 3:
                    bad.append(f"row {i} {name}: Kestrel {a!r}, DuckDB {b!r}")
    if n_bad:
        return False, f"{n_bad} values differ: " + "; ".join(bad)
    approx = f" ({', '.join(sorted(q['approx']))}: {worst_approx:.1e})" if q["approx"] else ""
    return True, f"{len(want)} row{'' if len(want) == 1 else 's'}, largest relative difference {worst:.1e}{approx}"


# ---------------------------------------------------------------------------------------------------------------
# Report


def times(ratio: float) -> str:
    return f"{ratio:.3f}x" if abs(ratio - 1) < 0.01 else f"{ratio:.2f}x"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def memory_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return f"{int(line.split()[1]) / 2**20:.0f} GiB"
    except OSError:
        pass
    return "? GiB"


def git_rev() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return rev + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def command_line(args) -> str:
    opts = [f"--rows {args.rows}", f"--repeat {args.repeat}", f"--warmup {args.warmup}"]
    for flag, default in (("sensors", 1000), ("days", 30), ("events", 100_000), ("seed", 0)):
        if getattr(args, flag) != default:
            opts.append(f"--{flag} {getattr(args, flag)}")
    if args.threads != os.cpu_count():
        opts.append(f"--threads {args.threads}")
    if args.only:
        opts.append(f"--only {args.only}")
    if args.record:
        opts.append("--record")
    return ".venv/bin/python bench/time_windows.py " + " ".join(opts)


def report(args, qs, m: dict) -> str:
    ms = lambda v: f"{v:,.1f} ms" if v >= 10 else f"{v:.2f} ms"  # noqa: E731
    dash = "—"
    kes_threads = next((o.get("threads") or o.get("target_partitions") for o in m.get("kestrel", {}).values()
                        if isinstance(o, dict) and (o.get("threads") or o.get("target_partitions"))), None)
    lines = [
        f"### Time windows and feature engineering: Kestrel next to DuckDB — {datetime.date.today().isoformat()}",
        "",
        f"{platform.node() or 'host'}: {os.cpu_count()} cores ({cpu_model()}), {memory_gib()}, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}; load average {m['load']:.2f} at start. "
        f"Threads: {args.threads} on both (DuckDB `SET threads`; Kestrel "
        + (f"reports {kes_threads}" if kes_threads else "asked through TOKIO_WORKER_THREADS and "
           "DATAFUSION_EXECUTION_TARGET_PARTITIONS, DataFusion's default being all cores") + ").",
        f"Data: {args.rows:,} readings ({args.sensors:,} sensors, Poisson arrivals over {args.days} days, mean gap "
        f"{args.days * 86400 / (args.rows / args.sensors):.0f} s a sensor; error_code NULL but for 2%) and "
        f"{args.events:,} events, Parquet, row groups of {ROW_GROUP:,}, seed {args.seed}.",
        f"Peers: duckdb {version('duckdb')} (Python, views over read_parquet), pyarrow {version('pyarrow')}, "
        f"numpy {version('numpy')}. "
        + (f"Kestrel: the `sql_bench` example, release profile, commit {m['git']} (DataFusion 55)." if "kestrel" in m
           else f"Kestrel: not measured ({m['kestrel_missing']})."),
        f"Timing: median of {args.repeat} runs after {args.warmup} warm-up run(s), each a whole query with its "
        "result collected. Same SQL text on both engines except the percentile function.",
        f"Command: `{command_line(args)}` ({m['total_s']:.0f} s in all).",
        "",
        "| query | Kestrel | DuckDB | Kestrel / DuckDB (target ≤ 1.0x) | same result |",
        "|---|---:|---:|---:|---|",
    ]
    for q in qs:
        d = m["duckdb"][q["name"]]
        dmed = statistics.median(d["times_ms"])
        k = m.get("kestrel", {}).get(q["name"])
        if k and k.get("times_ms"):
            kmed = statistics.median(k["times_ms"])
            ratio = kmed / dmed
            verdict = "**pass**" if ratio <= RATIO_TARGET else "**FAIL**"
            same, detail = m["same"][q["name"]]
            same_txt = {True: f"yes ({detail})", False: f"**MISMATCH**: {detail}", None: detail}[same]
            lines.append(f"| {q['what']} | {ms(kmed)} | {ms(dmed)} | {times(ratio)} {verdict} | {same_txt} |")
        else:
            err = (k or {}).get("error", "not measured")
            lines.append(f"| {q['what']} | {dash} ({err}) | {ms(dmed)} | {dash} | {dash} |")
    notes = [q["note"] for q in qs if q.get("note")]
    if notes:
        lines += ["", *(f"- {n}" for n in notes)]
    lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------


def main():
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/kestrel/target"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000, help="sensor readings")
    ap.add_argument("--sensors", type=int, default=1000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--events", type=int, default=100_000, help="labelled events for the ASOF join")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=5, help="timed runs a query (the median is reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs a query first")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for both engines")
    ap.add_argument("--data-dir", type=Path, default=BENCH / "data")
    ap.add_argument("--kestrel-bench", type=Path, default=target_dir / "release/examples/sql_bench",
                    help="the Kestrel benchmark program (default: $CARGO_TARGET_DIR/release/examples/sql_bench)")
    ap.add_argument("--build", action="store_true",
                    help="build the Kestrel benchmark program first (cargo build --release --locked)")
    ap.add_argument("--no-kestrel", action="store_true", help="measure DuckDB only")
    ap.add_argument("--only", default=None, help="comma-separated query names (or their letters a..e) to run")
    ap.add_argument("--record", action="store_true", help="append the result to bench/RESULTS.md")
    args = ap.parse_args()
    args.data_dir = args.data_dir.resolve()
    if args.rows < args.sensors:
        sys.exit("--rows must be at least --sensors")

    m: dict = {}
    binary = args.kestrel_bench
    if args.no_kestrel:
        m["kestrel_missing"] = "--no-kestrel"
        if args.record:
            sys.exit("--record needs Kestrel measured")
    else:
        if args.build:
            build_kestrel()
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            sys.exit(f"no program at {binary}: build it with `cargo build --release --locked -p kestrel-engine "
                     "--example sql_bench` (or pass --build), or measure DuckDB alone with --no-kestrel")

    m["load"] = os.getloadavg()[0]
    if m["load"] > 0.5:
        log(f"WARNING: load average {m['load']:.2f} before starting: other work on the machine skews the timings")
    t_start = time.perf_counter()
    readings, events = load_or_generate(args)
    qs = queries(args)
    if args.only:
        wanted = set(args.only.split(","))
        qs = [q for q in qs if q["name"] in wanted or q["name"].split("_")[0] in wanted]
        if not qs:
            sys.exit(f"--only {args.only}: no such query")

    m["duckdb"] = run_duckdb(readings, events, qs, args)
    mismatches = []
    if "kestrel_missing" not in m:
        m["kestrel"] = run_kestrel(binary, readings, events, qs, args)
        m["same"] = {}
        for q in qs:
            k = m["kestrel"].get(q["name"], {"error": "no output line"})
            m["kestrel"].setdefault(q["name"], k)
            if "error" in k:
                m["same"][q["name"]] = (None, f"error: {k['error']}")
                continue
            m["same"][q["name"]] = compare(q, m["duckdb"][q["name"]], k)
            same, detail = m["same"][q["name"]]
            if same is False:
                mismatches.append(q["name"])
                bar = "!" * 100
                log(f"\n{bar}\nRESULT MISMATCH in {q['name']}: {detail}\n"
                    f"  Kestrel: {str(k.get('rows'))[:600]}\n"
                    f"  DuckDB:  {str(m['duckdb'][q['name']]['rows'])[:600]}\n{bar}")
    m["git"] = git_rev()
    m["total_s"] = time.perf_counter() - t_start

    text = report(args, qs, m)
    print(text)
    if args.record:
        results = BENCH / "RESULTS.md"
        existing = results.read_text() if results.exists() else "# Benchmark results\n\nEach entry comes from one run of the named script, all peers measured by the same harness in that run.\n\n"
        results.write_text(existing.rstrip() + "\n\n" + text)
    if mismatches:
        log(f"RESULT MISMATCH in {', '.join(mismatches)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
