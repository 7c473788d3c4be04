//! Live tables against librdkafka's in-process mock cluster: exact counts, dead letters, reconnects, retention,
//! backpressure, committed offsets, INSERT round trips.

use crate::{Engine, Outcome, RunOptions};
use datafusion::arrow::array::{Array, Int64Array, StringArray};
use datafusion::arrow::record_batch::RecordBatch;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::time::Duration;

const COLUMNS: &str = "(ts TIMESTAMP, sensor_id TEXT NOT NULL, temperature DOUBLE)";

fn producer(bootstrap: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "1")
        .create()
        .expect("producer")
}

/// Message `i`; every 100th (i % 100 == 99) is malformed in one of four ways.
fn payload(i: usize) -> String {
    if i % 100 == 99 {
        return match (i / 100) % 4 {
            0 => r#"{"ts": "2024-01-01T00:00:00Z", "sensor_id": "s", "temperature": "hot"}"#.into(),
            1 => r#"{"ts": "2024-01-01T00:00:00Z", "sensor_id": "s""#.into(),
            2 => "garbage".into(),
            _ => r#"{"ts": "2024-01-01T00:00:00Z", "temperature": 1.0}"#.into(),
        };
    }
    format!(
        r#"{{"ts": {}, "sensor_id": "s{}", "temperature": {}}}"#,
        1_704_067_200_000i64 + i as i64 * 1000,
        i % 7,
        i as f64 / 10.0
    )
}

fn produce(p: &BaseProducer, topic: &str, range: std::ops::Range<usize>) {
    for i in range {
        let key = format!("k{}", i % 13);
        let body = payload(i);
        loop {
            match p.send(BaseRecord::to(topic).key(&key).payload(&body)) {
                Ok(()) => break,
                Err(_) => p.poll(Duration::from_millis(5)),
            }
        }
    }
    p.flush(Duration::from_secs(30)).expect("flush");
}

async fn query(engine: &Engine, sql: &str) -> Vec<RecordBatch> {
    match engine.run_cell(sql, &RunOptions::all_rows()).await {
        Ok(Some(Outcome::Rows(r))) => r.batches,
        Ok(other) => panic!("{sql}: not rows: {other:?}"),
        Err(e) => panic!("{sql}: {e}"),
    }
}

async fn int(engine: &Engine, sql: &str) -> i64 {
    let b = query(engine, sql).await;
    b[0].column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap_or_else(|| panic!("{sql}: not BIGINT"))
        .value(0)
}

async fn run(engine: &Engine, sql: &str) {
    if let Err(e) = engine.run_cell(sql, &RunOptions::all_rows()).await {
        panic!("{sql}: {e}");
    }
}

async fn error(engine: &Engine, sql: &str) -> String {
    match engine.run_cell(sql, &RunOptions::all_rows()).await {
        Ok(_) => panic!("{sql}: expected an error"),
        Err(e) => e.to_string(),
    }
}

/// Waits until the table has consumed `n` messages (rows + dead letters).
fn wait_consumed(engine: &Engine, table: &str, n: u64) {
    let t = engine.sources().get(table).expect("live table");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while t
        .counters
        .consumed
        .load(std::sync::atomic::Ordering::Relaxed)
        < n
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{table}: timed out at {:?}",
            t.counters
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_one_row_or_one_dead_letter() {
    let cluster = MockCluster::new(1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("readings", 3, 1).unwrap();
    produce(&producer(&bootstrap), "readings", 0..10_000);
    let engine = Engine::new();
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE readings {COLUMNS} STORED AS KAFKA \
             LOCATION 'kafka://{bootstrap}/readings' OPTIONS ('format' 'json', 'start' 'earliest')"
        ),
    )
    .await;
    wait_consumed(&engine, "readings", 10_000);
    assert_eq!(int(&engine, "SELECT count(*) FROM readings").await, 9_900);
    assert_eq!(
        int(
            &engine,
            "SELECT count(*) FROM (SELECT DISTINCT _partition, _offset FROM readings)"
        )
        .await,
        9_900
    );
    assert_eq!(
        int(
            &engine,
            "SELECT count(*) FROM readings WHERE ts >= TIMESTAMP '2024-01-01T00:00:00'"
        )
        .await,
        9_900
    );
    assert_eq!(
        int(&engine, "SELECT count(*) FROM sys.dead_letters").await,
        100
    );
    assert_eq!(
        int(
            &engine,
            "SELECT count(*) FROM sys.dead_letters WHERE error LIKE '%hot%'"
        )
        .await,
        25
    );
    assert_eq!(
        int(
            &engine,
            "SELECT count(*) FROM sys.dead_letters WHERE error LIKE '%sensor_id is NOT NULL%'"
        )
        .await,
        25
    );
    // the metadata columns are the broker's
    let keys = query(
        &engine,
        "SELECT DISTINCT _key FROM readings ORDER BY _key LIMIT 2",
    )
    .await;
    let k = keys[0]
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!((k.value(0), k.value(1)), ("k0", "k1"));
    let t = engine.sources().get("readings").unwrap();
    // the clean messages took the fast path (its parity with arrow-json is tested in decode.rs)
    let decoder =
        crate::stream::decode::Decoder::new(crate::stream::options::Format::Json, b',', t.schema())
            .unwrap();
    assert!(decoder.fast_path(), "{:?}", t.schema());
    assert!(
        t.wait_caught_up(Duration::from_secs(10)),
        "state {:?}",
        t.state()
    );
    let s = query(
        &engine,
        "SELECT rows, consumed, lag, errors, state, partitions FROM sys.sources WHERE table_name = 'readings'",
    )
    .await;
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&s)
        .unwrap()
        .to_string();
    assert!(
        text.contains("| 9900 | 10000    | 0   | 100    | live  | 3          |"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_loses_and_duplicates_nothing() {
    let cluster = MockCluster::new(1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("t", 2, 1).unwrap();
    let p = producer(&bootstrap);
    produce(&p, "t", 0..2_000);
    let engine = Engine::new();
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE t {COLUMNS} STORED AS KAFKA LOCATION 'kafka://{bootstrap}/t'"
        ),
    )
    .await;
    wait_consumed(&engine, "t", 2_000);
    cluster.broker_down(1).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    cluster.broker_up(1).unwrap();
    produce(&p, "t", 2_000..5_000);
    wait_consumed(&engine, "t", 5_000);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(int(&engine, "SELECT count(*) FROM t").await, 4_950);
    assert_eq!(
        int(
            &engine,
            "SELECT count(*) FROM (SELECT DISTINCT _partition, _offset FROM t)"
        )
        .await,
        4_950
    );
    assert_eq!(
        int(&engine, "SELECT count(*) FROM sys.dead_letters").await,
        50
    );
    let t = engine.sources().get("t").unwrap();
    assert_eq!(
        t.counters
            .consumed
            .load(std::sync::atomic::Ordering::Relaxed),
        5_000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_and_memory_bound_the_table() {
    let cluster = MockCluster::new(1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("t", 1, 1).unwrap();
    produce(&producer(&bootstrap), "t", 0..20_000);
    let engine = Engine::new();
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE kept {COLUMNS} STORED AS KAFKA LOCATION 'kafka://{bootstrap}/t' \
             OPTIONS ('retention' '1000 rows')"
        ),
    )
    .await;
    wait_consumed(&engine, "kept", 20_000);
    assert_eq!(int(&engine, "SELECT count(*) FROM kept").await, 1_000);
    // the newest rows: one partition, so the highest offsets
    // 1,011 offsets hold 1,000 rows: 11 of them (18999, 19099, ...) are malformed
    assert_eq!(int(&engine, "SELECT min(_offset) FROM kept").await, 18_989);
    // memory: the consumer pauses instead of growing
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE capped {COLUMNS} STORED AS KAFKA LOCATION 'kafka://{bootstrap}/t' \
             OPTIONS ('max.memory' '200KB')"
        ),
    )
    .await;
    let t = engine.sources().get("capped").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while t.state().0 != crate::stream::SourceState::Paused {
        assert!(
            std::time::Instant::now() < deadline,
            "never paused: {:?}",
            t.state()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let held = t.sizes();
    assert!(held.0 < 20_000, "{held:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(t.sizes().0, held.0, "grew while paused");
    let state = query(
        &engine,
        "SELECT state, last_error FROM sys.sources WHERE table_name = 'capped'",
    )
    .await;
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&state)
        .unwrap()
        .to_string();
    assert!(
        text.contains("paused (memory)") && text.contains("max.memory"),
        "{text}"
    );
    // DROP TABLE stops the consumer
    run(&engine, "DROP TABLE capped").await;
    assert!(t.stopped());
    assert!(engine.sources().get("capped").is_none());
    assert_eq!(int(&engine, "SELECT count(*) FROM sys.sources").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_offsets_resume_exactly_where_the_last_table_stopped() {
    let cluster = MockCluster::new(1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("t", 2, 1).unwrap();
    let p = producer(&bootstrap);
    produce(&p, "t", 0..98);
    let engine = Engine::new();
    let create = format!(
        "CREATE EXTERNAL TABLE g {COLUMNS} STORED AS KAFKA LOCATION 'kafka://{bootstrap}/t' \
         OPTIONS ('start' 'group', 'group.id' 'features')"
    );
    run(&engine, &create).await;
    wait_consumed(&engine, "g", 98);
    assert_eq!(int(&engine, "SELECT count(*) FROM g").await, 98);
    run(&engine, "DROP TABLE g").await;
    produce(&p, "t", 98..150);
    run(&engine, &create).await;
    wait_consumed(&engine, "g", 52);
    std::thread::sleep(Duration::from_millis(300));
    // exactly the 52 new messages, one of them malformed (i = 99): no re-read of the last old one
    assert_eq!(int(&engine, "SELECT count(*) FROM g").await, 51);
    let latest = format!(
        "CREATE EXTERNAL TABLE l {COLUMNS} STORED AS KAFKA LOCATION 'kafka://{bootstrap}/t' \
         OPTIONS ('start' 'latest')"
    );
    run(&engine, &latest).await;
    assert_eq!(int(&engine, "SELECT count(*) FROM l").await, 0);
    produce(&p, "t", 150..160);
    wait_consumed(&engine, "l", 10);
    assert_eq!(int(&engine, "SELECT count(*) FROM l").await, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_produces_json_messages_read_back_by_a_table() {
    let cluster = MockCluster::new(1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("predictions", 2, 1).unwrap();
    let engine = Engine::new();
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE predictions (ts TIMESTAMP, sensor_id TEXT, score DOUBLE) STORED AS KAFKA \
             LOCATION 'kafka://{bootstrap}/predictions' OPTIONS ('key.column' 'sensor_id')"
        ),
    )
    .await;
    let done = engine
        .run_cell(
            "INSERT INTO predictions SELECT to_timestamp(1704067200 + v), \
             'sensor-' || (v % 4), v / 10.0 FROM generate_series(1, 100) AS s(v)",
            &RunOptions::all_rows(),
        )
        .await
        .unwrap();
    match done {
        Some(Outcome::Done(c)) => assert_eq!(c.rows_affected, Some(100), "{}", c.message),
        other => panic!("{other:?}"),
    }
    // kafka_wait right after the INSERT waits for the table to read what it produced, even before its consumer
    // has seen a newer high watermark (the race tutorial 04 once lost).
    query(&engine, "SELECT * FROM kafka_wait('predictions')").await;
    assert_eq!(int(&engine, "SELECT count(*) FROM predictions").await, 100);
    assert_eq!(
        int(
            &engine,
            "SELECT count(*) FROM predictions WHERE _key = sensor_id"
        )
        .await,
        100
    );
    assert_eq!(
        int(&engine, "SELECT count(*) FROM predictions WHERE ts = TIMESTAMP '2024-01-01T00:00:07' AND score = 0.7").await,
        1
    );
    assert_eq!(
        int(&engine, "SELECT count(*) FROM sys.dead_letters").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistakes_are_named() {
    let cluster = MockCluster::new(1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let engine = Engine::new();
    let e = error(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE x {COLUMNS} STORED AS KAFKA LOCATION 'kafka://{bootstrap}/nope'"
        ),
    )
    .await;
    assert!(e.contains("topic 'nope' does not exist"), "{e}");
    let e = error(
        &engine,
        &format!("CREATE EXTERNAL TABLE x {COLUMNS} STORED AS KAFKA LOCATION 'kafka://{bootstrap}/t' OPTIONS ('formt' 'json')"),
    )
    .await;
    assert!(e.contains("unknown option 'formt'"), "{e}");
    let e = error(
        &engine,
        "CREATE EXTERNAL TABLE x (a INT) STORED AS KAFKA LOCATION 'kafka://h/t' OPTIONS ('format' 'raw')",
    )
    .await;
    assert!(
        e.contains("format 'raw' has the columns key and value"),
        "{e}"
    );
    assert!(engine.sources().all().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_broker_generates_rows_and_malformed_messages() {
    let engine = Engine::new();
    run(
        &engine,
        "SELECT * FROM kafka_demo('demo_sensors', 5000, 0.02, 'sensors', 1000)",
    )
    .await;
    run(
        &engine,
        "CREATE EXTERNAL TABLE demo_sensors (ts TIMESTAMP, sensor_id TEXT, site TEXT, temperature DOUBLE, humidity DOUBLE) \
         STORED AS KAFKA LOCATION 'kafka://demo/demo_sensors'",
    )
    .await;
    wait_consumed(&engine, "demo_sensors", 1000);
    assert_eq!(int(&engine, "SELECT count(*) FROM demo_sensors").await, 980);
    assert_eq!(
        int(
            &engine,
            "SELECT count(DISTINCT sensor_id) FROM demo_sensors"
        )
        .await,
        20
    );
    assert_eq!(
        int(
            &engine,
            "SELECT count(*) FROM sys.dead_letters WHERE table_name = 'demo_sensors'"
        )
        .await,
        20
    );
}

/// Waits until `sql` returns `want` (a BIGINT), or fails after 10 s with the last value.
async fn eventually(engine: &Engine, sql: &str, want: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = int(engine, sql).await;
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{sql}: {got}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_views_follow_the_stream() {
    let cluster = MockCluster::new(1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("t", 3, 1).unwrap();
    let p = producer(&bootstrap);
    let engine = Engine::new();
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE r {COLUMNS} STORED AS KAFKA LOCATION 'kafka://{bootstrap}/t' \
             OPTIONS ('retention' '500 rows')"
        ),
    )
    .await;
    // incremental aggregate over time buckets, with HAVING and ORDER BY re-run over the groups
    run(
        &engine,
        "CREATE MATERIALIZED VIEW per_sensor AS \
         SELECT sensor_id, time_bucket(INTERVAL '10 minutes', ts) AS bucket, count(*) AS n, sum(temperature) AS total, \
                avg(temperature) AS mean, min(temperature) AS lo, max(temperature) AS hi, stddev(temperature) AS sd \
         FROM r WHERE temperature >= 0 GROUP BY 1, 2 HAVING count(*) > 0 ORDER BY 1, 2",
    )
    .await;
    // an append-only map, and a recomputed view (DISTINCT)
    run(&engine, "CREATE MATERIALIZED VIEW hot AS SELECT sensor_id, temperature FROM r WHERE temperature > 100").await;
    run(
        &engine,
        "CREATE MATERIALIZED VIEW sensors AS SELECT DISTINCT sensor_id FROM r",
    )
    .await;
    produce(&p, "t", 0..3_000);
    wait_consumed(&engine, "r", 3_000);
    // retention keeps 500 raw rows; the incremental views take in all 2,970 good rows
    assert_eq!(int(&engine, "SELECT count(*) FROM r").await, 500);
    eventually(&engine, "SELECT sum(n)::BIGINT FROM per_sensor", 2_970).await;
    produce(&p, "t", 3_000..6_000);
    eventually(&engine, "SELECT sum(n)::BIGINT FROM per_sensor", 5_940).await;
    // the same numbers as a batch query over all the messages would give
    let mut expect_hot = 0;
    let mut count = std::collections::BTreeMap::<String, (i64, f64, f64, f64)>::new();
    for i in 0..6_000usize {
        if i % 100 == 99 {
            continue;
        }
        let t = i as f64 / 10.0;
        if t > 100.0 {
            expect_hot += 1;
        }
        let e = count
            .entry(format!("s{}", i % 7))
            .or_insert((0, 0.0, f64::MAX, f64::MIN));
        e.0 += 1;
        e.1 += t;
        e.2 = e.2.min(t);
        e.3 = e.3.max(t);
    }
    eventually(&engine, "SELECT count(*) FROM hot", expect_hot).await;
    let b = query(
        &engine,
        "SELECT sensor_id, sum(n)::BIGINT, sum(total), min(lo), max(hi) FROM per_sensor GROUP BY 1 ORDER BY 1",
    )
    .await;
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&b)
        .unwrap()
        .to_string();
    for (sensor, (n, total, lo, hi)) in &count {
        let line = format!("| {sensor} ");
        let row = text
            .lines()
            .find(|l| l.starts_with(&line))
            .unwrap_or_else(|| panic!("{sensor}: {text}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells[2].parse::<i64>().unwrap(), *n, "{row}");
        assert!(
            (cells[3].parse::<f64>().unwrap() - total).abs() < 1e-6,
            "{row}"
        );
        assert_eq!(cells[4].parse::<f64>().unwrap(), *lo, "{row}");
        assert_eq!(cells[5].parse::<f64>().unwrap(), *hi, "{row}");
    }
    // avg and stddev per group agree with a direct computation over the group's values
    let b = query(
        &engine,
        "SELECT count(*) FROM per_sensor WHERE abs(mean - total / n) > 1e-9 OR sd IS NULL AND n > 1",
    )
    .await;
    let bad = b[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(bad, 0);
    assert_eq!(int(&engine, "SELECT count(*) FROM sensors").await, 7);
    let v = query(
        &engine,
        "SELECT name, incremental, continuous FROM sys.views ORDER BY name",
    )
    .await;
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&v)
        .unwrap()
        .to_string();
    assert!(
        text.contains("| hot        | true        | true       |"),
        "{text}"
    );
    assert!(
        text.contains("| per_sensor | true        | true       |"),
        "{text}"
    );
    assert!(
        text.contains("| sensors    | false       | true       |"),
        "{text}"
    );
    let _ = expect_hot;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_view_update_is_tried_again() {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let cluster = MockCluster::new(1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("t", 2, 1).unwrap();
    let p = producer(&bootstrap);
    let engine = Engine::new();
    // flaky(x) is x, but its next `fail` calls fail
    let fail = Arc::new(AtomicUsize::new(0));
    let failing = fail.clone();
    let flaky = create_udf(
        "flaky",
        vec![DataType::Float64],
        DataType::Float64,
        Volatility::Volatile,
        Arc::new(move |args: &[ColumnarValue]| {
            let left = failing.load(Ordering::SeqCst);
            if left > 0 {
                failing.store(left - 1, Ordering::SeqCst);
                return Err(datafusion::common::DataFusionError::Execution(
                    "flaky failed".into(),
                ));
            }
            Ok(args[0].clone())
        }),
    );
    engine.session().register_udf(flaky);
    run(
        &engine,
        &format!(
            "CREATE EXTERNAL TABLE r {COLUMNS} STORED AS KAFKA LOCATION 'kafka://{bootstrap}/t'"
        ),
    )
    .await;
    run(
        &engine,
        "CREATE MATERIALIZED VIEW v AS SELECT sensor_id, count(*) AS n, sum(flaky(temperature)) AS s FROM r GROUP BY 1",
    )
    .await;
    // two failures, then success: nothing is lost
    fail.store(2, Ordering::SeqCst);
    produce(&p, "t", 0..1_000);
    wait_consumed(&engine, "r", 1_000);
    eventually(&engine, "SELECT sum(n)::BIGINT FROM v", 990).await;
    assert_eq!(fail.load(Ordering::SeqCst), 0);
    // failing for good: after three tries the rows are skipped, and the view says how many
    fail.store(usize::MAX, Ordering::SeqCst);
    produce(&p, "t", 1_000..2_000);
    wait_consumed(&engine, "r", 2_000);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let b = query(
            &engine,
            "SELECT coalesce(last_error, '') FROM sys.views WHERE name = 'v'",
        )
        .await;
        let e = b[0]
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .value(0)
            .to_string();
        if e.contains("source rows were skipped after 3 failed updates: ") {
            assert!(e.contains("flaky failed"), "{e}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "last_error: {e:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // and the view goes on with later rows
    fail.store(0, Ordering::SeqCst);
    produce(&p, "t", 2_000..3_000);
    eventually(&engine, "SELECT sum(n)::BIGINT FROM v", 1_980).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hnsw_index_on_a_live_table_takes_rows_in_as_they_arrive() {
    let engine = Engine::new();
    let ids = |b: &[RecordBatch]| -> Vec<i64> {
        b.iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect()
    };
    query(
        &engine,
        "SELECT * FROM kafka_demo('idx_items', 20000, 0, 'embeddings', 3000)",
    )
    .await;
    run(
        &engine,
        "CREATE EXTERNAL TABLE items (id BIGINT, ts TIMESTAMP, item TEXT, category TEXT, embedding FLOAT_VECTOR(8)) \
         STORED AS KAFKA LOCATION 'kafka://demo/idx_items' OPTIONS ('retention' '5000 rows')",
    )
    .await;
    query(&engine, "SELECT * FROM kafka_wait('items')").await;
    assert_eq!(int(&engine, "SELECT count(*) FROM items").await, 3000);
    run(
        &engine,
        "CREATE INDEX items_emb ON items USING hnsw (embedding)",
    )
    .await;
    let stat = "SELECT rows_indexed FROM sys.indexes WHERE name = 'items_emb'";
    assert_eq!(int(&engine, stat).await, 3000);
    let knn = "SELECT id FROM items WHERE KNN_MATCH(embedding, [0.1, 0.0, 0.9, 0.2, 0.0, 0.0, 0.3, 0.0], 10)";
    let plan = query(&engine, &format!("EXPLAIN {knn}")).await;
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&plan)
        .unwrap()
        .to_string();
    assert!(text.contains("hnsw index items_emb"), "{text}");
    // the graph's answer against the exact one
    let approx = ids(&query(&engine, knn).await);
    assert_eq!(approx.len(), 10);
    run(&engine, "DROP INDEX items_emb").await;
    let exact = ids(&query(&engine, knn).await);
    let common = approx.iter().filter(|i| exact.contains(i)).count();
    assert!(common >= 8, "hnsw {approx:?} exact {exact:?}");

    // rows arriving after CREATE INDEX go into new segments without a search asking for them; retention evicts
    // the first 3,000 rows, and the segment over them is dropped
    run(
        &engine,
        "CREATE INDEX items_emb ON items USING hnsw (embedding)",
    )
    .await;
    query(
        &engine,
        "SELECT * FROM kafka_demo('idx_items', 20000, 0, 'embeddings', 12000)",
    )
    .await;
    query(&engine, "SELECT * FROM kafka_wait('items')").await;
    assert_eq!(int(&engine, "SELECT count(*) FROM items").await, 5000);
    // no search has run since: the appends alone were built into segments, until fewer than 4,096 rows wait
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let stats =
        "SELECT rows_indexed, rows_pending, building FROM sys.indexes WHERE name = 'items_emb'";
    loop {
        let b = query(&engine, stats).await;
        let indexed = b[0]
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .value(0);
        let pending = b[0]
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .value(0);
        let building = b[0]
            .column(2)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::BooleanArray>()
            .unwrap()
            .value(0);
        if !building && pending < 4096 {
            // every row held is covered, and the segment over the evicted first 3,000 rows is gone
            assert!(indexed + pending >= 5000, "{indexed} + {pending}");
            assert!(indexed <= 12_000, "{indexed} rows indexed");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "indexed {indexed}, pending {pending}, building {building}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // the search answers from the new segments and the tail
    let found = ids(&query(&engine, knn).await);
    assert_eq!(found.len(), 10);
    // DROP TABLE stops the consumer under the index and takes the index with it
    run(&engine, "DROP TABLE items").await;
    assert_eq!(
        int(
            &engine,
            "SELECT count(*) FROM sys.sources WHERE table_name = 'items'"
        )
        .await,
        0
    );
    assert_eq!(
        int(
            &engine,
            "SELECT count(*) FROM sys.indexes WHERE name = 'items_emb'"
        )
        .await,
        0
    );
}
