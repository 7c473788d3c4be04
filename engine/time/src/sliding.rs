//! Rolling time windows in one pass: `avg/sum/count(x) OVER (PARTITION BY k ORDER BY ts RANGE BETWEEN d PRECEDING
//! AND CURRENT ROW)`.
//!
//! DataFusion runs such windows with its general BoundedWindowAggExec, which spends about 1.7 µs a row here
//! (bench/RESULTS.md): it keeps per-partition state machinery for every window partition present in a batch. Over
//! input already sorted by (k, ts) the window is a queue: rows enter at the back, leave at the front once they are
//! older than ts − d, and a running sum and count give the aggregates. The physical optimizer rule
//! [`SlidingWindows`] swaps in [`SlidingWindowExec`] where a BoundedWindowAggExec has exactly that shape (sorted
//! input, one ORDER BY column that is a timestamp or integer, RANGE d PRECEDING AND CURRENT ROW, only avg, sum and
//! count of Float64/integer arguments); everything else keeps DataFusion's operator.
//!
//! Semantics kept: peers (rows with the same k and ts) share one frame, so a run of them is aggregated together;
//! rows with a NULL ts (sorted last) form their own frame; NULL arguments are skipped (count(x) counts non-NULLs).
//! The running sum is recomputed exactly from the queue whenever it has absorbed as many removals as the queue
//! holds, so rounding never builds up over a long partition.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, SchemaRef};
use datafusion::arrow::row::{OwnedRow, RowConverter, Rows, SortField};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{WindowFrameBound, WindowFrameUnits};
use datafusion::physical_expr::window::{PlainAggregateWindowExpr, SlidingAggregateWindowExpr};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::windows::BoundedWindowAggExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, InputOrderMode, PlanProperties, RecordBatchStream,
    SendableRecordBatchStream,
};
use futures::{Stream, StreamExt};
use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Avg,
    Sum,
    Count,
}

#[derive(Debug, Clone)]
struct Window {
    func: Func,
    arg: Arc<dyn PhysicalExpr>,
}

/// The physical optimizer rule.
#[derive(Debug, Default)]
pub struct SlidingWindows;

impl PhysicalOptimizerRule for SlidingWindows {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|p| {
            let any: &dyn std::any::Any = p.as_ref();
            match any
                .downcast_ref::<BoundedWindowAggExec>()
                .and_then(SlidingWindowExec::replacing)
            {
                Some(exec) => Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>)),
                None => Ok(Transformed::no(p)),
            }
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "kestrel_sliding_windows"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// A rolling RANGE window over input sorted by (partition keys, order column).
#[derive(Debug)]
pub struct SlidingWindowExec {
    input: Arc<dyn ExecutionPlan>,
    partition_by: Vec<Arc<dyn PhysicalExpr>>,
    order: Arc<dyn PhysicalExpr>,
    /// the frame's length, in the order column's unit
    range: i64,
    windows: Vec<Window>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    distribution: datafusion::physical_plan::InputDistributionRequirements,
    ordering: Vec<Option<datafusion::physical_expr::OrderingRequirements>>,
}

impl SlidingWindowExec {
    /// The replacement for `w`, if it has the shape this operator handles.
    fn replacing(w: &BoundedWindowAggExec) -> Option<Self> {
        if w.input_order_mode != InputOrderMode::Sorted || w.window_expr().is_empty() {
            return None;
        }
        let first = &w.window_expr()[0];
        let partition_by = first.partition_by().to_vec();
        let [order] = first.order_by() else {
            return None;
        };
        if order.options.descending {
            return None;
        }
        let order_type = order.expr.data_type(&w.input().schema()).ok()?;
        let mut range = None;
        let mut windows = Vec::new();
        for e in w.window_expr() {
            let same_partition = e.partition_by().len() == partition_by.len()
                && e.partition_by()
                    .iter()
                    .zip(&partition_by)
                    .all(|(a, b)| a.to_string() == b.to_string());
            let same_order = matches!(e.order_by(), [o] if o.to_string() == order.to_string());
            if !same_partition || !same_order {
                return None;
            }
            let frame = e.get_window_frame();
            if frame.units != WindowFrameUnits::Range
                || frame.end_bound != WindowFrameBound::CurrentRow
            {
                return None;
            }
            let WindowFrameBound::Preceding(d) = &frame.start_bound else {
                return None;
            };
            let d = frame_length(d, &order_type)?;
            if range.is_some_and(|r| r != d) {
                return None;
            }
            range = Some(d);
            let any = e.as_any();
            let agg = match (
                any.downcast_ref::<SlidingAggregateWindowExpr>(),
                any.downcast_ref::<PlainAggregateWindowExpr>(),
            ) {
                (Some(s), _) => s.get_aggregate_expr(),
                (_, Some(p)) => p.get_aggregate_expr(),
                _ => return None,
            };
            if agg.is_distinct() || agg.ignore_nulls() {
                return None;
            }
            let [arg] = agg.expressions().try_into().ok()?;
            let arg_type = arg.data_type(&w.input().schema()).ok()?;
            let func = match agg.fun().name() {
                "avg" if arg_type == DataType::Float64 || arg_type.is_integer() => Func::Avg,
                "sum" if arg_type == DataType::Float64 => Func::Sum,
                "count" => Func::Count,
                _ => return None,
            };
            windows.push(Window { func, arg });
        }
        Some(Self {
            input: w.input().clone(),
            partition_by,
            order: order.expr.clone(),
            range: range?,
            windows,
            schema: w.schema(),
            properties: w.properties().clone(),
            distribution: w.input_distribution_requirements(),
            ordering: w.required_input_ordering(),
        })
    }
}

/// A RANGE frame's length in the order column's unit (timestamps: a fixed interval; integers: an integer).
fn frame_length(d: &ScalarValue, order: &DataType) -> Option<i64> {
    let v = match (d, order) {
        (ScalarValue::IntervalMonthDayNano(Some(i)), DataType::Timestamp(unit, _))
            if i.months == 0 =>
        {
            let nanos = (i.days as i64)
                .checked_mul(86_400_000_000_000)?
                .checked_add(i.nanoseconds)?;
            let scale = match unit {
                datafusion::arrow::datatypes::TimeUnit::Second => 1_000_000_000,
                datafusion::arrow::datatypes::TimeUnit::Millisecond => 1_000_000,
                datafusion::arrow::datatypes::TimeUnit::Microsecond => 1_000,
                datafusion::arrow::datatypes::TimeUnit::Nanosecond => 1,
            };
            if nanos % scale != 0 {
                return None;
            }
            nanos / scale
        }
        (d, t) if t.is_integer() => match d.cast_to(&DataType::Int64).ok()? {
            ScalarValue::Int64(Some(v)) => v,
            _ => return None,
        },
        _ => return None,
    };
    (v >= 0).then_some(v)
}

impl DisplayAs for SlidingWindowExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let funcs: Vec<String> = self
            .windows
            .iter()
            .map(|w| format!("{:?}({})", w.func, w.arg).to_lowercase())
            .collect();
        let keys: Vec<String> = self.partition_by.iter().map(|k| k.to_string()).collect();
        write!(
            f,
            "SlidingWindowExec: [{}] PARTITION BY [{}] ORDER BY {} RANGE {} PRECEDING AND CURRENT ROW",
            funcs.join(", "),
            keys.join(", "),
            self.order,
            self.range
        )
    }
}

impl ExecutionPlan for SlidingWindowExec {
    fn name(&self) -> &'static str {
        "SlidingWindowExec"
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }
    fn input_distribution_requirements(
        &self,
    ) -> datafusion::physical_plan::InputDistributionRequirements {
        self.distribution.clone()
    }
    fn required_input_ordering(
        &self,
    ) -> Vec<Option<datafusion::physical_expr::OrderingRequirements>> {
        self.ordering.clone()
    }
    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }
    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        super::visit_exprs(
            self.partition_by
                .iter()
                .chain([&self.order])
                .chain(self.windows.iter().map(|w| &w.arg)),
            f,
        )
    }
    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (Some(input), true) = (children.pop(), children.is_empty()) else {
            return exec_err!("SlidingWindowExec takes one child");
        };
        Ok(Arc::new(Self {
            input,
            partition_by: self.partition_by.clone(),
            order: self.order.clone(),
            range: self.range,
            windows: self.windows.clone(),
            schema: self.schema.clone(),
            properties: self.properties.clone(),
            distribution: self.distribution.clone(),
            ordering: self.ordering.clone(),
        }))
    }
    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let converter = if self.partition_by.is_empty() {
            None
        } else {
            let schema = self.input.schema();
            Some(RowConverter::new(
                self.partition_by
                    .iter()
                    .map(|k| Ok(SortField::new(k.data_type(&schema)?)))
                    .collect::<Result<Vec<_>>>()?,
            )?)
        };
        Ok(Box::pin(SlidingStream {
            input,
            done: false,
            carry: None,
            converter,
            partition_by: self.partition_by.clone(),
            order: self.order.clone(),
            range: self.range,
            windows: self.windows.clone(),
            schema: self.schema.clone(),
            state: State::new(self.windows.len()),
        }))
    }
}

/// The frame of the current partition.
struct State {
    key: Option<OwnedRow>,
    started: bool,
    times: VecDeque<i64>,
    /// per window: the arguments in the frame (None for NULL)
    values: Vec<VecDeque<Option<f64>>>,
    sums: Vec<f64>,
    counts: Vec<i64>,
    removals: usize,
}

impl State {
    fn new(n: usize) -> Self {
        Self {
            key: None,
            started: false,
            times: VecDeque::new(),
            values: vec![VecDeque::new(); n],
            sums: vec![0.0; n],
            counts: vec![0; n],
            removals: 0,
        }
    }

    fn clear(&mut self) {
        self.times.clear();
        for v in &mut self.values {
            v.clear();
        }
        self.sums.iter_mut().for_each(|s| *s = 0.0);
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.removals = 0;
    }

    fn evict_before(&mut self, t: i64) {
        while self.times.front().is_some_and(|&f| f < t) {
            self.times.pop_front();
            for (w, vals) in self.values.iter_mut().enumerate() {
                if let Some(Some(v)) = vals.pop_front() {
                    self.sums[w] -= v;
                    self.counts[w] -= 1;
                }
            }
            self.removals += 1;
        }
        if self.times.is_empty() {
            self.clear();
        } else if self.removals > self.times.len() + 64 {
            // bound rounding: recompute the sums exactly from the frame
            for (w, vals) in self.values.iter().enumerate() {
                self.sums[w] = vals.iter().flatten().sum();
            }
            self.removals = 0;
        }
    }

    fn push(&mut self, t: i64, args: &[Float64Array], row: usize) {
        self.times.push_back(t);
        for (w, a) in args.iter().enumerate() {
            let v = a.is_valid(row).then(|| a.value(row));
            if let Some(v) = v {
                self.sums[w] += v;
                self.counts[w] += 1;
            }
            self.values[w].push_back(v);
        }
    }
}

struct SlidingStream {
    input: SendableRecordBatchStream,
    done: bool,
    /// rows of the last (possibly unfinished) run of peers, held until the next batch
    carry: Option<RecordBatch>,
    converter: Option<RowConverter>,
    partition_by: Vec<Arc<dyn PhysicalExpr>>,
    order: Arc<dyn PhysicalExpr>,
    range: i64,
    windows: Vec<Window>,
    schema: SchemaRef,
    state: State,
}

impl SlidingStream {
    /// Computes the windows of `batch`'s rows; unless `last`, the final run of peers is held back.
    fn process(&mut self, batch: RecordBatch, last: bool) -> Result<Option<RecordBatch>> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(None);
        }
        let keys: Option<Rows> = match &self.converter {
            Some(c) => {
                let cols = self
                    .partition_by
                    .iter()
                    .map(|k| k.evaluate(&batch)?.into_array(n))
                    .collect::<Result<Vec<ArrayRef>>>()?;
                Some(c.convert_columns(&cols)?)
            }
            None => None,
        };
        let order = self.order.evaluate(&batch)?.into_array(n)?;
        let order = cast(&order, &DataType::Int64)?;
        let order: &Int64Array = order.as_primitive::<Int64Type>();
        let args: Vec<Float64Array> = self
            .windows
            .iter()
            .map(|w| {
                let a = w.arg.evaluate(&batch)?.into_array(n)?;
                Ok(cast(&a, &DataType::Float64)?
                    .as_primitive::<Float64Type>()
                    .clone())
            })
            .collect::<Result<_>>()?;
        let same_key = |a: usize, b: usize| keys.as_ref().is_none_or(|k| k.row(a) == k.row(b));
        let same_time = |a: usize, b: usize| match (order.is_null(a), order.is_null(b)) {
            (true, true) => true,
            (false, false) => order.value(a) == order.value(b),
            _ => false,
        };
        // Where the held-back run starts.
        let mut end = n;
        if !last {
            while end > 1 && same_key(end - 1, end - 2) && same_time(end - 1, end - 2) {
                end -= 1;
            }
            end -= 1;
            if end == 0 {
                self.carry = Some(batch);
                return Ok(None);
            }
        }
        let mut outputs: Vec<(Vec<f64>, Vec<bool>, Vec<i64>)> = self
            .windows
            .iter()
            .map(|_| {
                (
                    Vec::with_capacity(end),
                    Vec::with_capacity(end),
                    Vec::with_capacity(end),
                )
            })
            .collect();
        let mut i = 0;
        while i < end {
            let mut j = i + 1;
            while j < end && same_key(i, j) && same_time(i, j) {
                j += 1;
            }
            // a new partition?
            let new_key = match &keys {
                Some(k) => self
                    .state
                    .key
                    .as_ref()
                    .is_none_or(|cur| cur.row() != k.row(i)),
                None => !self.state.started,
            };
            if new_key {
                self.state.clear();
                self.state.key = keys.as_ref().map(|k| k.row(i).owned());
                self.state.started = true;
            }
            if order.is_null(i) {
                // NULL times are peers of each other only
                self.state.clear();
                for r in i..j {
                    self.state.push(i64::MIN, &args, r);
                }
            } else {
                let t = order.value(i);
                self.state.evict_before(t.saturating_sub(self.range));
                for r in i..j {
                    self.state.push(t, &args, r);
                }
            }
            for (w, win) in self.windows.iter().enumerate() {
                let (sum, count) = (self.state.sums[w], self.state.counts[w]);
                let (vals, valid, counts) = &mut outputs[w];
                for _ in i..j {
                    match win.func {
                        Func::Count => counts.push(count),
                        Func::Avg => {
                            valid.push(count > 0);
                            vals.push(if count > 0 { sum / count as f64 } else { 0.0 });
                        }
                        Func::Sum => {
                            valid.push(count > 0);
                            vals.push(sum);
                        }
                    }
                }
            }
            i = j;
        }
        let mut columns: Vec<ArrayRef> = batch.slice(0, end).columns().to_vec();
        for (win, (vals, valid, counts)) in self.windows.iter().zip(outputs) {
            columns.push(match win.func {
                Func::Count => Arc::new(Int64Array::from(counts)),
                _ => Arc::new(Float64Array::new(vals.into(), Some(valid.into()))),
            });
        }
        if end < n {
            self.carry = Some(batch.slice(end, n - end));
        }
        // the planned output types (sum/avg Float64, count Int64) are what we built; cast defensively otherwise
        let columns = columns
            .into_iter()
            .zip(self.schema.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c)
                } else {
                    Ok(cast(&c, f.data_type())?)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(RecordBatch::try_new(self.schema.clone(), columns)?))
    }
}

impl Stream for SlidingStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            match self.input.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(batch))) => {
                    let batch = match self.carry.take() {
                        Some(c) => match concat_batches(&batch.schema(), [&c, &batch]) {
                            Ok(b) => b,
                            Err(e) => return Poll::Ready(Some(Err(e.into()))),
                        },
                        None => batch,
                    };
                    match self.process(batch, false) {
                        Ok(Some(out)) => return Poll::Ready(Some(Ok(out))),
                        Ok(None) => continue,
                        Err(e) => return Poll::Ready(Some(Err(e))),
                    }
                }
                Poll::Ready(None) => {
                    self.done = true;
                    if let Some(c) = self.carry.take() {
                        match self.process(c, true) {
                            Ok(Some(out)) => return Poll::Ready(Some(Ok(out))),
                            Ok(None) => return Poll::Ready(None),
                            Err(e) => return Poll::Ready(Some(Err(e))),
                        }
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }
}

impl RecordBatchStream for SlidingStream {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}
