//! Kafka live tables: `CREATE EXTERNAL TABLE t (...) STORED AS KAFKA LOCATION 'kafka://host:port/topic'`.
//!
//! A [`KafkaFactory`] (DataFusion's TableProviderFactory) validates the options, reads the topic's partitions and
//! watermarks, assigns the partitions at the asked-for start and hands the consumer to a [`live::LiveTable`], whose
//! thread appends decoded micro-batches. Queries read a snapshot. Messages that do not decode go to
//! `sys.dead_letters`, one row per message; `sys.sources` shows every table's progress. `INSERT INTO` a Kafka table
//! produces one JSON message per row ([`sink`]). `kafka_demo(...)` starts an in-process broker (librdkafka's mock
//! cluster) with a generator, so a notebook needs no Kafka ([`demo`]).

pub mod decode;
pub mod demo;
mod flat;
pub mod live;
pub mod options;
pub mod sink;
mod sys;
mod wait;

pub use live::{LiveTable, SourceState};
pub use sys::{SysDeadLetters, SysSources};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProviderFactory};
use datafusion::common::{plan_err, DataFusionError, Result, TableReference};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::sink::DataSinkExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{CreateExternalTable, Expr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::sqlparser::ast;
use options::{Format, KafkaOptions};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// A message that did not become a row.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub table: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Option<String>,
    pub error: String,
    pub received_at: SystemTime,
}

/// Every dead letter of the session, oldest first. Bounded: past [`DeadLetters::CAP`] the oldest are dropped from
/// memory, and counted (sys.sources' `errors` stays exact).
#[derive(Debug, Default)]
pub struct DeadLetters {
    letters: Mutex<VecDeque<DeadLetter>>,
    pub dropped: AtomicU64,
}

impl DeadLetters {
    pub const CAP: usize = 1_000_000;

    pub fn add(&self, letters: Vec<DeadLetter>) {
        if let Ok(mut l) = self.letters.lock() {
            l.extend(letters);
            while l.len() > Self::CAP {
                l.pop_front();
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn all(&self) -> Vec<DeadLetter> {
        self.letters
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets a dropped table's letters.
    fn remove_table(&self, table: &str) {
        if let Ok(mut l) = self.letters.lock() {
            l.retain(|d| d.table != table);
        }
    }
}

/// Finds the live table under a table provider that wraps one (a vector index over a live table), or None.
/// Capabilities that wrap tables register theirs with [`Sources::add_wrapper`], so this module needs none of them.
pub type LiveUnder = fn(&dyn std::any::Any) -> Option<Arc<LiveTable>>;

/// The session's live tables.
#[derive(Debug, Default)]
pub struct Sources {
    /// Keyed by the fully qualified name (its `to_string()`), with the reference itself for lookups.
    tables: Mutex<BTreeMap<String, (TableReference, Arc<LiveTable>)>>,
    pub dead: Arc<DeadLetters>,
    wrappers: Mutex<Vec<LiveUnder>>,
}

impl Sources {
    /// Registers how to see through a kind of table that wraps a live table (the table stays live under it).
    pub fn add_wrapper(&self, under: LiveUnder) {
        if let Ok(mut w) = self.wrappers.lock() {
            w.push(under);
        }
    }

    /// The live table registered as `provider`, itself or under a registered wrapper.
    fn live_in(&self, provider: &dyn std::any::Any) -> Option<Arc<LiveTable>> {
        if let Some(lp) = provider.downcast_ref::<LiveProvider>() {
            return Some(lp.0.clone());
        }
        let wrappers = self.wrappers.lock().map(|w| w.clone()).unwrap_or_default();
        wrappers.iter().find_map(|under| under(provider))
    }

    pub fn all(&self) -> Vec<Arc<LiveTable>> {
        self.tables
            .lock()
            .map(|t| t.values().map(|(_, l)| l.clone()).collect())
            .unwrap_or_default()
    }

    /// The live table registered under a (fully qualified or bare) name.
    pub fn get(&self, name: &str) -> Option<Arc<LiveTable>> {
        let t = self.tables.lock().ok()?;
        t.get(name)
            .map(|(_, l)| l)
            .or_else(|| t.values().map(|(_, l)| l).find(|l| l.name == name))
            .cloned()
    }

    fn insert(&self, name: TableReference, table: Arc<LiveTable>) {
        let old = self
            .tables
            .lock()
            .ok()
            .and_then(|mut t| t.insert(name.to_string(), (name, table)));
        if let Some((_, old)) = old {
            old.stop();
        }
    }

    /// `INSERT INTO kafka_table SELECT ...` without a column list means the declared columns (the metadata
    /// columns are filled by the broker, or named explicitly: `INSERT INTO t (a, b, _key) ...`).
    pub fn complete_insert(&self, ctx: &SessionContext, statement: &mut ast::Statement) {
        let ast::Statement::Insert(insert) = statement else {
            return;
        };
        if !insert.columns.is_empty() {
            return;
        }
        let ast::TableObject::TableName(name) = &insert.table else {
            return;
        };
        let Ok(key) = crate::names::resolve(ctx, name) else {
            return;
        };
        let key = key.to_string();
        let Some(live) = self
            .tables
            .lock()
            .ok()
            .and_then(|t| t.get(&key).map(|(_, l)| l.clone()))
        else {
            return;
        };
        insert.columns = live
            .schema()
            .fields()
            .iter()
            .filter(|f| !decode::META.contains(&f.name().as_str()))
            .map(|f| ast::ObjectName::from(vec![ast::Ident::with_quote('"', f.name().clone())]))
            .collect();
    }

    /// Stops the consumers of tables that are no longer registered as themselves (DROP TABLE, CREATE OR REPLACE).
    pub async fn reconcile(&self, ctx: &SessionContext) {
        let tables: Vec<(String, TableReference, Arc<LiveTable>)> = self
            .tables
            .lock()
            .map(|t| {
                t.iter()
                    .map(|(k, (r, v))| (k.clone(), r.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for (key, name, live) in tables {
            let current = ctx.table_provider(name).await.ok();
            let same = current.as_ref().is_some_and(|p| {
                // the table itself, or the table under its vector indexes
                let any: &dyn std::any::Any = p.as_ref();
                self.live_in(any).is_some_and(|l| Arc::ptr_eq(&l, &live))
            });
            if !same {
                live.stop();
                self.dead.remove_table(&live.name);
                if let Ok(mut t) = self.tables.lock() {
                    if t.get(&key).is_some_and(|(_, l)| Arc::ptr_eq(l, &live)) {
                        t.remove(&key);
                    }
                }
            }
        }
    }
}

impl Drop for Sources {
    fn drop(&mut self) {
        for t in self.all() {
            t.stop();
        }
    }
}

/// The table DataFusion sees.
#[derive(Debug)]
pub struct LiveProvider(pub Arc<LiveTable>);

#[async_trait::async_trait]
impl TableProvider for LiveProvider {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }
    fn table_type(&self) -> TableType {
        TableType::Base
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batches = self.0.snapshot();
        // Contiguous runs per partition: each partition reads in arrival order.
        let n = state
            .config()
            .target_partitions()
            .max(1)
            .min(batches.len().max(1));
        let per = batches.len().div_ceil(n).max(1);
        let parts: Vec<Vec<_>> = if batches.is_empty() {
            vec![vec![]]
        } else {
            batches.chunks(per).map(|c| c.to_vec()).collect()
        };
        Ok(MemorySourceConfig::try_new_exec(
            &parts,
            self.0.schema(),
            projection.cloned(),
        )?)
    }
    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return plan_err!(
                "{} is a Kafka topic: INSERT appends messages; OVERWRITE/REPLACE are not possible",
                self.0.name
            );
        }
        let sink = sink::KafkaSink::new(self.0.clone())?;
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// `STORED AS KAFKA`.
#[derive(Debug)]
pub struct KafkaFactory {
    sources: Arc<Sources>,
}

impl KafkaFactory {
    pub fn new(sources: Arc<Sources>) -> Self {
        Self { sources }
    }
}

/// The declared columns plus the metadata columns not declared.
fn table_schema(declared: &Schema, format: Format) -> Result<SchemaRef> {
    let mut fields: Vec<Field> = declared
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    if fields
        .iter()
        .all(|f| decode::META.contains(&f.name().as_str()))
    {
        return plan_err!("a Kafka table needs at least one column besides the metadata columns _partition, _offset, _timestamp, _key");
    }
    if format == Format::Raw {
        for f in &fields {
            let n = f.name().as_str();
            if decode::META.contains(&n) {
                continue;
            }
            if !matches!(n, "key" | "value")
                || !matches!(f.data_type(), DataType::Utf8 | DataType::Binary)
            {
                return plan_err!(
                    "format 'raw' has the columns key and value, TEXT or BYTEA; got {n} {}",
                    f.data_type()
                );
            }
        }
    }
    for m in decode::META {
        if !fields.iter().any(|f| f.name() == m) {
            if let Some(f) = decode::meta_field(m) {
                fields.push(f);
            }
        }
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// librdkafka settings for a table's consumer (or producer).
pub fn client_config(o: &KafkaOptions, bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "50")
        .set("queued.max.messages.kbytes", "65536")
        // when the local queue is over its thresholds librdkafka postpones the next fetch by this much (1 s by
        // default): a table catching up drains the queue far sooner, and then sat idle for most of each second
        .set("fetch.queue.backoff.ms", "10")
        .set("log_level", "3");
    c.set(
        "group.id",
        o.group_id
            .clone()
            .unwrap_or_else(|| format!("kestrel-{}", uuid_like())),
    );
    for (k, v) in &o.client {
        c.set(k, v);
    }
    c
}

fn uuid_like() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}-{}", nanos, std::process::id())
}

#[async_trait::async_trait]
impl TableProviderFactory for KafkaFactory {
    async fn create(
        &self,
        state: &dyn Session,
        cmd: &CreateExternalTable,
    ) -> Result<Arc<dyn TableProvider>> {
        let location = match cmd.locations.as_slice() {
            [l] => l.clone(),
            _ => return plan_err!("a Kafka table reads one LOCATION 'kafka://host:port/topic'"),
        };
        let options = options::parse(&location, &cmd.options)?;
        if !cmd.table_partition_cols.is_empty() {
            return plan_err!("a Kafka table has no PARTITIONED BY columns");
        }
        let schema = table_schema(cmd.schema.as_arrow(), options.format)?;
        let decoder = decode::Decoder::new(options.format, options.csv_delimiter, schema.clone())
            .map_err(|e| {
            DataFusionError::Plan(format!(
                "the columns cannot be decoded from {}: {e}",
                options.format.name()
            ))
        })?;
        let catalog = &state.config().options().catalog;
        let full = cmd
            .name
            .clone()
            .resolve(&catalog.default_catalog, &catalog.default_schema);
        let key = TableReference::full(full.catalog, full.schema, full.table);
        let name = cmd.name.table().to_string();
        let sources = self.sources.clone();
        let table = tokio::task::spawn_blocking(move || {
            start_table(name, options, schema, decoder, sources.dead.clone())
        })
        .await
        .map_err(|e| DataFusionError::Execution(format!("starting the consumer: {e}")))??;
        self.sources.insert(key, table.clone());
        Ok(Arc::new(LiveProvider(table)))
    }
}

/// Connects, reads the topic's partitions, assigns them and starts the consumer thread.
fn start_table(
    name: String,
    options: KafkaOptions,
    schema: SchemaRef,
    decoder: decode::Decoder,
    dead: Arc<DeadLetters>,
) -> Result<Arc<LiveTable>> {
    let bootstrap = if options.demo {
        let demo = demo::broker().map_err(DataFusionError::Plan)?;
        demo.ensure_topic(&options.topic)
            .map_err(DataFusionError::Plan)?;
        demo.bootstrap.clone()
    } else {
        options.bootstrap.clone()
    };
    let consumer: BaseConsumer = client_config(&options, &bootstrap).create().map_err(|e| {
        DataFusionError::Plan(format!("creating a Kafka consumer for {bootstrap}: {e}"))
    })?;
    let partitions = topic_partitions(&consumer, &options.topic, &bootstrap)?;
    let table = Arc::new(LiveTable::new(name, options, bootstrap, schema, dead));
    table
        .assign(&consumer, &partitions)
        .map_err(DataFusionError::Plan)?;
    table
        .start(consumer, decoder)
        .map_err(|e| DataFusionError::Execution(format!("starting the consumer thread: {e}")))?;
    Ok(table)
}

/// The topic's partition ids; a clear error when the broker is unreachable or the topic does not exist.
fn topic_partitions(consumer: &BaseConsumer, topic: &str, bootstrap: &str) -> Result<Vec<i32>> {
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| {
            DataFusionError::Plan(format!("cannot reach the Kafka broker at {bootstrap}: {e}"))
        })?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return plan_err!("topic '{topic}' does not exist on {bootstrap}");
    };
    if t.error().is_some() || t.partitions().is_empty() {
        return plan_err!(
            "topic '{topic}' does not exist on {bootstrap}{}",
            t.error().map(|e| format!(" ({e:?})")).unwrap_or_default()
        );
    }
    let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Registers `kafka_demo` and `kafka_wait` (the table factory is set up with the session).
pub fn register(ctx: &SessionContext, sources: &Arc<Sources>) {
    let demo: Arc<dyn datafusion::catalog::TableFunctionImpl> = Arc::new(demo::DemoFunction);
    let wait: Arc<dyn datafusion::catalog::TableFunctionImpl> = Arc::new(wait::WaitFunction {
        sources: Arc::downgrade(sources),
    });
    for (name, f) in [("kafka_demo", demo), ("kafka_wait", wait)] {
        ctx.register_udtf(name, f.clone());
        ctx.register_udtf(&name.to_uppercase(), f);
    }
}
