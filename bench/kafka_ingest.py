"""Kafka ingest: librdkafka's raw consume rate next to rows/s into a queryable Kestrel live table, produce→query
freshness, and memory under sustained ingest with retention — on one broker, in one run.

The measurement is the Rust program `engine/examples/kafka_bench.rs` (built with
`cargo build --release --locked -p kestrel-engine --example kafka_bench`; `--build` runs that). For each broker it
  1. produces N ~100-byte JSON readings to a topic (3 partitions on noida-db; on the mock cluster, which keeps at
     most 5 MB a partition, one partition per 30,000 messages);
  2. seven times, alternating: a plain rdkafka BaseConsumer reads all N from the start touching each payload (no
     decoding) — the raw rate; then a fresh Engine runs CREATE EXTERNAL TABLE ... STORED AS KAFKA over the same
     topic and the clock stops when all N rows are appended and queryable — the ingest rate. Best and median of
     seven each, and the process CPU time of each round; pass/fail is on the medians;
  3. produces 500 single messages 5 ms apart (linger.ms 0) into a tailing live table and times each until its row
     is appended (a query would see it): freshness p50/p99;
  4. produces 1,000,000 messages (five times the retention) as fast as it can into a table with retention
     '200000 rows' and samples the process RSS and the table's bytes every 250 ms: the second half's RSS range
     shows whether memory is flat.
Brokers: librdkafka's in-process mock cluster, and noida-db (a Kafka-protocol broker process on loopback; from the
project venv). noida-db 0.2.3 serves nothing from a 3-partition topic of 1,000,000 such messages ("Bad message
format" on every fetch) while 500,000 work, so runs use 500,000.

    .venv/bin/python bench/kafka_ingest.py [--messages 500000] [--only mock|noida] [--build] [--record]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/kestrel/target"))
BIN = TARGET / "release/examples/kafka_bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(messages: int, bootstrap: str | None) -> dict:
    cmd = [str(BIN), "--messages", str(messages)]
    if bootstrap:
        cmd += ["--bootstrap", bootstrap]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, env={**os.environ, "RUST_LOG": "off"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def with_noida(messages: int) -> dict:
    import noida_db

    binary = Path(noida_db.__file__).parent / "noida-db"
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen([str(binary), "start", "--only", "kafka", "--kafka-port", str(port), "--host",
                                 "127.0.0.1", "--data-dir", data], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            for _ in range(300):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    time.sleep(0.1)
            from confluent_kafka.admin import AdminClient, NewTopic

            admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
            for f in admin.create_topics([NewTopic(t, num_partitions=3, replication_factor=1)
                                          for t in ("ingest", "fresh", "sustained")]).values():
                f.result(15)
            return run(messages, f"127.0.0.1:{port}")
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)


def table(results: dict[str, dict]) -> str:
    mb = 1 << 20
    lines = [
        "| broker | messages, partitions | raw consume (msg/s), best / median | live table ingest (rows/s), best / median "
        "| ingest / raw, best / median (target ≥ 0.8x) | CPU s a round, raw / ingest (median) "
        "| freshness p50 / p99 / max (ms) | sustained: RSS 2nd half min–max (MB) | table max (MB, rows) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
        lines.append(
            f"| {name} | {r['messages']:,}, {r['partitions']} | {r['raw_rate']:,.0f} / {r['raw_rate_median']:,.0f} "
            f"| {r['ingest_rate']:,.0f} / {r['ingest_rate_median']:,.0f} "
            f"| {r['ingest_vs_raw']:.2f}x / {r['ingest_vs_raw_median']:.2f}x "
            f"{'pass' if r['ingest_vs_raw_median'] >= 0.8 else 'FAIL'} "
            f"| {med(r['raw_cpu_s']):.2f} / {med(r['ingest_cpu_s']):.2f} "
            f"| {r['fresh_p50_ms']:.1f} / {r['fresh_p99_ms']:.1f} / {r['fresh_max_ms']:.1f} "
            f"| {r['sustained_rss_second_half_min'] / mb:,.0f}–{r['sustained_rss_second_half_max'] / mb:,.0f} "
            f"({r['sustained_consumed']:,} consumed) "
            f"| {r['sustained_table_bytes_max'] / mb:,.1f}, {r['sustained_rows_held_max']:,} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=500_000)
    ap.add_argument("--build", action="store_true")
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--only", choices=["mock", "noida"])
    a = ap.parse_args()
    if a.build:
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "kestrel-engine", "--example",
                        "kafka_bench"], check=True, cwd=ROOT)
    results = {}
    if a.only in (None, "mock"):
        results["librdkafka mock cluster (in-process)"] = run(a.messages, None)
    if a.only in (None, "noida"):
        results["noida-db 0.2.3 (process, loopback)"] = with_noida(a.messages)
    for r in results.values():
        print(json.dumps(r), file=sys.stderr)
    text = table(results)
    print(text)
    if a.record:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=ROOT).stdout.strip()
        with open(ROOT / "bench/RESULTS.md", "a") as f:
            f.write(f"\n### Kafka ingest ({datetime.date.today()}, commit {commit}, {a.messages:,} messages of "
                    f"~{next(iter(results.values()))['bytes_per_message']} bytes, 2 cores)\n\n")
            f.write(text + "\n")


if __name__ == "__main__":
    main()
