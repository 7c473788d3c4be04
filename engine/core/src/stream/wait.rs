//! `kafka_wait('table' [, timeout_s])`: waits until a live table has read everything its topic holds (lag 0, and
//! the demo generator of its topic, if any, has finished) and its continuous views have taken the rows in; returns
//! the table's counts. For notebooks and pipelines that must not read a half-loaded table ("export once caught
//! up"). The wait happens when the query runs, so an interrupt cancels it.

use super::{demo, Sources};
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl};
use datafusion::common::{plan_err, DataFusionError, Result, ScalarValue};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct WaitFunction {
    pub(super) sources: Weak<Sources>,
}

#[derive(Debug)]
struct Wait {
    sources: Weak<Sources>,
    table: String,
    timeout: Duration,
    schema: SchemaRef,
}

impl TableFunctionImpl for WaitFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let usage = "kafka_wait('live_table' [, timeout_seconds])";
        let exprs = args.exprs();
        let lit = |e: &Expr| match e {
            Expr::Literal(v, _) => Some(v.clone()),
            _ => None,
        };
        let table = match exprs.first().and_then(lit) {
            Some(ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s))) => s,
            _ => return plan_err!("{usage}"),
        };
        let timeout = match exprs.get(1).and_then(lit) {
            None => 60.0,
            Some(v) => match v.cast_to(&DataType::Float64) {
                Ok(ScalarValue::Float64(Some(t))) if t > 0.0 && t <= 3600.0 => t,
                _ => return plan_err!("kafka_wait: the timeout is seconds, from 0 to 3600"),
            },
        };
        if exprs.len() > 2 {
            return plan_err!("{usage}");
        }
        let Some(sources) = self.sources.upgrade() else {
            return plan_err!("kafka_wait: the session is closing");
        };
        if sources.get(&table).is_none() {
            return plan_err!(
                "kafka_wait: '{table}' is not a live (Kafka) table; sys.sources lists them"
            );
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("table_name", DataType::Utf8, false),
            Field::new("rows", DataType::Int64, false),
            Field::new("consumed", DataType::Int64, false),
            Field::new("errors", DataType::Int64, false),
            Field::new("lag", DataType::Int64, false),
        ]));
        Ok(Arc::new(Wait {
            sources: self.sources.clone(),
            table,
            timeout: Duration::from_secs_f64(timeout),
            schema,
        }))
    }
}

#[async_trait::async_trait]
impl TableProvider for Wait {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn table_type(&self) -> TableType {
        TableType::Temporary
    }
    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let live = self
            .sources
            .upgrade()
            .and_then(|s| s.get(&self.table))
            .ok_or_else(|| {
                DataFusionError::Plan(format!("'{}' is no longer a live table", self.table))
            })?;
        let started = Instant::now();
        loop {
            let generating = live.options.demo
                && demo::broker().is_ok_and(|b| b.status(&live.options.topic).running);
            let lag = live.counters.lag.load(Ordering::Relaxed);
            let settled = !generating
                && lag == 0
                && live.state().0 == super::SourceState::Live
                && live.subscribers_idle();
            if settled {
                break;
            }
            if live.stopped() {
                return Err(DataFusionError::Execution(format!(
                    "{} was dropped while waiting",
                    live.name
                )));
            }
            if started.elapsed() >= self.timeout {
                return Err(DataFusionError::Execution(format!(
                    "kafka_wait: {} did not catch up within {:.0} s (lag {lag}, state {}{})",
                    live.name,
                    self.timeout.as_secs_f64(),
                    live.state().0.name(),
                    if generating {
                        ", its demo generator is still producing"
                    } else {
                        ""
                    }
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (rows, _, _) = live.sizes();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![live.name.clone()])),
            Arc::new(Int64Array::from(vec![rows as i64])),
            Arc::new(Int64Array::from(vec![
                live.counters.consumed.load(Ordering::Relaxed) as i64,
            ])),
            Arc::new(Int64Array::from(vec![
                live.counters.errors.load(Ordering::Relaxed) as i64,
            ])),
            Arc::new(Int64Array::from(vec![live
                .counters
                .lag
                .load(Ordering::Relaxed)])),
        ];
        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}
