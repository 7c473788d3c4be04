//! KNN_MATCH benchmark driver for bench/vector_search.py: loads base and query vectors from Parquet into a Kestrel
//! engine (one thread), then measures exact and indexed KNN_MATCH, planning apart from execution, and prints one
//! JSON object on stdout.
//!
//! cargo run --release -p kestrel-engine --example knn_bench -- --base B.parquet --queries Q.parquet --k 10 \
//!     --m 16 --ef-construction 200 --ef-search 10,16,32,64,128,256 [--exact-queries 200]

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Float32Type, Int64Type};
use datafusion::physical_plan::collect;
use kestrel_engine::{Engine, Outcome, RunOptions};
use std::time::{Duration, Instant};

struct Args {
    base: String,
    queries: String,
    k: usize,
    m: usize,
    ef_construction: usize,
    ef_search: Vec<usize>,
    exact_queries: usize,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        base: String::new(),
        queries: String::new(),
        k: 10,
        m: 16,
        ef_construction: 200,
        ef_search: vec![10, 16, 32, 64, 128, 256],
        exact_queries: usize::MAX,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--base" => a.base = value,
            "--queries" => a.queries = value,
            "--k" => a.k = num(&value)?,
            "--m" => a.m = num(&value)?,
            "--ef-construction" => a.ef_construction = num(&value)?,
            "--ef-search" => {
                a.ef_search = value.split(',').map(num).collect::<Result<_, _>>()?;
            }
            "--exact-queries" => a.exact_queries = num(&value)?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.base.is_empty() || a.queries.is_empty() {
        return Err("--base and --queries are required".into());
    }
    Ok(a)
}

async fn run(engine: &Engine, sql: &str) -> Vec<RecordBatch> {
    match engine.run_cell(sql, &RunOptions::all_rows()).await {
        Ok(Some(Outcome::Rows(r))) => r.batches,
        Ok(_) => Vec::new(),
        Err(e) => panic!("{sql}: {e}"),
    }
}

fn literal(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x}")).collect();
    format!("[{}]", parts.join(","))
}

fn ids_of(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect()
}

struct Timing {
    qps_exec: f64,
    qps_sql: f64,
    p50_ms: f64,
    p99_ms: f64,
    ids: Vec<Vec<i64>>,
}

/// Per query: plan (SQL text → physical plan) and execute, timed apart.
async fn measure(engine: &Engine, queries: &[Vec<f32>], k: usize) -> Timing {
    let mut exec = Duration::ZERO;
    let mut statements = Vec::with_capacity(queries.len());
    let mut ids = Vec::with_capacity(queries.len());
    let task = engine.session().task_ctx();
    // Warm up (caches, allocator), untimed, as the peers are.
    for q in queries.iter().take(10) {
        let sql = format!(
            "SELECT id FROM base WHERE KNN_MATCH(embedding, {}, {k})",
            literal(q)
        );
        let plan = engine.physical_plan(&sql).await.expect("plan");
        collect(plan, task.clone()).await.expect("execute");
    }
    for q in queries {
        let sql = format!(
            "SELECT id FROM base WHERE KNN_MATCH(embedding, {}, {k})",
            literal(q)
        );
        let started = Instant::now();
        let plan = engine.physical_plan(&sql).await.expect("plan");
        let planned = Instant::now();
        let batches = collect(plan, task.clone()).await.expect("execute");
        let done = Instant::now();
        exec += done - planned;
        statements.push(done - started);
        ids.push(ids_of(&batches));
    }
    let total: Duration = statements.iter().sum();
    statements.sort();
    let pct = |p: f64| {
        statements[((statements.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
    };
    Timing {
        qps_exec: queries.len() as f64 / exec.as_secs_f64(),
        qps_sql: queries.len() as f64 / total.as_secs_f64(),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        ids,
    }
}

fn json_ids(ids: &[Vec<i64>]) -> String {
    let rows: Vec<String> = ids
        .iter()
        .map(|r| {
            format!(
                "[{}]",
                r.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            )
        })
        .collect();
    format!("[{}]", rows.join(","))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("knn_bench: {e}");
            std::process::exit(2);
        }
    };
    let engine = Engine::new();
    run(&engine, "SET datafusion.execution.target_partitions = 1").await;
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE base_file STORED AS PARQUET LOCATION '{}'; \
             CREATE TABLE base AS SELECT id, embedding FROM base_file; \
             CREATE EXTERNAL TABLE queries STORED AS PARQUET LOCATION '{}'",
            a.base, a.queries
        ),
    )
    .await;
    let n: i64 = ids_of(&run(&engine, "SELECT CAST(count(*) AS BIGINT) FROM base").await)[0];
    let batches = run(&engine, "SELECT embedding FROM queries ORDER BY id").await;
    let mut queries: Vec<Vec<f32>> = Vec::new();
    let mut dim = 0;
    for b in &batches {
        let list = b.column(0).as_fixed_size_list();
        dim = list.value_length() as usize;
        let values = list.values().as_primitive::<Float32Type>().values();
        for i in 0..list.len() {
            queries.push(values[i * dim..(i + 1) * dim].to_vec());
        }
    }
    eprintln!(
        "knn_bench: {n} × {dim} base vectors, {} queries",
        queries.len()
    );

    let exact_queries = &queries[..a.exact_queries.min(queries.len())];
    let exact = measure(&engine, exact_queries, a.k).await;
    eprintln!("knn_bench: exact {:.1} QPS (exec)", exact.qps_exec);

    let started = Instant::now();
    run(
        &engine,
        &format!(
            "CREATE INDEX base_embedding ON base USING hnsw (embedding) WITH (m = {}, ef_construction = {})",
            a.m, a.ef_construction
        ),
    )
    .await;
    let build_s = started.elapsed().as_secs_f64();
    eprintln!("knn_bench: index built in {build_s:.1} s");
    let index = engine.indexes().index("base_embedding").expect("index");

    let mut indexed = Vec::new();
    for ef in &a.ef_search {
        index.set_ef_search(*ef);
        let t = measure(&engine, &queries, a.k).await;
        eprintln!(
            "knn_bench: ef_search {ef}: {:.1} QPS (exec), p50 {:.2} ms",
            t.qps_exec, t.p50_ms
        );
        indexed.push(format!(
            "{{\"ef_search\":{ef},\"qps_exec\":{:.3},\"qps_sql\":{:.3},\"statement_ms_p50\":{:.4},\"statement_ms_p99\":{:.4},\"ids\":{}}}",
            t.qps_exec,
            t.qps_sql,
            t.p50_ms,
            t.p99_ms,
            json_ids(&t.ids)
        ));
    }
    println!(
        "{{\"threads\":1,\"n\":{n},\"dim\":{dim},\"exact\":{{\"queries\":{},\"qps_exec\":{:.3},\"qps_sql\":{:.3},\"statement_ms_p50\":{:.4},\"ids\":{}}},\"build_s\":{build_s:.3},\"indexed\":[{}]}}",
        exact_queries.len(),
        exact.qps_exec,
        exact.qps_sql,
        exact.p50_ms,
        json_ids(&exact.ids),
        indexed.join(",")
    );
}
