"""Kernel start-up and `SELECT 1` round trip, Kestrel next to ipykernel and jupysql+DuckDB, one harness, one run.

Start-up: launch → the kernel's first kernel_info_reply on the shell channel, and launch → jupyter_client's
wait_for_ready returning (what notebooks wait for: after the reply it drains IOPub until 0.2 s pass without a
message, so no kernel starts faster than 0.2 s by that measure), medians over --starts launches.
Round trip: execute_request sent → status idle received for it, over --cells cells after a warm-up.

    .venv/bin/python bench/kernel_latency.py [--starts 10] [--cells 300] [--record]

--record appends the table to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from importlib.metadata import version
from pathlib import Path

from jupyter_client import KernelManager

PEERS = [
    # (label, kernel name, set-up cells, the cell timed)
    ("Kestrel `SELECT 1`", "kestrel", [], "SELECT 1"),
    ("ipykernel `1+1`", "python3", [], "1+1"),
    ("jupysql+DuckDB `%sql SELECT 1`", "python3", ["%load_ext sql", "%config SqlMagic.displaylimit = 10", "%sql duckdb://"], "%sql SELECT 1"),
]


def start(kernel_name: str):
    """The kernel started, and the seconds from launch to its first kernel_info_reply and to wait_for_ready."""
    km = KernelManager(kernel_name=kernel_name)
    t0 = time.perf_counter()
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    # requests sent before the kernel binds its sockets wait in ZeroMQ's queue and are delivered on connection
    msg_id = kc.kernel_info()
    while True:
        reply = kc.get_shell_msg(timeout=120)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    replied = time.perf_counter() - t0
    kc.wait_for_ready(timeout=120)
    return km, kc, replied, time.perf_counter() - t0


def run_cell(kc, code: str) -> float:
    t0 = time.perf_counter()
    msg_id = kc.execute(code)
    while True:
        msg = kc.get_iopub_msg(timeout=60)
        if (
            msg["parent_header"].get("msg_id") == msg_id
            and msg["msg_type"] == "status"
            and msg["content"]["execution_state"] == "idle"
        ):
            elapsed = time.perf_counter() - t0
            break
    reply = kc.get_shell_msg(timeout=60)
    assert reply["content"]["status"] == "ok", (code, reply["content"])
    return elapsed


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def measure(label, kernel, setup, cell, starts, cells):
    replies, readies = [], []
    for _ in range(starts):
        km, kc, replied, ready = start(kernel)
        replies.append(replied)
        readies.append(ready)
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    km, kc, _, _ = start(kernel)
    for code in setup:
        run_cell(kc, code)
    for _ in range(20):
        run_cell(kc, cell)
    trips = [run_cell(kc, cell) for _ in range(cells)]
    kc.stop_channels()
    km.shutdown_kernel(now=True)
    return {
        "label": label,
        "reply_ms": statistics.median(replies) * 1000,
        "startup_ms": statistics.median(readies) * 1000,
        "p50_ms": pct(trips, 50) * 1000,
        "p99_ms": pct(trips, 99) * 1000,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--starts", type=int, default=10)
    ap.add_argument("--cells", type=int, default=300)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()

    rows = [measure(*peer, args.starts, args.cells) for peer in PEERS]
    kestrel, ipy, jupysql = rows
    lines = [
        f"### Kernel start-up and round trip — {datetime.date.today().isoformat()}",
        "",
        f"{platform.node() or 'host'}: {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; {args.starts} launches (median), {args.cells} timed cells after 20 warm-up.",
        "Kestrel: the binary `./install.sh` installs (dev profile: dependencies at opt-level 2, Kestrel at 1). "
        "Peers: " + ", ".join(f"{p} {version(p)}" for p in ("ipykernel", "jupysql", "duckdb", "duckdb-engine", "jupyter_client")) + ".",
        f"Command: `.venv/bin/python bench/kernel_latency.py --starts {args.starts} --cells {args.cells} --record`.",
        "",
        "| kernel | launch → kernel_info_reply, median | launch → wait_for_ready (+0.2 s IOPub drain), median | round trip p50 | round trip p99 |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['label']} | {r['reply_ms']:.0f} ms | {r['startup_ms']:.0f} ms | {r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms |")
    lines += [
        "",
        f"Kestrel / ipykernel: start-up {kestrel['startup_ms'] / ipy['startup_ms']:.2f}x to wait_for_ready (target ≤ 0.5x), "
        f"{kestrel['reply_ms'] / ipy['reply_ms']:.2f}x to the kernel_info_reply; "
        f"round trip p50 {kestrel['p50_ms'] / ipy['p50_ms']:.2f}x (target ≤ 1.0x). "
        f"Kestrel / jupysql: round trip p50 {kestrel['p50_ms'] / jupysql['p50_ms']:.2f}x (target ≤ 0.3x).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.record:
        results = Path(__file__).with_name("RESULTS.md")
        existing = results.read_text() if results.exists() else "# Benchmark results\n\nEach entry comes from one run of the named script, all peers measured by the same harness in that run.\n\n"
        results.write_text(existing.rstrip() + "\n\n" + text)


if __name__ == "__main__":
    main()
