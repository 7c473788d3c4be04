//! `sys.sources` and `sys.dead_letters`.

use super::{DeadLetters, Sources};
use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::Result;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

fn millis(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn utc_ms() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// One row per live table.
#[derive(Debug)]
pub struct SysSources {
    sources: Arc<Sources>,
    schema: SchemaRef,
}

impl crate::sys::SysTable for SysSources {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn batch(&self) -> Result<RecordBatch> {
        self.rows()
    }
}

impl SysSources {
    pub fn new(sources: Arc<Sources>) -> Self {
        let schema = Arc::new(Schema::new(vec![
            Field::new("table_name", DataType::Utf8, false),
            Field::new("topic", DataType::Utf8, false),
            Field::new("bootstrap", DataType::Utf8, false),
            Field::new("format", DataType::Utf8, false),
            Field::new("partitions", DataType::Int32, false),
            Field::new("rows", DataType::Int64, false),
            Field::new("consumed", DataType::Int64, false),
            Field::new("lag", DataType::Int64, false),
            Field::new("rows_per_s", DataType::Float64, false),
            Field::new("errors", DataType::Int64, false),
            Field::new("state", DataType::Utf8, false),
            Field::new("last_error", DataType::Utf8, true),
            Field::new("retention", DataType::Utf8, false),
            Field::new("memory_bytes", DataType::Int64, false),
            Field::new("positions", DataType::Utf8, false),
            Field::new("created", utc_ms(), false),
        ]));
        Self { sources, schema }
    }

    fn rows(&self) -> Result<RecordBatch> {
        let tables = self.sources.all();
        let text = |f: &dyn Fn(&super::LiveTable) -> String| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(tables.iter().map(|t| f(t))))
        };
        let int = |f: &dyn Fn(&super::LiveTable) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(tables.iter().map(|t| f(t))))
        };
        let columns: Vec<ArrayRef> = vec![
            text(&|t| t.name.clone()),
            text(&|t| t.options.topic.clone()),
            text(&|t| {
                if t.options.demo {
                    format!("demo ({})", t.bootstrap)
                } else {
                    t.bootstrap.clone()
                }
            }),
            text(&|t| t.options.format.name().to_string()),
            Arc::new(Int32Array::from_iter_values(
                tables.iter().map(|t| t.partitions() as i32),
            )),
            int(&|t| t.sizes().0 as i64),
            int(&|t| t.counters.consumed.load(Ordering::Relaxed) as i64),
            int(&|t| t.counters.lag.load(Ordering::Relaxed)),
            Arc::new(Float64Array::from_iter_values(
                tables
                    .iter()
                    .map(|t| (t.counters.rate() * 10.0).round() / 10.0),
            )),
            int(&|t| t.counters.errors.load(Ordering::Relaxed) as i64),
            text(&|t| t.state().0.name().to_string()),
            Arc::new(StringArray::from_iter(tables.iter().map(|t| t.state().1))),
            text(&|t| t.options.retention.to_string()),
            int(&|t| t.sizes().1 as i64),
            text(&|t| {
                t.positions()
                    .iter()
                    .map(|(p, o)| format!("{p}:{o}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }),
            Arc::new(
                TimestampMillisecondArray::from_iter_values(
                    tables.iter().map(|t| millis(t.created)),
                )
                .with_timezone("UTC"),
            ),
        ];
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// One row per message that did not decode.
#[derive(Debug)]
pub struct SysDeadLetters {
    dead: Arc<DeadLetters>,
    schema: SchemaRef,
}

impl crate::sys::SysTable for SysDeadLetters {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn batch(&self) -> Result<RecordBatch> {
        self.rows()
    }
}

impl SysDeadLetters {
    pub fn new(dead: Arc<DeadLetters>) -> Self {
        let schema = Arc::new(Schema::new(vec![
            Field::new("table_name", DataType::Utf8, false),
            Field::new("topic", DataType::Utf8, false),
            Field::new("partition", DataType::Int32, false),
            Field::new("offset", DataType::Int64, false),
            Field::new("key", DataType::Utf8, true),
            Field::new("payload", DataType::Utf8, true),
            Field::new("error", DataType::Utf8, false),
            Field::new("received_at", utc_ms(), false),
        ]));
        Self { dead, schema }
    }

    fn rows(&self) -> Result<RecordBatch> {
        let d = self.dead.all();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                d.iter().map(|l| l.table.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                d.iter().map(|l| l.topic.as_str()),
            )),
            Arc::new(Int32Array::from_iter_values(d.iter().map(|l| l.partition))),
            Arc::new(Int64Array::from_iter_values(d.iter().map(|l| l.offset))),
            Arc::new(StringArray::from_iter(d.iter().map(|l| l.key.as_deref()))),
            Arc::new(StringArray::from_iter(
                d.iter().map(|l| l.payload.as_deref()),
            )),
            Arc::new(StringArray::from_iter_values(
                d.iter().map(|l| l.error.as_str()),
            )),
            Arc::new(
                TimestampMillisecondArray::from_iter_values(
                    d.iter().map(|l| millis(l.received_at)),
                )
                .with_timezone("UTC"),
            ),
        ];
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}
