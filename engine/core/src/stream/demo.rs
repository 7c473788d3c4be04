//! The built-in demo: librdkafka's in-process mock cluster (a real Kafka protocol endpoint on loopback) and
//! synthetic generators, so a tutorial streams with no Kafka installed.
//!
//! ```sql
//! SELECT * FROM kafka_demo('readings', 500, 0.01);       -- 500 sensor readings/s, 1% malformed, until stopped
//! SELECT * FROM kafka_demo('items', 200, 0, 'embeddings', 5000);  -- 5,000 embedding rows, then stop
//! SELECT * FROM kafka_demo('readings', 0);               -- stop the generator
//! CREATE EXTERNAL TABLE readings (...) STORED AS KAFKA LOCATION 'kafka://demo/readings';
//! ```
//!
//! The mock cluster is not Send: one thread owns it and the generators' producer, driven by commands.

use super::sink::{send, Deliveries};
use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl};
use datafusion::common::{plan_err, DataFusionError, Result, ScalarValue};
use datafusion::datasource::{MemTable, TableProvider};
use datafusion::logical_expr::Expr;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, Producer};
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// Partitions of a demo topic.
pub const PARTITIONS: i32 = 3;

/// What a generator produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `{"ts", "sensor_id", "site", "temperature", "humidity"}` for 20 sensors, keyed by sensor.
    Sensors,
    /// `{"id", "ts", "item", "category", "embedding": [8 floats]}`, clustered by category.
    Embeddings,
}

impl Kind {
    fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "sensors" | "readings" => Some(Kind::Sensors),
            "embeddings" | "items" => Some(Kind::Embeddings),
            _ => None,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Kind::Sensors => "sensors",
            Kind::Embeddings => "embeddings",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Generator {
    pub topic: String,
    pub kind: Kind,
    pub rate: f64,
    pub malformed: f64,
    pub total: Option<u64>,
}

/// Shared progress of a generator (read by `kafka_demo`'s result).
#[derive(Debug, Clone, Default)]
pub struct GeneratorStatus {
    pub produced: u64,
    pub malformed: u64,
    pub running: bool,
}

enum Command {
    Topic(String, mpsc::Sender<Result<(), String>>),
    Generate(Generator),
    Stop(String),
}

pub struct DemoBroker {
    pub bootstrap: String,
    commands: Mutex<mpsc::Sender<Command>>,
    status: Arc<Mutex<BTreeMap<String, GeneratorStatus>>>,
}

static BROKER: OnceLock<std::result::Result<DemoBroker, String>> = OnceLock::new();

/// The process's demo broker, started on first use.
pub fn broker() -> std::result::Result<&'static DemoBroker, String> {
    BROKER
        .get_or_init(DemoBroker::start)
        .as_ref()
        .map_err(|e| e.clone())
}

impl DemoBroker {
    fn start() -> std::result::Result<Self, String> {
        let (tx, rx) = mpsc::channel::<Command>();
        let (ready_tx, ready_rx) = mpsc::channel::<std::result::Result<String, String>>();
        let status: Arc<Mutex<BTreeMap<String, GeneratorStatus>>> = Arc::default();
        let st = status.clone();
        std::thread::Builder::new()
            .name("kafka-demo".into())
            .spawn(move || run(rx, ready_tx, st))
            .map_err(|e| format!("starting the demo broker: {e}"))?;
        let bootstrap = ready_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "the demo broker did not start within 10 s".to_string())??;
        Ok(Self {
            bootstrap,
            commands: Mutex::new(tx),
            status,
        })
    }

    fn send(&self, c: Command) -> std::result::Result<(), String> {
        self.commands
            .lock()
            .map_err(|_| "demo broker lock poisoned".to_string())?
            .send(c)
            .map_err(|_| "the demo broker has stopped".to_string())
    }

    /// Creates the topic (with [`PARTITIONS`] partitions) if it does not exist.
    pub fn ensure_topic(&self, topic: &str) -> std::result::Result<(), String> {
        let (tx, rx) = mpsc::channel();
        self.send(Command::Topic(topic.to_string(), tx))?;
        rx.recv_timeout(Duration::from_secs(10))
            .map_err(|_| "the demo broker did not answer".to_string())?
    }

    pub fn generate(&self, g: Generator) -> std::result::Result<(), String> {
        self.ensure_topic(&g.topic)?;
        if let Ok(mut s) = self.status.lock() {
            s.insert(
                g.topic.clone(),
                GeneratorStatus {
                    running: true,
                    ..Default::default()
                },
            );
        }
        self.send(Command::Generate(g))
    }

    pub fn stop(&self, topic: &str) -> std::result::Result<(), String> {
        self.send(Command::Stop(topic.to_string()))
    }

    pub fn status(&self, topic: &str) -> GeneratorStatus {
        self.status
            .lock()
            .ok()
            .and_then(|s| s.get(topic).cloned())
            .unwrap_or_default()
    }
}

struct Running {
    spec: Generator,
    started: Instant,
    produced: u64,
    malformed: u64,
}

fn run(
    rx: mpsc::Receiver<Command>,
    ready: mpsc::Sender<std::result::Result<String, String>>,
    status: Arc<Mutex<BTreeMap<String, GeneratorStatus>>>,
) {
    let cluster = match MockCluster::new(1) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(format!("starting librdkafka's mock cluster: {e}")));
            return;
        }
    };
    let bootstrap = cluster.bootstrap_servers();
    let producer: BaseProducer<Deliveries> = match ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .set("log_level", "3")
        .create_with_context(Deliveries::default())
    {
        Ok(p) => p,
        Err(e) => {
            let _ = ready.send(Err(format!("creating the demo producer: {e}")));
            return;
        }
    };
    let _ = ready.send(Ok(bootstrap));
    let mut topics: Vec<String> = Vec::new();
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    loop {
        let wait = if running.is_empty() {
            Duration::from_millis(200)
        } else {
            Duration::from_millis(5)
        };
        match rx.recv_timeout(wait) {
            Ok(Command::Topic(t, reply)) => {
                let r = if topics.contains(&t) {
                    Ok(())
                } else {
                    cluster
                        .create_topic(&t, PARTITIONS, 1)
                        .map(|_| topics.push(t.clone()))
                        .map_err(|e| format!("creating demo topic {t}: {e}"))
                };
                let _ = reply.send(r);
            }
            Ok(Command::Generate(g)) => {
                running.insert(
                    g.topic.clone(),
                    Running {
                        spec: g,
                        started: Instant::now(),
                        produced: 0,
                        malformed: 0,
                    },
                );
            }
            Ok(Command::Stop(t)) => {
                running.remove(&t);
                if let Ok(mut s) = status.lock() {
                    if let Some(g) = s.get_mut(&t) {
                        g.running = false;
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let mut finished = Vec::new();
        for (topic, g) in running.iter_mut() {
            let due = (g.started.elapsed().as_secs_f64() * g.spec.rate) as u64;
            let due = g.spec.total.map_or(due, |t| due.min(t));
            let mut n = 0;
            while g.produced < due && n < 50_000 {
                let (key, payload, bad) = message(&g.spec, g.produced);
                if send(&producer, topic, Some(key.as_bytes()), payload.as_bytes()).is_err() {
                    break;
                }
                g.produced += 1;
                g.malformed += bad as u64;
                n += 1;
            }
            // finished once every message is on the broker, not merely queued in the producer
            let done =
                g.spec.total.is_some_and(|t| g.produced >= t) && producer.in_flight_count() == 0;
            if let Ok(mut s) = status.lock() {
                let e = s.entry(topic.clone()).or_default();
                e.produced = g.produced;
                e.malformed = g.malformed;
                e.running = !done;
            }
            if done {
                finished.push(topic.clone());
            }
        }
        for t in finished {
            running.remove(&t);
        }
        producer.poll(Duration::ZERO);
    }
    let _ = producer.flush(Duration::from_secs(5));
}

/// A deterministic pseudo-random number in [0, 1) for (sequence, salt).
fn noise(seq: u64, salt: u64) -> f64 {
    let mut x = seq
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(salt.wrapping_mul(0xD1B5_4A32_D192_ED03));
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// The `seq`-th message of a generator: (key, payload, malformed?). Every round(1/malformed)-th message is
/// malformed, cycling through four kinds of damage.
fn message(g: &Generator, seq: u64) -> (String, String, bool) {
    let now = chrono::DateTime::<chrono::Utc>::from(SystemTime::now())
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let every = if g.malformed > 0.0 {
        (1.0 / g.malformed).round().max(1.0) as u64
    } else {
        0
    };
    let bad = every > 0 && seq % every == every - 1;
    match g.kind {
        Kind::Sensors => {
            let sensor = seq % 20;
            let id = format!("s-{sensor:02}");
            let site = ["north", "south", "east", "west"][(sensor % 4) as usize];
            let temperature = 18.0
                + sensor as f64 * 0.25
                + 3.0 * ((seq / 20) as f64 / 50.0).sin()
                + noise(seq, 1) * 0.8;
            let humidity = 35.0 + 10.0 * noise(seq, 2);
            if bad {
                let payload = match (seq / every) % 4 {
                    0 => format!(r#"{{"ts": "{now}", "sensor_id": "{id}", "temperature": "hot"}}"#),
                    1 => format!(r#"{{"ts": "{now}", "sensor_id": "{id}", "temperature": 21.5"#),
                    2 => "sensor offline".to_string(),
                    _ => format!(
                        r#"{{"ts": "yesterday", "sensor_id": "{id}", "temperature": 20.0}}"#
                    ),
                };
                return (id, payload, true);
            }
            let payload = format!(
                r#"{{"ts": "{now}", "sensor_id": "{id}", "site": "{site}", "temperature": {temperature:.3}, "humidity": {humidity:.2}}}"#
            );
            (id, payload, false)
        }
        Kind::Embeddings => {
            let category = seq % 5;
            let item = format!("item-{seq}");
            if bad {
                let payload = match (seq / every) % 2 {
                    0 => format!(
                        r#"{{"id": {seq}, "ts": "{now}", "item": "{item}", "embedding": "oops"}}"#
                    ),
                    _ => format!(
                        r#"{{"id": {seq}, "ts": "{now}", "item": "{item}", "embedding": [1, 2"#
                    ),
                };
                return (item, payload, true);
            }
            let v: Vec<String> = (0..8)
                .map(|d| {
                    let center = if d == category { 1.0 } else { 0.0 };
                    format!("{:.4}", center + (noise(seq, 10 + d) - 0.5) * 0.3)
                })
                .collect();
            let payload = format!(
                r#"{{"id": {seq}, "ts": "{now}", "item": "{item}", "category": "c{category}", "embedding": [{}]}}"#,
                v.join(", ")
            );
            (item, payload, false)
        }
    }
}

/// `kafka_demo(topic [, rows_per_s [, malformed_share [, kind [, total_rows]]]])`.
#[derive(Debug)]
pub struct DemoFunction;

fn literal(e: &Expr) -> Option<&ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v),
        Expr::Cast(c) => literal(&c.expr),
        Expr::TryCast(c) => literal(&c.expr),
        _ => None,
    }
}

impl TableFunctionImpl for DemoFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let usage = "kafka_demo('topic' [, rows_per_s [, malformed_share [, 'sensors'|'embeddings' [, total_rows]]]])";
        let exprs = args.exprs();
        if exprs.is_empty() || exprs.len() > 5 {
            return plan_err!("{usage}");
        }
        let mut vals = Vec::new();
        for (i, e) in exprs.iter().enumerate() {
            match literal(e) {
                Some(v) => vals.push(v.clone()),
                None => {
                    return plan_err!("kafka_demo: argument {} must be a constant: {usage}", i + 1)
                }
            }
        }
        let text = |v: &ScalarValue| match v {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)) => Some(s.clone()),
            _ => None,
        };
        let number = |v: &ScalarValue| -> Option<f64> {
            v.cast_to(&DataType::Float64).ok().and_then(|c| match c {
                ScalarValue::Float64(x) => x,
                _ => None,
            })
        };
        let Some(topic) = text(&vals[0]) else {
            return plan_err!("kafka_demo: the topic must be text: {usage}");
        };
        let rate = match vals.get(1) {
            None => 100.0,
            Some(v) => match number(v) {
                Some(r) if (0.0..=1e7).contains(&r) => r,
                _ => {
                    return plan_err!(
                        "kafka_demo: rows_per_s must be a number from 0 to 10,000,000"
                    )
                }
            },
        };
        let malformed = match vals.get(2) {
            None => 0.0,
            Some(v) => match number(v) {
                Some(m) if (0.0..=1.0).contains(&m) => m,
                _ => return plan_err!("kafka_demo: malformed_share must be between 0 and 1"),
            },
        };
        let kind = match vals.get(3) {
            None => Kind::Sensors,
            Some(v) => match text(v).as_deref().and_then(Kind::parse) {
                Some(k) => k,
                None => return plan_err!("kafka_demo: kind must be 'sensors' or 'embeddings'"),
            },
        };
        let total = match vals.get(4) {
            None => None,
            Some(v) if v.is_null() => None,
            Some(v) => match number(v) {
                Some(t) if t >= 0.0 && t.fract() == 0.0 => Some(t as u64),
                _ => return plan_err!("kafka_demo: total_rows must be a whole number"),
            },
        };
        if super::options::parse(&format!("kafka://demo/{topic}"), &Default::default()).is_err() {
            return plan_err!("kafka_demo: '{topic}' is not a valid topic name");
        }
        let broker = broker().map_err(DataFusionError::Plan)?;
        if rate == 0.0 {
            broker.stop(&topic).map_err(DataFusionError::Plan)?;
        } else {
            broker
                .generate(Generator {
                    topic: topic.clone(),
                    kind,
                    rate,
                    malformed,
                    total,
                })
                .map_err(DataFusionError::Plan)?;
        }
        let status = broker.status(&topic);
        let schema = Arc::new(Schema::new(vec![
            Field::new("topic", DataType::Utf8, false),
            Field::new("location", DataType::Utf8, false),
            Field::new("kind", DataType::Utf8, false),
            Field::new("rows_per_s", DataType::Float64, false),
            Field::new("malformed_share", DataType::Float64, false),
            Field::new("total_rows", DataType::Int64, true),
            Field::new("state", DataType::Utf8, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![topic.clone()])),
            Arc::new(StringArray::from(vec![format!("kafka://demo/{topic}")])),
            Arc::new(StringArray::from(vec![kind.name()])),
            Arc::new(Float64Array::from(vec![rate])),
            Arc::new(Float64Array::from(vec![malformed])),
            Arc::new(Int64Array::from(vec![total.map(|t| t as i64)])),
            Arc::new(StringArray::from(vec![if rate == 0.0 {
                format!("stopped after {} messages", status.produced)
            } else {
                "producing".to_string()
            }])),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }
}
