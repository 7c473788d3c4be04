//! Kafka ingest benchmark (issue 6): librdkafka's raw consume rate against rows/s into a queryable live table,
//! produce→query freshness, and memory under sustained ingest with retention. Same broker, same run.
//!
//! cargo run --release --example kafka_bench -- [--messages N] [--sustained M] [--bootstrap host:port]
//! Without --bootstrap an in-process mock cluster is used. Prints one JSON object.

use kestrel_engine::{Engine, RunOptions};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The kernel's allocator, so that the live table (and the raw consumer beside it) run as they do in the kernel.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROUNDS: usize = 7;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// A ~100-byte JSON reading.
fn payload(i: u64) -> String {
    format!(
        r#"{{"ts": {}, "sensor_id": "sensor-{:04}", "temperature": {:.3}, "humidity": {:.2}, "seq": {i}}}"#,
        1_767_225_600_000u64 + i,
        i % 1000,
        15.0 + (i % 997) as f64 * 0.01,
        30.0 + (i % 89) as f64 * 0.1
    )
}

fn producer(bootstrap: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer")
}

fn produce(p: &BaseProducer, topic: &str, from: u64, to: u64) {
    for i in from..to {
        let body = payload(i);
        let key = format!("sensor-{:04}", i % 1000);
        loop {
            match p.send(BaseRecord::to(topic).key(&key).payload(&body)) {
                Ok(()) => break,
                Err(_) => p.poll(Duration::from_millis(1)),
            }
        }
    }
    p.flush(Duration::from_secs(120)).expect("flush");
}

/// A plain consumer reading everything from the start, touching each payload (no decoding).
fn raw_consume(bootstrap: &str, topic: &str, partitions: i32, n: u64) -> Duration {
    // the same client settings and start protocol as a live table (watermarks, then explicit offsets)
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "raw-bench")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "50")
        .set("queued.max.messages.kbytes", "65536")
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .expect("consumer");
    let started = Instant::now();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let (lo, _) = c
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        tpl.add_partition_offset(topic, p, Offset::Offset(lo))
            .expect("tpl");
    }
    c.assign(&tpl).expect("assign");
    let mut seen = 0u64;
    let mut bytes = 0usize;
    let mut last_error = None;
    while seen < n {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                bytes += m.payload().map_or(0, |p| p.len());
                seen += 1;
            }
            Some(Err(e)) => last_error = Some(e),
            None => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "raw consumer read only {seen} of {n} messages in 120 s (last error: {last_error:?})"
        );
    }
    let took = started.elapsed();
    assert!(bytes > 0);
    took
}

/// CPU seconds this process has used (user + system, from /proc at 100 Hz).
fn cpu_s() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // fields after the parenthesised command name; utime and stime are the 12th and 13th of them
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
        })
        .map_or(0.0, |ticks| ticks / 100.0)
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

const COLUMNS: &str =
    "(ts TIMESTAMP, sensor_id TEXT, temperature DOUBLE, humidity DOUBLE, seq BIGINT)";

/// Decoding alone (no broker): µs a message to copy a micro-batch of 32,768 messages and to decode it, with the
/// fast path for flat JSON objects and with arrow-json alone.
fn decode_only() {
    use kestrel_engine::stream::decode::{Decoder, Messages};
    use kestrel_engine::stream::options::Format;
    let schema = std::sync::Arc::new(datafusion::arrow::datatypes::Schema::new(
        [
            "ts",
            "sensor_id",
            "temperature",
            "humidity",
            "seq",
            "_partition",
            "_offset",
            "_timestamp",
            "_key",
        ]
        .iter()
        .map(|c| {
            use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
            let t = match *c {
                "ts" => DataType::Timestamp(TimeUnit::Nanosecond, None),
                // TEXT columns are Utf8View in DataFusion 55, as in a live table
                "sensor_id" => DataType::Utf8View,
                "_key" => DataType::Utf8,
                "temperature" | "humidity" => DataType::Float64,
                "_partition" => DataType::Int32,
                "_timestamp" => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                _ => DataType::Int64,
            };
            Field::new(*c, t, true)
        })
        .collect::<Vec<_>>(),
    ));
    let bodies: Vec<(String, String)> = (0..32_768u64)
        .map(|i| (format!("sensor-{:04}", i % 1000), payload(i)))
        .collect();
    let rounds = 30;
    let mut m = Messages::default();
    let t = Instant::now();
    for _ in 0..rounds {
        m.clear();
        for (i, (k, v)) in bodies.iter().enumerate() {
            m.push(0, i as i64, Some(1), Some(k.as_bytes()), Some(v.as_bytes()));
        }
    }
    let push = t.elapsed();
    let per = |d: Duration| d.as_secs_f64() * 1e6 / (rounds * bodies.len()) as f64;
    let timed = |mut d: Decoder| {
        let t = Instant::now();
        for _ in 0..rounds {
            let out = d.decode(&m);
            assert_eq!(out.batch.map_or(0, |b| b.num_rows()), bodies.len());
        }
        per(t.elapsed())
    };
    let fast = timed(Decoder::new(Format::Json, b',', schema.clone()).expect("decoder"));
    let arrow_json = timed(
        Decoder::new(Format::Json, b',', schema)
            .expect("decoder")
            .without_fast_path(),
    );
    println!(
        "{}",
        serde_json::json!({"push_us": per(push), "decode_us": fast, "decode_arrow_json_us": arrow_json})
    );
}

fn main() {
    if std::env::args().any(|a| a == "--decode-only") {
        return decode_only();
    }
    let n: u64 = arg("--messages")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let cluster;
    // an external broker's topics were created with 3 partitions; librdkafka's mock cluster keeps at most 5 MB a
    // partition (older segments are deleted), so its ingest topic gets enough partitions to hold all N
    let mut partitions = 3;
    let bootstrap = match arg("--bootstrap") {
        Some(b) => b,
        None => {
            cluster = MockCluster::new(1).expect("mock cluster");
            partitions = (n.div_ceil(30_000) as i32).max(3);
            cluster
                .create_topic("ingest", partitions, 1)
                .expect("topic");
            for t in ["fresh", "sustained"] {
                cluster.create_topic(t, 3, 1).expect("topic");
            }
            cluster.bootstrap_servers()
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let p = producer(&bootstrap);
    let t = Instant::now();
    produce(&p, "ingest", 0, n);
    let produce_s = t.elapsed().as_secs_f64();
    // What the broker holds: librdkafka's mock cluster keeps at most 100,000 messages or 5 MB a partition and
    // deletes older segments, so both readers read what is there (high - low watermark), not what was sent.
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("probe");
    let held: u64 = (0..partitions)
        .map(|p| {
            let (lo, hi) = probe
                .fetch_watermarks("ingest", p, Duration::from_secs(10))
                .expect("watermarks");
            (hi - lo) as u64
        })
        .sum();
    if held != n {
        eprintln!("the broker holds {held} of the {n} messages produced; reading {held}");
    }
    let sent = n;
    let n = held;

    // 1. raw consume vs live-table ingest (ROUNDS each, alternating; best and median)
    let mut raw = Vec::new();
    let mut ingest = Vec::new();
    let (mut raw_cpu, mut ingest_cpu, mut create) = (Vec::new(), Vec::new(), Vec::new());
    eprintln!("produced {n} in {produce_s:.1} s");
    for round in 0..ROUNDS {
        let cpu = cpu_s();
        raw.push(raw_consume(&bootstrap, "ingest", partitions, n).as_secs_f64());
        raw_cpu.push(cpu_s() - cpu);
        eprintln!("raw round {round}: {:.2} s", raw[round]);
        let engine = Engine::new();
        let started = Instant::now();
        let cpu = cpu_s();
        rt.block_on(engine.run_cell(
            &format!("CREATE EXTERNAL TABLE t{round} {COLUMNS} STORED AS KAFKA LOCATION 'kafka://{bootstrap}/ingest'"),
            &RunOptions::all_rows(),
        ))
        .expect("create");
        create.push(started.elapsed().as_secs_f64());
        let live = engine.sources().get(&format!("t{round}")).expect("live");
        let got = live.wait_for_rows(n, Duration::from_secs(300));
        ingest.push(started.elapsed().as_secs_f64());
        ingest_cpu.push(cpu_s() - cpu);
        eprintln!(
            "ingest round {round}: {:.2} s ({got} rows, state {:?})",
            ingest[round],
            live.state()
        );
        assert_eq!(live.sizes().0 as u64, n, "rows");
    }
    let best = |v: &[f64]| v.iter().cloned().fold(f64::MAX, f64::min);
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let raw_rate = n as f64 / best(&raw);
    let ingest_rate = n as f64 / best(&ingest);
    let raw_rate_median = n as f64 / median(&raw);
    let ingest_rate_median = n as f64 / median(&ingest);

    // 2. freshness: produce one message, time until it is a queryable row
    let engine = Engine::new();
    rt.block_on(engine.run_cell(
        &format!("CREATE EXTERNAL TABLE fresh {COLUMNS} STORED AS KAFKA LOCATION 'kafka://{bootstrap}/fresh'"),
        &RunOptions::all_rows(),
    ))
    .expect("create fresh");
    let live = engine.sources().get("fresh").expect("live");
    let quick: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    let mut lat = Vec::new();
    for i in 0..500u64 {
        let body = payload(i);
        let sent = Instant::now();
        quick
            .send(BaseRecord::to("fresh").key("k").payload(&body))
            .map_err(|(e, _)| e)
            .expect("send");
        quick.poll(Duration::ZERO);
        let got = live.wait_for_rows(i + 1, Duration::from_secs(10));
        assert!(got > i, "message {i} never arrived");
        lat.push(sent.elapsed().as_secs_f64() * 1000.0);
        quick.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |q: f64| lat[((lat.len() as f64 - 1.0) * q).round() as usize];
    // the same rows are visible to SQL
    let visible = rt
        .block_on(engine.run_cell("SELECT count(*) FROM fresh", &RunOptions::all_rows()))
        .is_ok();

    // 3. memory under sustained ingest with retention
    let engine = Engine::new();
    rt.block_on(engine.run_cell(
        &format!(
            "CREATE EXTERNAL TABLE sustained {COLUMNS} STORED AS KAFKA LOCATION 'kafka://{bootstrap}/sustained' \
             OPTIONS ('retention' '200000 rows')"
        ),
        &RunOptions::all_rows(),
    ))
    .expect("create sustained");
    let live = engine.sources().get("sustained").expect("live");
    let total: u64 = arg("--sustained")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let feeder = {
        let bootstrap = bootstrap.clone();
        std::thread::spawn(move || {
            let p = producer(&bootstrap);
            let step = 100_000;
            let mut i = 0;
            while i < total {
                produce(&p, "sustained", i, (i + step).min(total));
                i += step;
            }
        })
    };
    eprintln!(
        "freshness p50 {:.1} ms; sustained ingest of {total} messages",
        pct(0.5)
    );
    let mut samples = Vec::new();
    let started = Instant::now();
    // until everything produced is consumed (or, on a broker that deleted old segments, the table has caught
    // up with what is left after the feeder finished)
    while live.counters.consumed.load(Ordering::Relaxed) < total
        && !(feeder.is_finished() && live.counters.lag.load(Ordering::Relaxed) == 0)
        && started.elapsed() < Duration::from_secs(600)
    {
        std::thread::sleep(Duration::from_millis(250));
        samples.push((
            live.counters.consumed.load(Ordering::Relaxed),
            live.sizes().0,
            live.sizes().1,
            rss_bytes(),
        ));
    }
    let _ = feeder.join();
    let half = &samples[samples.len() / 2..];
    let rss_min = half.iter().map(|s| s.3).min().unwrap_or(0);
    let rss_max = half.iter().map(|s| s.3).max().unwrap_or(0);
    let table_max = samples.iter().map(|s| s.2).max().unwrap_or(0);
    let rows_max = samples.iter().map(|s| s.1).max().unwrap_or(0);
    println!(
        "{}",
        serde_json::json!({
            "messages_produced": sent,
            "messages": n,
            "bytes_per_message": payload(n / 2).len(),
            "broker": if arg("--bootstrap").is_some() { "external" } else { "librdkafka mock cluster" },
            "produce_s": produce_s,
            "raw_consume_s": raw,
            "raw_cpu_s": raw_cpu,
            "ingest_cpu_s": ingest_cpu,
            "ingest_create_s": create,
            "ingest_s": ingest,
            "raw_rate": raw_rate,
            "ingest_rate": ingest_rate,
            "ingest_vs_raw": ingest_rate / raw_rate,
            "raw_rate_median": raw_rate_median,
            "ingest_rate_median": ingest_rate_median,
            "ingest_vs_raw_median": ingest_rate_median / raw_rate_median,
            "partitions": partitions,
            "fresh_p50_ms": pct(0.5),
            "fresh_p99_ms": pct(0.99),
            "fresh_max_ms": pct(1.0),
            "fresh_visible_to_sql": visible,
            "sustained_messages": total,
            "sustained_consumed": live.counters.consumed.load(Ordering::Relaxed),
            "sustained_rows_held_max": rows_max,
            "sustained_table_bytes_max": table_max,
            "sustained_rss_second_half_min": rss_min,
            "sustained_rss_second_half_max": rss_max,
            "sustained_samples": samples.len(),
        })
    );
}
