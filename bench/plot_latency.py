"""Plot latency and size: Kestrel's %%plot next to jupysql's %sqlplot (DuckDB) and pandas + matplotlib, one run.

For 10k, 100k and 2M points, each peer runs in its own kernel through jupyter_client; a cell is timed from
execute_request to its idle status, and the image it displays is measured in bytes.
- Kestrel: `%%plot line|scatter|histogram` over `generate_series` (reduced in the engine, SVG).
- jupysql + DuckDB: `%sqlplot histogram` (binning pushed into DuckDB, matplotlib draws; PNG). It has no line or
  scatter plot of a query.
- pandas + matplotlib (ipykernel): the query's rows fetched into pandas from DuckDB, `df.plot()` drawn as SVG, which
  is what a notebook does without a reduction.

    .venv/bin/python bench/plot_latency.py [--repeat 3] [--record]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import subprocess
import time
from pathlib import Path

from jupyter_client import KernelManager

SIZES = [10_000, 100_000, 2_000_000]


def start(kernel_name: str):
    km = KernelManager(kernel_name=kernel_name)
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=120)
    return km, kc


def run(kc, code: str, timeout: float = 600):
    """Seconds to idle, and the bytes of the largest image displayed."""
    t0 = time.perf_counter()
    msg_id = kc.execute(code)
    size, error = 0, None
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind = msg["msg_type"]
        if kind in ("execute_result", "display_data"):
            for mime in ("image/svg+xml", "image/png"):
                if mime in msg["content"]["data"]:
                    size = max(size, len(msg["content"]["data"][mime].encode()))
        if kind == "error":
            error = msg["content"]["evalue"]
        if kind == "status" and msg["content"]["execution_state"] == "idle":
            break
    elapsed = time.perf_counter() - t0
    if error:
        raise RuntimeError(f"{code!r}: {error}")
    return elapsed, size


def series(n: int, duckdb: bool = False) -> str:
    source = f"range(1, {n + 1}) AS t(value)" if duckdb else f"generate_series(1, {n})"
    return (f"SELECT value AS i, sin(value / {max(n // 50, 1)}.0) + (value % 97) / 200.0 AS v, "
            f"(value * 7919) % 1009 AS w FROM {source}")


def median_run(kc, code, repeat):
    runs = [run(kc, code) for _ in range(repeat)]
    return statistics.median(r[0] for r in runs), runs[-1][1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    rows = []

    km, kc = start("kestrel")
    run(kc, "SELECT 1")
    for n in SIZES:
        for kind, opts in [("line", "x=i y=v"), ("scatter", "x=i y=w"), ("histogram", "y=v bins=50")]:
            t, size = median_run(kc, f"%%plot {kind} {opts}\n{series(n)}", args.repeat)
            rows.append(("Kestrel `%%plot " + kind + "`", n, t, size))
    kc.stop_channels()
    km.shutdown_kernel(now=True)

    km, kc = start("python3")
    for code in ["%load_ext sql", "%config SqlMagic.displaylimit = 10", "%sql duckdb://",
                 "%config InlineBackend.figure_formats = ['svg']", "import duckdb, matplotlib.pyplot as plt"]:
        run(kc, code)
    for n in SIZES:
        run(kc, f"%sql CREATE OR REPLACE TABLE s AS {series(n, duckdb=True)}")
        t, size = median_run(kc, "%sqlplot histogram --table s --column v --bins 50", args.repeat)
        rows.append(("jupysql+DuckDB `%sqlplot histogram` (PNG)", n, t, size))
        sql = series(n, duckdb=True)
        t, size = median_run(kc, f"df = duckdb.sql('{sql}').df()\ndf.plot(x='i', y='v'); plt.show()", args.repeat)
        rows.append(("pandas+matplotlib `df.plot()` line (SVG)", n, t, size))
        t, size = median_run(kc, f"df = duckdb.sql('{sql}').df()\ndf.plot.scatter(x='i', y='w', s=1); plt.show()", args.repeat)
        rows.append(("pandas+matplotlib `df.plot.scatter()` (SVG)", n, t, size))
    kc.stop_channels()
    km.shutdown_kernel(now=True)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [
        f"### Plots: %%plot next to jupysql and pandas+matplotlib — {datetime.date.today()}",
        "",
        f"`.venv/bin/python bench/plot_latency.py --repeat {args.repeat}` on commit {commit}, {platform.machine()}, "
        "2 cores; median cell time (execute → idle) of the repeats, and the size of the image the cell displays.",
        "",
        "| plot | points | time (s) | image (bytes) |",
        "|---|---:|---:|---:|",
    ]
    for label, n, t, size in sorted(rows, key=lambda r: (r[1], r[0])):
        lines.append(f"| {label} | {n:,} | {t:.3f} | {size:,} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.record:
        with open(Path(__file__).parent / "RESULTS.md", "a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
