//! SQL timing driver for bench/time_windows.py: runs a setup file once, then each named query `--warmup` times
//! untimed and `--repeat` times timed (planning and execution together, results drained), and prints one JSON
//! line per query: {"name", "columns", "rows": [[value, ...]], "times_ms", "target_partitions"} or
//! {"name", "error"}.
//!
//! cargo run --release -p kestrel-engine --example sql_bench -- SETUP.sql QUERIES.json [--repeat 5] [--warmup 1]
//! QUERIES.json is a list of [name, sql] pairs.

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use kestrel_engine::{Engine, Outcome, RunOptions};
use serde_json::{json, Value};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut positional = Vec::new();
    let (mut repeat, mut warmup) = (5usize, 1usize);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--repeat" => repeat = it.next().ok_or("--repeat needs a value")?.parse()?,
            "--warmup" => warmup = it.next().ok_or("--warmup needs a value")?.parse()?,
            _ => positional.push(a),
        }
    }
    let [setup, queries] = positional.as_slice() else {
        return Err("usage: sql_bench SETUP.sql QUERIES.json [--repeat N] [--warmup W]".into());
    };
    let setup = std::fs::read_to_string(setup)?;
    let queries: Vec<(String, String)> = serde_json::from_str(&std::fs::read_to_string(queries)?)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let engine = Engine::new();
        if let Ok(n) = std::env::var("DATAFUSION_EXECUTION_TARGET_PARTITIONS") {
            let set = format!("SET datafusion.execution.target_partitions = {n}");
            engine.run_cell(&set, &RunOptions::all_rows()).await?;
        }
        let partitions = engine.session().state().config().target_partitions();
        let started = Instant::now();
        engine.run_cell(&setup, &RunOptions::all_rows()).await?;
        eprintln!("setup: {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
        for (name, sql) in queries {
            match time_query(&engine, &sql, warmup, repeat).await {
                Ok((times, columns, rows)) => println!(
                    "{}",
                    json!({"name": name, "columns": columns, "rows": rows, "times_ms": times,
                           "target_partitions": partitions})
                ),
                Err(e) => println!("{}", json!({"name": name, "error": e.to_string()})),
            }
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}

/// Times one query; returns the timed runs, the column names and the last run's rows (JSON arrays).
async fn time_query(
    engine: &Engine,
    sql: &str,
    warmup: usize,
    repeat: usize,
) -> Result<(Vec<f64>, Vec<String>, Vec<Value>), Box<dyn std::error::Error>> {
    let mut times = Vec::new();
    let mut rows = Vec::new();
    let mut columns = Vec::new();
    for i in 0..warmup + repeat {
        let t = Instant::now();
        let outcome = engine.run_cell(sql, &RunOptions::all_rows()).await?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if i >= warmup {
            times.push(ms);
        }
        if let Some(Outcome::Rows(r)) = outcome {
            columns = r.schema.fields().iter().map(|f| f.name().clone()).collect();
            rows = to_json(&r.batches)?;
        }
    }
    Ok((times, columns, rows))
}

fn to_json(batches: &[RecordBatch]) -> Result<Vec<Value>, Box<dyn std::error::Error>> {
    let options = FormatOptions::default();
    let mut out = Vec::new();
    for b in batches {
        let schema = b.schema();
        let formatters = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..b.num_rows() {
            let mut obj = Vec::new();
            for (i, f) in formatters.iter().enumerate() {
                let field = schema.field(i);
                let v = if b.column(i).is_null(row) {
                    Value::Null
                } else {
                    let text = f.value(row).to_string();
                    if field.data_type().is_numeric() {
                        text.parse::<f64>()
                            .map(|x| json!(x))
                            .unwrap_or(Value::String(text))
                    } else {
                        Value::String(text)
                    }
                };
                obj.push(v);
            }
            out.push(Value::Array(obj));
        }
    }
    Ok(out)
}
