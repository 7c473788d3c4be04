//! Full-text and embed() speed driver for bench/text_speed.py. Prints one JSON object on stdout.
//!
//! Full text (one thread): loads a corpus from Parquet (id BIGINT, cat BIGINT, body TEXT), times CREATE INDEX ...
//! USING fulltext, then top-10 MATCH queries of four kinds (OR, AND, phrase, and OR with a 1% filter on cat),
//! planning apart from execution; then streams INSERTs at a fixed rate and times each one until a MATCH finds it.
//!
//!     text_bench fulltext --docs D.parquet --queries Q.json [--stream-seconds 20] [--stream-rate 1000]
//!
//! Live: a full-text index on a Kafka live table under sustained ingest (memory, segments, insert→visible).
//!
//!     text_bench live [--seconds 60] [--rate 1000] [--retention 20000]
//!
//! embed(): times `SELECT embed(text)` over a Parquet column of texts, with `--threads` partitions (set
//! RAYON_NUM_THREADS to the same number: candle's matrix products run on rayon's pool).
//!
//!     text_bench embed --texts T.parquet --threads 1

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::physical_plan::collect;
use kestrel_engine::{Engine, Outcome, RunOptions};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

async fn run(engine: &Engine, sql: &str) -> Vec<RecordBatch> {
    match engine.run_cell(sql, &RunOptions::all_rows()).await {
        Ok(Some(Outcome::Rows(r))) => r.batches,
        Ok(_) => Vec::new(),
        Err(e) => panic!("{sql}: {e}"),
    }
}

fn int(batches: &[RecordBatch]) -> i64 {
    batches[0].column(0).as_primitive::<Int64Type>().value(0)
}

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Resident memory of this process, in MiB.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|pages| pages * 4096.0 / (1024.0 * 1024.0))
        .unwrap_or(f64::NAN)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(mut ms: Vec<f64>) -> Value {
    ms.sort_by(|a, b| a.total_cmp(b));
    json!({"p50_ms": percentile(&ms, 0.5), "p99_ms": percentile(&ms, 0.99),
           "mean_ms": ms.iter().sum::<f64>() / ms.len().max(1) as f64})
}

/// One kind of query: plan (SQL text → physical plan) and execution timed apart; the top-10 ids and scores.
async fn measure(engine: &Engine, sqls: &[String]) -> Value {
    let task = engine.session().task_ctx();
    // warm up (caches, allocator), untimed, as the peer is
    for sql in sqls.iter().take(10) {
        let plan = engine.physical_plan(sql).await.expect("plan");
        collect(plan, task.clone()).await.expect("execute");
    }
    let (mut plan_ms, mut exec_ms, mut statement_ms) = (Vec::new(), Vec::new(), Vec::new());
    let mut results = Vec::new();
    for sql in sqls {
        let started = Instant::now();
        let plan = engine.physical_plan(sql).await.expect("plan");
        let planned = Instant::now();
        let batches = collect(plan, task.clone()).await.expect("execute");
        let done = Instant::now();
        plan_ms.push((planned - started).as_secs_f64() * 1e3);
        exec_ms.push((done - planned).as_secs_f64() * 1e3);
        statement_ms.push((done - started).as_secs_f64() * 1e3);
        let mut hits = Vec::new();
        for b in &batches {
            let ids = b.column(0).as_primitive::<Int64Type>();
            let scores = cast(b.column(1), &DataType::Float64).expect("a numeric _score");
            let scores = scores.as_primitive::<Float64Type>();
            for i in 0..b.num_rows() {
                hits.push(json!([ids.value(i), scores.value(i)]));
            }
        }
        results.push(Value::Array(hits));
    }
    // the whole statement as a notebook cell runs it: parse, rewrite, plan, execute, collect the rows
    let mut cell_ms = Vec::new();
    for sql in sqls {
        let started = Instant::now();
        let batches = run(engine, sql).await;
        cell_ms.push(started.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(batches);
    }
    json!({"queries": sqls.len(), "plan": summary(plan_ms), "exec": summary(exec_ms),
           "statement": summary(statement_ms), "cell": summary(cell_ms), "results": results})
}

fn p50(m: &Value, what: &str) -> f64 {
    m[what]["p50_ms"].as_f64().unwrap_or(f64::NAN)
}

async fn fulltext(args: &[String]) -> Value {
    let docs = flag(args, "--docs").expect("--docs");
    let queries: Value = serde_json::from_str(
        &std::fs::read_to_string(flag(args, "--queries").expect("--queries"))
            .expect("queries file"),
    )
    .expect("queries JSON");
    let stream_seconds: f64 = flag(args, "--stream-seconds")
        .map(|s| s.parse().expect("--stream-seconds"))
        .unwrap_or(20.0);
    let stream_rate: f64 = flag(args, "--stream-rate")
        .map(|s| s.parse().expect("--stream-rate"))
        .unwrap_or(1000.0);

    let engine = Engine::new();
    run(&engine, "SET datafusion.execution.target_partitions = 1").await;
    let started = Instant::now();
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE docs_file STORED AS PARQUET LOCATION {}; \
             CREATE TABLE docs AS SELECT id, cat, body FROM docs_file",
            sql_str(&docs)
        ),
    )
    .await;
    let load_s = started.elapsed().as_secs_f64();
    let n = int(&run(&engine, "SELECT CAST(count(*) AS BIGINT) FROM docs").await);
    let rss_loaded = rss_mib();
    eprintln!("text_bench: {n} docs loaded in {load_s:.1} s");
    let started = Instant::now();
    run(
        &engine,
        "CREATE INDEX docs_ft ON docs USING fulltext (body) WITH (analyzer = 'standard')",
    )
    .await;
    let build_s = started.elapsed().as_secs_f64();
    let rss_indexed = rss_mib();
    eprintln!(
        "text_bench: index built in {build_s:.1} s ({:.0} docs/s)",
        n as f64 / build_s
    );

    let top10 = |filter: &str| {
        format!("SELECT id, _score FROM docs WHERE {filter} ORDER BY _score DESC LIMIT 10")
    };
    let texts =
        |kind: &str| -> Vec<Value> { queries[kind].as_array().cloned().unwrap_or_default() };
    let mut kinds = serde_json::Map::new();
    for kind in ["or", "and", "phrase", "filtered"] {
        let sqls: Vec<String> = texts(kind)
            .iter()
            .map(|q| {
                let text = sql_str(q["q"].as_str().unwrap_or_default());
                match kind {
                    "or" => top10(&format!("MATCH(docs_ft, {text})")),
                    "and" => top10(&format!(
                        "MATCH(docs_ft, {text}) USING best_fields WITH (operator = 'and')"
                    )),
                    "phrase" => top10(&format!("MATCH(docs_ft, {text}) USING phrase")),
                    _ => top10(&format!(
                        "MATCH(docs_ft, {text}) AND cat = {}",
                        q["cat"].as_i64().unwrap_or(0)
                    )),
                }
            })
            .collect();
        let m = measure(&engine, &sqls).await;
        eprintln!(
            "text_bench: {kind}: cell p50 {:.3} ms, statement p50 {:.3} ms, exec p50 {:.3} ms, plan p50 {:.3} ms",
            p50(&m, "cell"),
            p50(&m, "statement"),
            p50(&m, "exec"),
            p50(&m, "plan")
        );
        kinds.insert(kind.into(), m);
    }

    // streaming inserts: every tick, a few rows each holding a word no other row has; the time from the INSERT's
    // start until a MATCH for its last row finds it
    let tick = Duration::from_millis(10);
    let per_tick = ((stream_rate * tick.as_secs_f64()).round() as usize).max(1);
    let mut visible_ms = Vec::new();
    let mut inserted = 0usize;
    let stream_started = Instant::now();
    let rss_before = rss_mib();
    let mut next = Instant::now();
    while stream_started.elapsed().as_secs_f64() < stream_seconds {
        let rows: Vec<String> = (0..per_tick)
            .map(|i| {
                let k = inserted + i;
                format!(
                    "({}, {}, 'streamed row fresh{k} about pumps and valves')",
                    10_000_000_000i64 + k as i64,
                    k % 100
                )
            })
            .collect();
        let last = inserted + per_tick - 1;
        let t0 = Instant::now();
        run(
            &engine,
            &format!("INSERT INTO docs VALUES {}", rows.join(", ")),
        )
        .await;
        let found = int(&run(
            &engine,
            &format!(
                "SELECT CAST(count(*) AS BIGINT) FROM docs WHERE MATCH(docs_ft, 'fresh{last}')"
            ),
        )
        .await);
        assert_eq!(found, 1, "row fresh{last} not found right after its INSERT");
        visible_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        inserted += per_tick;
        next += tick;
        let now = Instant::now();
        if next > now {
            tokio::time::sleep(next - now).await;
        } else {
            // behind: do not try to catch up in a burst
            next = now;
        }
    }
    let stream_s = stream_started.elapsed().as_secs_f64();
    let rss_after = rss_mib();
    eprintln!(
        "text_bench: streamed {inserted} rows in {stream_s:.1} s ({:.0} rows/s)",
        inserted as f64 / stream_s
    );
    json!({"threads": 1, "docs": n, "load_s": load_s, "build_s": build_s,
           "build_docs_per_s": n as f64 / build_s,
           "rss_mib": {"loaded": rss_loaded, "indexed": rss_indexed, "stream_start": rss_before,
                       "stream_end": rss_after},
           "queries": kinds,
           "stream": {"seconds": stream_s, "rows": inserted, "rows_per_s": inserted as f64 / stream_s,
                      "rows_per_insert": per_tick, "visible": summary(visible_ms)}})
}

/// A full-text index on a Kafka live table (the built-in demo broker) under sustained ingest: INSERTs publish
/// `--rate` rows/s for `--seconds`, retention keeps the last `--retention` rows; after each INSERT, a MATCH for its
/// last row is repeated until it finds it (publish → consume → index → visible). Resident memory and the index's
/// segments are sampled every second.
async fn live(args: &[String]) -> Value {
    let seconds: f64 = flag(args, "--seconds")
        .map(|s| s.parse().expect("--seconds"))
        .unwrap_or(60.0);
    let rate: f64 = flag(args, "--rate")
        .map(|s| s.parse().expect("--rate"))
        .unwrap_or(1000.0);
    let retention: usize = flag(args, "--retention")
        .map(|s| s.parse().expect("--retention"))
        .unwrap_or(20_000);
    let engine = Engine::new();
    run(
        &engine,
        &format!(
            "SELECT topic FROM kafka_demo('bench_live', 0); \
             CREATE EXTERNAL TABLE live (id BIGINT, body TEXT) STORED AS KAFKA \
             LOCATION 'kafka://demo/bench_live' \
             OPTIONS ('format' 'json', 'start' 'earliest', 'retention' '{retention} rows'); \
             CREATE INDEX live_ft ON live USING fulltext (body)"
        ),
    )
    .await;
    let tick = Duration::from_millis(10);
    let per_tick = ((rate * tick.as_secs_f64()).round() as usize).max(1);
    let (mut visible_ms, mut samples, mut queries) = (Vec::new(), Vec::new(), 0u64);
    let mut inserted = 0usize;
    let started = Instant::now();
    let mut next_sample = Instant::now();
    let mut next = Instant::now();
    while started.elapsed().as_secs_f64() < seconds {
        let rows: Vec<String> = (0..per_tick)
            .map(|i| {
                let k = inserted + i;
                format!(
                    "({k}, 'streamed row fresh{k} about pumps and valves number {}')",
                    k % 97
                )
            })
            .collect();
        let last = inserted + per_tick - 1;
        let t0 = Instant::now();
        run(
            &engine,
            &format!("INSERT INTO live VALUES {}", rows.join(", ")),
        )
        .await;
        let probe = format!(
            "SELECT CAST(count(*) AS BIGINT) FROM live WHERE MATCH(live_ft, 'fresh{last}')"
        );
        loop {
            queries += 1;
            if int(&run(&engine, &probe).await) == 1 {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "fresh{last} never became visible"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        visible_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        inserted += per_tick;
        if Instant::now() >= next_sample {
            let stats = run(
                &engine,
                "SELECT CAST(rows_indexed AS BIGINT), CAST(segments AS BIGINT) FROM sys.indexes \
                 WHERE name = 'live_ft'",
            )
            .await;
            let value = |c: usize| stats[0].column(c).as_primitive::<Int64Type>().value(0);
            samples.push(json!({"t_s": started.elapsed().as_secs_f64(), "rss_mib": rss_mib(),
                                "rows_indexed": value(0), "segments": value(1), "inserted": inserted}));
            next_sample += Duration::from_secs(1);
        }
        next += tick;
        let now = Instant::now();
        if next > now {
            tokio::time::sleep(next - now).await;
        } else {
            next = now;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rows_now = int(&run(&engine, "SELECT CAST(count(*) AS BIGINT) FROM live").await);
    eprintln!(
        "text_bench: live: {inserted} rows in {elapsed:.1} s ({:.0} rows/s), {rows_now} kept",
        inserted as f64 / elapsed
    );
    json!({"seconds": elapsed, "rows": inserted, "rows_per_s": inserted as f64 / elapsed,
           "rows_per_insert": per_tick, "retention": retention, "rows_kept": rows_now,
           "probe_queries": queries, "visible": summary(visible_ms), "samples": samples})
}

async fn embed(args: &[String]) -> Value {
    let texts = flag(args, "--texts").expect("--texts");
    let threads: usize = flag(args, "--threads")
        .map(|s| s.parse().expect("--threads"))
        .unwrap_or(1);
    let engine = Engine::new();
    run(
        &engine,
        &format!(
            "SET datafusion.execution.target_partitions = {threads}; \
             CREATE EXTERNAL TABLE texts_file STORED AS PARQUET LOCATION {}; \
             CREATE TABLE texts AS SELECT text FROM texts_file",
            sql_str(&texts)
        ),
    )
    .await;
    let n = int(&run(&engine, "SELECT CAST(count(*) AS BIGINT) FROM texts").await);
    // loads the model (untimed, as the peer's load is)
    run(&engine, "SELECT embed('warm up')").await;
    let started = Instant::now();
    run(
        &engine,
        "CREATE TABLE vectors AS SELECT embed(text) AS e FROM texts",
    )
    .await;
    let seconds = started.elapsed().as_secs_f64();
    let embedded = int(&run(&engine, "SELECT CAST(count(e) AS BIGINT) FROM vectors").await);
    assert_eq!(embedded, n);
    eprintln!(
        "text_bench: embedded {n} texts in {seconds:.2} s ({:.1}/s) with {threads} thread(s)",
        n as f64 / seconds
    );
    json!({"threads": threads, "texts": n, "seconds": seconds, "per_s": n as f64 / seconds,
           "rayon_threads": std::env::var("RAYON_NUM_THREADS").ok()})
}

fn main() {
    kestrel_engine::embed::configure_process();
    let args: Vec<String> = std::env::args().skip(1).collect();
    // full text on one thread; embed() with as many runtime workers as partitions, as the kernel runs it
    let threads: usize = flag(&args, "--threads")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let runtime = match args.first().map(|s| s.as_str()) {
        Some("embed") | Some("live") => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(if args[0] == "live" { 2 } else { threads.max(1) })
            .enable_all()
            .build(),
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    }
    .expect("a runtime");
    let out = runtime.block_on(async {
        match args.first().map(|s| s.as_str()) {
            Some("fulltext") => fulltext(&args).await,
            Some("embed") => embed(&args).await,
            Some("live") => live(&args).await,
            _ => {
                eprintln!(
                    "usage: text_bench fulltext --docs D.parquet --queries Q.json | \
                     text_bench embed --texts T.parquet --threads N"
                );
                std::process::exit(2);
            }
        }
    });
    println!("{out}");
}
