//! `INSERT INTO kafka_table SELECT ...`: one JSON message per row (the declared columns; metadata columns are not
//! sent). The key is the `key.column` option's column, else a non-NULL `_key`. The statement returns once every
//! message is acknowledged by the broker, or fails naming how many were not.

use super::decode::META;
use super::LiveTable;
use datafusion::arrow::array::{Array, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::sink::DataSink;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use futures::StreamExt;
use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counts acknowledgements.
#[derive(Default)]
pub struct Deliveries {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub first_error: Mutex<Option<String>>,
    /// The offset after the last acknowledged message, per partition.
    pub ends: Mutex<std::collections::BTreeMap<i32, i64>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                use rdkafka::Message;
                if let Ok(mut ends) = self.ends.lock() {
                    let end = ends.entry(m.partition()).or_insert(0);
                    *end = (*end).max(m.offset() + 1);
                }
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut f) = self.first_error.lock() {
                    f.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
}

/// Sends `payload` with `key`, waiting while librdkafka's queue is full.
pub fn send(
    producer: &BaseProducer<Deliveries>,
    topic: &str,
    key: Option<&[u8]>,
    payload: &[u8],
) -> std::result::Result<(), KafkaError> {
    loop {
        let mut record = BaseRecord::to(topic).payload(payload);
        if let Some(k) = key {
            record = record.key(k);
        }
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

#[derive(Debug)]
pub struct KafkaSink {
    table: Arc<LiveTable>,
    schema: SchemaRef,
}

impl KafkaSink {
    pub fn new(table: Arc<LiveTable>) -> Result<Self> {
        let schema = table.schema();
        if let Some(k) = &table.options.key_column {
            if schema.index_of(k).is_err() {
                return Err(DataFusionError::Plan(format!(
                    "option key.column names '{k}', which is not a column of {}",
                    table.name
                )));
            }
        }
        Ok(Self { table, schema })
    }
}

impl DisplayAs for KafkaSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KafkaSink: topic={}", self.table.options.topic)
    }
}

/// The key of each row, as text.
fn keys(batch: &RecordBatch, column: Option<&str>) -> Result<Option<StringArray>> {
    let name = column.unwrap_or("_key");
    let Some(c) = batch.column_by_name(name) else {
        return Ok(None);
    };
    if c.null_count() == c.len() {
        return Ok(None);
    }
    let s = cast(c, &DataType::Utf8)?;
    Ok(s.as_any().downcast_ref::<StringArray>().cloned())
}

#[async_trait::async_trait]
impl DataSink for KafkaSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> Result<u64> {
        let o = &self.table.options;
        let mut config = super::client_config(o, &self.table.bootstrap);
        config.set("linger.ms", "5").set("acks", "all");
        let producer: BaseProducer<Deliveries> = config
            .create_with_context(Deliveries::default())
            .map_err(|e| DataFusionError::Execution(format!("creating a Kafka producer: {e}")))?;
        let value_columns: Vec<usize> = self
            .schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| !META.contains(&f.name().as_str()))
            .map(|(i, _)| i)
            .collect();
        let mut sent = 0u64;
        let mut send_error: Option<String> = None;
        let mut line = Vec::new();
        while let Some(batch) = data.next().await {
            if send_error.is_some() {
                break;
            }
            let batch = batch?;
            let keys = keys(&batch, o.key_column.as_deref())?;
            let values = batch.project(&value_columns)?;
            let mut w = arrow_json::LineDelimitedWriter::new(Vec::new());
            w.write(&values)?;
            w.finish()?;
            let json = w.into_inner();
            for (row, payload) in json
                .split(|b| *b == b'\n')
                .take(values.num_rows())
                .enumerate()
            {
                line.clear();
                line.extend_from_slice(payload);
                let key = keys
                    .as_ref()
                    .and_then(|k| (!k.is_null(row)).then(|| k.value(row).as_bytes()));
                if let Err(e) = send(&producer, &o.topic, key, &line) {
                    send_error = Some(e.to_string());
                    break;
                }
                sent += 1;
            }
            producer.poll(Duration::ZERO);
        }
        let started = Instant::now();
        let producer = tokio::task::spawn_blocking(move || {
            let r = producer.flush(Duration::from_secs(30));
            (producer, r)
        })
        .await
        .map_err(|e| DataFusionError::Execution(format!("waiting for the broker: {e}")))?;
        let (producer, flushed) = producer;
        let d = producer.context();
        let failed = d.failed.load(Ordering::Relaxed);
        if let Some(e) = send_error {
            return Err(DataFusionError::Execution(format!(
                "producing to {} stopped after {sent} messages ({} acknowledged by the broker): {e}",
                o.topic,
                d.ok.load(Ordering::Relaxed)
            )));
        }
        if failed > 0 || flushed.is_err() {
            let why = d
                .first_error
                .lock()
                .ok()
                .and_then(|e| e.clone())
                .or_else(|| flushed.err().map(|e| e.to_string()))
                .unwrap_or_default();
            let unacked = sent - d.ok.load(Ordering::Relaxed);
            return Err(DataFusionError::Execution(format!(
                "{unacked} of {sent} messages to topic {} were not acknowledged after {:.1} s: {why}",
                o.topic,
                started.elapsed().as_secs_f64()
            )));
        }
        // The table reads its own topic: until it has read these messages it lags (kafka_wait waits for them),
        // whatever high watermark its consumer last saw.
        if let Ok(ends) = d.ends.lock() {
            self.table.produced(&ends);
        }
        Ok(sent)
    }
}
