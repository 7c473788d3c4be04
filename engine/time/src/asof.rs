//! ASOF joins: for each left row, the right row with the same keys that is latest at or before it (or, with `<=`
//! / `<`, earliest at or after it).
//!
//! The parser ((the engine's `parse`)) turns both DuckDB's and Snowflake's syntax into an ordinary join whose condition is
//! wrapped in the `__kestrel_asof` marker. The analyzer rule [`AsofJoins`] splits that condition into equality keys
//! and the one inequality, and replaces the join with an [`AsofJoinNode`]; [`AsofJoinExec`] runs it: the right side
//! is collected once into per-key runs sorted by time, and the left side streams through, each row finding its
//! match by binary search. Left rows keep their order; the right side must fit in memory.

/// The marker function an ASOF join's condition is wrapped in between parsing (the engine's parser) and planning.
pub const ASOF_MARKER: &str = "__kestrel_asof";
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, UInt32Array, UInt32Builder,
};
use datafusion::arrow::compute::{cast, concat_batches, filter_record_batch, take};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, SchemaRef};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::catalog::Session;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{exec_err, plan_err, DFSchema, DFSchemaRef, DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::logical_plan::builder::build_join_schema;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, Extension, JoinType, LogicalPlan, Operator,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, UserDefinedLogicalNode,
    UserDefinedLogicalNodeCore, Volatility,
};
use datafusion::optimizer::analyzer::AnalyzerRule;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, ExecutionPlanProperties,
    Partitioning, PlanProperties, SendableRecordBatchStream,
};
use datafusion::physical_planner::{ExtensionPlanner, PhysicalPlanner};
use futures::StreamExt;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// The marker function: only meaningful inside a join condition, where [`AsofJoins`] removes it.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct AsofMarker {
    signature: Signature,
}

impl AsofMarker {
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            signature: Signature::exact(vec![DataType::Boolean], Volatility::Immutable),
        })
    }
}

impl ScalarUDFImpl for AsofMarker {
    fn name(&self) -> &str {
        ASOF_MARKER
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!("{ASOF_MARKER} is internal to ASOF JOIN and cannot be called")
    }
}

/// Which right row a left row matches: the comparison `left_ts OP right_ts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd)]
pub enum MatchOp {
    /// `l >= r`: the latest right row at or before the left row
    GtEq,
    /// `l > r`: the latest right row strictly before
    Gt,
    /// `l <= r`: the earliest right row at or after
    LtEq,
    /// `l < r`: the earliest right row strictly after
    Lt,
}

impl MatchOp {
    fn of(op: Operator) -> Option<Self> {
        Some(match op {
            Operator::GtEq => MatchOp::GtEq,
            Operator::Gt => MatchOp::Gt,
            Operator::LtEq => MatchOp::LtEq,
            Operator::Lt => MatchOp::Lt,
            _ => return None,
        })
    }
    fn operator(self) -> Operator {
        match self {
            MatchOp::GtEq => Operator::GtEq,
            MatchOp::Gt => Operator::Gt,
            MatchOp::LtEq => Operator::LtEq,
            MatchOp::Lt => Operator::Lt,
        }
    }

    /// The position in `times` (sorted ascending) of the match for `t`, if any.
    fn find(self, times: &[i64], t: i64) -> Option<usize> {
        match self {
            MatchOp::GtEq => times.partition_point(|&r| r <= t).checked_sub(1),
            MatchOp::Gt => times.partition_point(|&r| r < t).checked_sub(1),
            MatchOp::LtEq => Some(times.partition_point(|&r| r < t)).filter(|&i| i < times.len()),
            MatchOp::Lt => Some(times.partition_point(|&r| r <= t)).filter(|&i| i < times.len()),
        }
    }
}

/// The logical ASOF join.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AsofJoinNode {
    pub left: Arc<LogicalPlan>,
    pub right: Arc<LogicalPlan>,
    /// Equality keys: (left expression, right expression)
    pub keys: Vec<(Expr, Expr)>,
    pub left_time: Expr,
    pub right_time: Expr,
    pub op: MatchOp,
    /// Inner or Left
    pub join_type: JoinType,
    schema: DFSchemaRef,
}

impl PartialOrd for AsofJoinNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (
            &self.left,
            &self.right,
            &self.keys,
            &self.left_time,
            &self.right_time,
        )
            .partial_cmp(&(
                &other.left,
                &other.right,
                &other.keys,
                &other.left_time,
                &other.right_time,
            ))
    }
}

impl AsofJoinNode {
    pub fn try_new(
        left: Arc<LogicalPlan>,
        right: Arc<LogicalPlan>,
        keys: Vec<(Expr, Expr)>,
        left_time: Expr,
        right_time: Expr,
        op: MatchOp,
        join_type: JoinType,
    ) -> Result<Self> {
        let schema = Arc::new(build_join_schema(
            left.schema(),
            right.schema(),
            &join_type,
        )?);
        Ok(Self {
            left,
            right,
            keys,
            left_time,
            right_time,
            op,
            join_type,
            schema,
        })
    }
}

impl UserDefinedLogicalNodeCore for AsofJoinNode {
    fn name(&self) -> &str {
        "AsofJoin"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.left, &self.right]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        let mut out: Vec<Expr> = Vec::with_capacity(self.keys.len() * 2 + 2);
        for (l, r) in &self.keys {
            out.push(l.clone());
            out.push(r.clone());
        }
        out.push(self.left_time.clone());
        out.push(self.right_time.clone());
        out
    }

    // DataFusion would push a filter into both inputs; conditions on the right side decide which row matches and
    // must stay above, so nothing is pushed here and [`AsofFilterPushdown`] moves left-only conditions down.
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|(l, r)| format!("{l} = {r}"))
            .collect();
        write!(
            f,
            "AsofJoin: type={}, on=[{}], match={} {} {}",
            self.join_type,
            keys.join(", "),
            self.left_time,
            self.op.operator(),
            self.right_time
        )
    }

    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> Result<Self> {
        let [left, right]: [LogicalPlan; 2] = match inputs.try_into() {
            Ok(i) => i,
            Err(_) => return plan_err!("AsofJoin takes two inputs"),
        };
        if exprs.len() != self.keys.len() * 2 + 2 {
            return plan_err!("AsofJoin: expected {} expressions", self.keys.len() * 2 + 2);
        }
        let keys = exprs[..self.keys.len() * 2]
            .chunks(2)
            .map(|c| (c[0].clone(), c[1].clone()))
            .collect();
        let n = exprs.len();
        Self::try_new(
            Arc::new(left),
            Arc::new(right),
            keys,
            exprs[n - 2].clone(),
            exprs[n - 1].clone(),
            self.op,
            self.join_type,
        )
    }

    fn necessary_children_exprs(&self, output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        let left_len = self.left.schema().fields().len();
        let mut left = Vec::new();
        let mut right = Vec::new();
        for &i in output_columns {
            if i < left_len {
                left.push(i);
            } else {
                right.push(i - left_len);
            }
        }
        Some(vec![left, right])
    }
}

/// Analyzer rule: a join carrying the ASOF marker becomes an [`AsofJoinNode`].
#[derive(Debug, Default)]
pub struct AsofJoins;

impl AnalyzerRule for AsofJoins {
    fn name(&self) -> &str {
        "kestrel_asof_joins"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|plan| {
            let LogicalPlan::Join(join) = &plan else {
                return Ok(Transformed::no(plan));
            };
            let Some(Expr::ScalarFunction(f)) = &join.filter else {
                return Ok(Transformed::no(plan));
            };
            if f.name() != ASOF_MARKER {
                return Ok(Transformed::no(plan));
            }
            let join_type = match join.join_type {
                JoinType::Inner | JoinType::Left => join.join_type,
                other => return plan_err!("ASOF JOIN can be an inner or a LEFT join, not {other}"),
            };
            let Some(condition) = f.args.first() else {
                return plan_err!("ASOF JOIN without a condition");
            };
            let (l_schema, r_schema) = (join.left.schema(), join.right.schema());
            let mut keys: Vec<(Expr, Expr)> = join.on.clone();
            let mut time: Option<(Expr, Expr, MatchOp)> = None;
            for c in split_conjunction(condition) {
                let Expr::BinaryExpr(BinaryExpr { left, op, right }) = c else {
                    return plan_err!(
                        "ASOF JOIN conditions are equalities between the two sides and one inequality such as \
                         l.ts >= r.ts; cannot use {c}"
                    );
                };
                if *op != Operator::Eq && MatchOp::of(*op).is_none() {
                    return plan_err!(
                        "ASOF JOIN conditions are equalities between the two sides and one inequality such as \
                         l.ts >= r.ts; cannot use {c}"
                    );
                }
                let (l, r, flipped) = match (side(left, l_schema, r_schema), side(right, l_schema, r_schema)) {
                    (Some(Side::Left), Some(Side::Right)) => (left.as_ref(), right.as_ref(), false),
                    (Some(Side::Right), Some(Side::Left)) => (right.as_ref(), left.as_ref(), true),
                    _ => {
                        return plan_err!(
                            "ASOF JOIN condition {c} must compare a column of the left table with one of the \
                             right table"
                        )
                    }
                };
                if *op == Operator::Eq {
                    keys.push((l.clone(), r.clone()));
                    continue;
                }
                let op = if flipped { op.swap() } else { Some(*op) };
                let Some(m) = op.and_then(MatchOp::of) else {
                    return plan_err!(
                        "ASOF JOIN conditions are equalities and one of >=, >, <=, <; cannot use {c}"
                    );
                };
                if time.is_some() {
                    return plan_err!(
                        "ASOF JOIN takes exactly one inequality (such as l.ts >= r.ts); found another: {c}"
                    );
                }
                time = Some((l.clone(), r.clone(), m));
            }
            let Some((left_time, right_time, op)) = time else {
                return plan_err!(
                    "ASOF JOIN needs an inequality between the two time columns, such as l.ts >= r.ts"
                );
            };
            for (t, schema) in [(&left_time, l_schema), (&right_time, r_schema)] {
                let dt = t.get_type(schema.as_ref())?;
                if !orderable(&dt) {
                    return plan_err!(
                        "ASOF JOIN compares timestamps, dates or numbers; {t} is {dt}"
                    );
                }
            }
            let node = AsofJoinNode::try_new(
                join.left.clone(),
                join.right.clone(),
                keys,
                left_time,
                right_time,
                op,
                join_type,
            )?;
            Ok(Transformed::new(
                LogicalPlan::Extension(Extension {
                    node: Arc::new(node),
                }),
                true,
                TreeNodeRecursion::Continue,
            ))
        })
        .map(|t| t.data)
        .and_then(reject_stray_markers)
    }
}

/// Optimizer rule: conditions above an ASOF join that read only left columns filter the left input instead
/// (a left row's match does not depend on other left rows, so this never changes a result).
#[derive(Debug, Default)]
pub struct AsofFilterPushdown;

impl datafusion::optimizer::OptimizerRule for AsofFilterPushdown {
    fn name(&self) -> &str {
        "kestrel_asof_filter_pushdown"
    }

    fn apply_order(&self) -> Option<datafusion::optimizer::ApplyOrder> {
        Some(datafusion::optimizer::ApplyOrder::TopDown)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn datafusion::optimizer::OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Filter(filter) = &plan else {
            return Ok(Transformed::no(plan));
        };
        let LogicalPlan::Extension(ext) = filter.input.as_ref() else {
            return Ok(Transformed::no(plan));
        };
        let Some(node) = ext.node.as_any().downcast_ref::<AsofJoinNode>() else {
            return Ok(Transformed::no(plan));
        };
        let left_schema = node.left.schema();
        let (down, keep): (Vec<&Expr>, Vec<&Expr>) = split_conjunction(&filter.predicate)
            .into_iter()
            .partition(|e| {
                let cols = e.column_refs();
                !cols.is_empty()
                    && cols.iter().all(|c| left_schema.has_column(c))
                    && !e.is_volatile()
            });
        let Some(down) = datafusion::logical_expr::utils::conjunction(down.into_iter().cloned())
        else {
            return Ok(Transformed::no(plan));
        };
        let left = LogicalPlan::Filter(datafusion::logical_expr::Filter::try_new(
            down,
            node.left.clone(),
        )?);
        let joined = LogicalPlan::Extension(Extension {
            node: Arc::new(AsofJoinNode::try_new(
                Arc::new(left),
                node.right.clone(),
                node.keys.clone(),
                node.left_time.clone(),
                node.right_time.clone(),
                node.op,
                node.join_type,
            )?),
        });
        Ok(Transformed::yes(
            match datafusion::logical_expr::utils::conjunction(keep.into_iter().cloned()) {
                Some(rest) => LogicalPlan::Filter(datafusion::logical_expr::Filter::try_new(
                    rest,
                    Arc::new(joined),
                )?),
                None => joined,
            },
        ))
    }
}

/// A marker left anywhere else (a WHERE clause, a RIGHT join) is a mistake the user should hear about.
fn reject_stray_markers(plan: LogicalPlan) -> Result<LogicalPlan> {
    let mut stray = false;
    plan.apply_with_subqueries(|p| {
        p.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::ScalarFunction(f) = e {
                    if f.name() == ASOF_MARKER {
                        stray = true;
                        return Ok(TreeNodeRecursion::Stop);
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    if stray {
        return plan_err!("ASOF can only be used as ASOF [LEFT] JOIN ... ON ...");
    }
    Ok(plan)
}

enum Side {
    Left,
    Right,
}

fn side(e: &Expr, left: &DFSchema, right: &DFSchema) -> Option<Side> {
    let cols = e.column_refs();
    if cols.is_empty() {
        return None;
    }
    if cols.iter().all(|c| left.has_column(c)) {
        Some(Side::Left)
    } else if cols.iter().all(|c| right.has_column(c)) {
        Some(Side::Right)
    } else {
        None
    }
}

fn orderable(t: &DataType) -> bool {
    t.is_temporal() || t.is_numeric() || matches!(t, DataType::Null)
}

/// Times as i64 that order like the values: integers and temporal values as they are, floats by their bits.
fn time_keys(a: &ArrayRef) -> Result<Int64Array> {
    match a.data_type() {
        DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _) => {
            let f = cast(a, &DataType::Float64)?;
            Ok(f.as_primitive::<Float64Type>().unary(|x: f64| {
                let b = x.to_bits() as i64;
                b ^ (((b >> 63) as u64) >> 1) as i64
            }))
        }
        DataType::Date32 => {
            let i = cast(a, &DataType::Int32)?;
            Ok(cast(&i, &DataType::Int64)?
                .as_primitive::<Int64Type>()
                .clone())
        }
        _ => Ok(cast(a, &DataType::Int64)?
            .as_primitive::<Int64Type>()
            .clone()),
    }
}

/// The right side, collected: every column, and for each key its rows sorted by time.
struct RightSide {
    batch: RecordBatch,
    converter: Option<RowConverter>,
    groups: HashMap<Box<[u8]>, (usize, usize), ahash::RandomState>,
    /// (time, row) per group, each group's slice sorted by time; ties keep input order
    entries: Vec<(i64, u32)>,
    times: Vec<i64>,
}

impl RightSide {
    async fn build(
        right: Arc<dyn ExecutionPlan>,
        keys: Vec<Arc<dyn PhysicalExpr>>,
        time: Arc<dyn PhysicalExpr>,
        ctx: Arc<TaskContext>,
    ) -> Result<Self> {
        let schema = right.schema();
        let mut batches = Vec::new();
        for p in 0..right.output_partitioning().partition_count() {
            let mut s = right.execute(p, ctx.clone())?;
            while let Some(b) = s.next().await {
                batches.push(b?);
            }
        }
        let batch = concat_batches(&schema, &batches)?;
        drop(batches);
        if batch.num_rows() > u32::MAX as usize {
            return exec_err!("ASOF JOIN: the right side has more than 4 billion rows");
        }
        let t = time.evaluate(&batch)?.into_array(batch.num_rows())?;
        let t = time_keys(&t)?;
        let key_arrays: Vec<ArrayRef> = keys
            .iter()
            .map(|k| k.evaluate(&batch)?.into_array(batch.num_rows()))
            .collect::<Result<_>>()?;
        let converter = if key_arrays.is_empty() {
            None
        } else {
            Some(RowConverter::new(
                key_arrays
                    .iter()
                    .map(|a| SortField::new(a.data_type().clone()))
                    .collect(),
            )?)
        };
        let rows = match &converter {
            Some(c) => Some(c.convert_columns(&key_arrays)?),
            None => None,
        };
        // group of each usable row (keys and time not NULL)
        let mut groups: HashMap<Box<[u8]>, (usize, usize), ahash::RandomState> =
            HashMap::with_hasher(ahash::RandomState::new());
        let mut row_group: Vec<u32> = Vec::with_capacity(batch.num_rows());
        let mut counts: Vec<usize> = Vec::new();
        for i in 0..batch.num_rows() {
            let usable = t.is_valid(i) && key_arrays.iter().all(|a| a.is_valid(i));
            if !usable {
                row_group.push(u32::MAX);
                continue;
            }
            let g = match &rows {
                Some(rows) => {
                    let key = rows.row(i);
                    match groups.get(key.as_ref()) {
                        Some(&(g, _)) => g,
                        None => {
                            let g = counts.len();
                            groups.insert(key.as_ref().into(), (g, 0));
                            counts.push(0);
                            g
                        }
                    }
                }
                None => {
                    if counts.is_empty() {
                        groups.insert(Box::from(&[][..]), (0, 0));
                        counts.push(0);
                    }
                    0
                }
            };
            counts[g] += 1;
            row_group.push(g as u32);
        }
        let mut offsets = Vec::with_capacity(counts.len() + 1);
        let mut acc = 0usize;
        for c in &counts {
            offsets.push(acc);
            acc += c;
        }
        offsets.push(acc);
        let mut fill = offsets.clone();
        let mut entries = vec![(0i64, 0u32); acc];
        let tv = t.values();
        for (i, &g) in row_group.iter().enumerate() {
            if g == u32::MAX {
                continue;
            }
            let slot = &mut fill[g as usize];
            entries[*slot] = (tv[i], i as u32);
            *slot += 1;
        }
        // sort each group's run by time (stable: equal times keep input order)
        {
            use rayon::prelude::*;
            let mut slices: Vec<&mut [(i64, u32)]> = Vec::with_capacity(counts.len());
            let mut rest: &mut [(i64, u32)] = &mut entries;
            for c in &counts {
                let (head, tail) = rest.split_at_mut(*c);
                slices.push(head);
                rest = tail;
            }
            slices.par_iter_mut().for_each(|s| {
                if !s.is_sorted_by_key(|e| e.0) {
                    s.sort_by_key(|e| e.0)
                }
            });
        }
        for v in groups.values_mut() {
            let g = v.0;
            *v = (offsets[g], offsets[g + 1]);
        }
        let times = entries.iter().map(|e| e.0).collect();
        Ok(Self {
            batch,
            converter,
            groups,
            entries,
            times,
        })
    }

    /// For each left row, the index of its right match.
    fn probe(&self, keys: &[ArrayRef], time: &Int64Array, op: MatchOp) -> Result<UInt32Array> {
        let n = time.len();
        let rows: Option<Rows> = match &self.converter {
            Some(c) => Some(c.convert_columns(keys)?),
            None => None,
        };
        let mut out = UInt32Builder::with_capacity(n);
        let tv = time.values();
        for i in 0..n {
            if !time.is_valid(i) || keys.iter().any(|a| a.is_null(i)) {
                out.append_null();
                continue;
            }
            let range = match &rows {
                Some(rows) => self.groups.get(rows.row(i).as_ref()).copied(),
                None => self.groups.values().next().copied(),
            };
            let Some((start, end)) = range else {
                out.append_null();
                continue;
            };
            match op.find(&self.times[start..end], tv[i]) {
                Some(j) => out.append_value(self.entries[start + j].1),
                None => out.append_null(),
            }
        }
        Ok(out.finish())
    }
}

/// The physical ASOF join.
#[derive(Debug)]
pub struct AsofJoinExec {
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
    left_keys: Vec<Arc<dyn PhysicalExpr>>,
    right_keys: Vec<Arc<dyn PhysicalExpr>>,
    left_time: Arc<dyn PhysicalExpr>,
    right_time: Arc<dyn PhysicalExpr>,
    op: MatchOp,
    join_type: JoinType,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    right_side: Arc<OnceCell<Arc<RightSide>>>,
}

impl std::fmt::Debug for RightSide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RightSide({} rows)", self.batch.num_rows())
    }
}

impl AsofJoinExec {
    #[allow(clippy::too_many_arguments)]
    fn new(
        left: Arc<dyn ExecutionPlan>,
        right: Arc<dyn ExecutionPlan>,
        left_keys: Vec<Arc<dyn PhysicalExpr>>,
        right_keys: Vec<Arc<dyn PhysicalExpr>>,
        left_time: Arc<dyn PhysicalExpr>,
        right_time: Arc<dyn PhysicalExpr>,
        op: MatchOp,
        join_type: JoinType,
        schema: SchemaRef,
    ) -> Self {
        // Left rows come out in their input order, and left columns keep their positions, so the left side's
        // ordering holds for the output (a sort above may rely on it).
        let mut equivalence = EquivalenceProperties::new(schema.clone());
        if let Some(ordering) = left.output_ordering() {
            equivalence.add_ordering(ordering.iter().cloned());
        }
        let properties = Arc::new(PlanProperties::new(
            equivalence,
            Partitioning::UnknownPartitioning(left.output_partitioning().partition_count()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self {
            left,
            right,
            left_keys,
            right_keys,
            left_time,
            right_time,
            op,
            join_type,
            schema,
            properties,
            right_side: Arc::new(OnceCell::new()),
        }
    }
}

impl DisplayAs for AsofJoinExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<String> = self
            .left_keys
            .iter()
            .zip(&self.right_keys)
            .map(|(l, r)| format!("({l}, {r})"))
            .collect();
        write!(
            f,
            "AsofJoinExec: type={}, on=[{}], match={} {} {}",
            self.join_type,
            keys.join(", "),
            self.left_time,
            self.op.operator(),
            self.right_time
        )
    }
}

impl ExecutionPlan for AsofJoinExec {
    fn name(&self) -> &'static str {
        "AsofJoinExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.left, &self.right]
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![
            Distribution::UnspecifiedDistribution,
            Distribution::SinglePartition,
        ]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true, false]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        super::visit_exprs(
            self.left_keys
                .iter()
                .chain(&self.right_keys)
                .chain([&self.left_time, &self.right_time]),
            f,
        )
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [left, right]: [Arc<dyn ExecutionPlan>; 2] = match children.try_into() {
            Ok(c) => c,
            Err(_) => return exec_err!("AsofJoinExec takes two children"),
        };
        Ok(Arc::new(Self::new(
            left,
            right,
            self.left_keys.clone(),
            self.right_keys.clone(),
            self.left_time.clone(),
            self.right_time.clone(),
            self.op,
            self.join_type,
            self.schema.clone(),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let mut left = Some(self.left.execute(partition, context.clone())?);
        let cell = self.right_side.clone();
        let (right, right_keys, right_time) = (
            self.right.clone(),
            self.right_keys.clone(),
            self.right_time.clone(),
        );
        let (left_keys, left_time, op, join_type, schema) = (
            self.left_keys.clone(),
            self.left_time.clone(),
            self.op,
            self.join_type,
            self.schema.clone(),
        );
        let build = async move {
            cell.get_or_try_init(|| async move {
                RightSide::build(right, right_keys, right_time, context)
                    .await
                    .map(Arc::new)
            })
            .await
            .cloned()
        };
        let out_schema = schema.clone();
        let stream = futures::stream::once(build).flat_map(move |side| {
            let Some(left) = left.take() else {
                return futures::stream::empty().boxed();
            };
            match side {
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
                Ok(side) => {
                    let (left_keys, left_time, schema) =
                        (left_keys.clone(), left_time.clone(), schema.clone());
                    left.map(move |batch| {
                        probe_batch(
                            &side, &batch?, &left_keys, &left_time, op, join_type, &schema,
                        )
                    })
                    .boxed()
                }
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(out_schema, stream)))
    }
}

fn probe_batch(
    side: &RightSide,
    batch: &RecordBatch,
    keys: &[Arc<dyn PhysicalExpr>],
    time: &Arc<dyn PhysicalExpr>,
    op: MatchOp,
    join_type: JoinType,
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let n = batch.num_rows();
    let key_arrays: Vec<ArrayRef> = keys
        .iter()
        .map(|k| k.evaluate(batch)?.into_array(n))
        .collect::<Result<_>>()?;
    let t = time_keys(&time.evaluate(batch)?.into_array(n)?)?;
    let matches = side.probe(&key_arrays, &t, op)?;
    let (left, matches) = if join_type == JoinType::Inner && matches.null_count() > 0 {
        let keep = datafusion::arrow::compute::is_not_null(&matches)?;
        let left = filter_record_batch(batch, &keep)?;
        let m = datafusion::arrow::compute::filter(&matches, &keep)?;
        (
            left,
            m.as_primitive::<datafusion::arrow::datatypes::UInt32Type>()
                .clone(),
        )
    } else {
        (batch.clone(), matches)
    };
    let mut columns: Vec<ArrayRef> = left.columns().to_vec();
    for c in side.batch.columns() {
        columns.push(take(c.as_ref(), &matches, None)?);
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Plans [`AsofJoinNode`] as [`AsofJoinExec`].
#[derive(Debug, Default)]
pub struct AsofPlanner;

#[async_trait::async_trait]
impl ExtensionPlanner for AsofPlanner {
    async fn plan_extension(
        &self,
        planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn Session,
        planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(node) = node.as_any().downcast_ref::<AsofJoinNode>() else {
            return Ok(None);
        };
        let (Some(l), Some(r)) = (logical_inputs.first(), logical_inputs.get(1)) else {
            return Err(DataFusionError::Internal(
                "AsofJoin takes two inputs".into(),
            ));
        };
        let (ls, rs) = (l.schema(), r.schema());
        let phys =
            |e: &Expr, s: &DFSchema| planner.create_physical_expr(e, s, session, planning_ctx);
        let left_keys = node
            .keys
            .iter()
            .map(|(k, _)| phys(k, ls))
            .collect::<Result<Vec<_>>>()?;
        let right_keys = node
            .keys
            .iter()
            .map(|(_, k)| phys(k, rs))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Arc::new(AsofJoinExec::new(
            physical_inputs[0].clone(),
            physical_inputs[1].clone(),
            left_keys,
            right_keys,
            phys(&node.left_time, ls)?,
            phys(&node.right_time, rs)?,
            node.op,
            node.join_type,
            Arc::new(UserDefinedLogicalNodeCore::schema(node).as_arrow().clone()),
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::MatchOp;

    #[test]
    fn match_positions() {
        let t = [10, 20, 20, 30];
        assert_eq!(MatchOp::GtEq.find(&t, 20), Some(2));
        assert_eq!(MatchOp::Gt.find(&t, 20), Some(0));
        assert_eq!(MatchOp::GtEq.find(&t, 5), None);
        assert_eq!(MatchOp::LtEq.find(&t, 20), Some(1));
        assert_eq!(MatchOp::Lt.find(&t, 20), Some(3));
        assert_eq!(MatchOp::Lt.find(&t, 30), None);
    }
}
