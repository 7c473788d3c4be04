//! Vector values: the `FLOAT_VECTOR(n)` type, reading any list-shaped Arrow array as rows of `f32`, and the one
//! conversion (`to_vector`) that every cast to a vector type goes through, so that a wrong length or a NULL element
//! is an error that names the problem instead of a silently padded or nulled value.

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array, GenericListArray, OffsetSizeTrait,
};
use datafusion::arrow::buffer::{NullBuffer, ScalarBuffer};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float32Type};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{exec_err, plan_err, DataFusionError, Result, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::expr::{Cast, ScalarFunction, TryCast};
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use std::sync::Arc;

/// The largest vector we accept. pgvector stores 16,000 dimensions; CrateDB stops at 2,048.
pub const MAX_DIMS: usize = 16_000;

/// Arrow type of `FLOAT_VECTOR(dims)`: what pyarrow writes for `pa.list_(pa.float32(), dims)`.
pub fn vector_type(dims: usize) -> DataType {
    DataType::FixedSizeList(
        Arc::new(Field::new_list_field(DataType::Float32, true)),
        dims as i32,
    )
}

/// The dimension of a vector column's type (`FixedSizeList<Float32, n>`), or `None` for any other type.
pub fn vector_dims(data_type: &DataType) -> Option<usize> {
    match data_type {
        DataType::FixedSizeList(field, n) if field.data_type() == &DataType::Float32 => {
            Some(*n as usize)
        }
        _ => None,
    }
}

/// Whether a value of this type can be read as vectors: a list of numbers of any list flavour.
pub fn is_vector_like(data_type: &DataType) -> bool {
    match data_type {
        DataType::FixedSizeList(f, _) | DataType::List(f) | DataType::LargeList(f) => {
            f.data_type().is_numeric() || f.data_type() == &DataType::Null
        }
        DataType::Null => true,
        _ => false,
    }
}

/// Validates a SQL-level dimension.
pub fn check_dims(dims: i64) -> Result<usize> {
    if dims < 1 || dims as usize > MAX_DIMS {
        return plan_err!("FLOAT_VECTOR dimension must be between 1 and {MAX_DIMS}, got {dims}");
    }
    Ok(dims as usize)
}

/// Rows of `f32` vectors of one dimension, read from a vector column (zero copy) or converted from a list of
/// numbers. A NULL row is `None`.
#[derive(Debug, Clone)]
pub struct Vectors {
    values: ScalarBuffer<f32>,
    dim: usize,
    nulls: Option<NullBuffer>,
    len: usize,
}

impl Vectors {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The values of rows `range`, row-major (NULL rows hold unspecified values).
    pub fn rows(&self, range: std::ops::Range<usize>) -> &[f32] {
        &self.values[range.start * self.dim..range.end * self.dim]
    }

    pub fn is_null(&self, row: usize) -> bool {
        self.nulls.as_ref().is_some_and(|n| n.is_null(row))
    }

    #[inline]
    pub fn get(&self, row: usize) -> Option<&[f32]> {
        if self.nulls.as_ref().is_some_and(|n| n.is_null(row)) {
            return None;
        }
        Some(&self.values[row * self.dim..(row + 1) * self.dim])
    }

    /// Reads `array` as vectors. `what` names the argument in errors ("the first argument of l2_distance").
    /// With `expected`, every vector must have that many values.
    pub fn read(array: &ArrayRef, what: &str, expected: Option<usize>) -> Result<Self> {
        match array.data_type() {
            DataType::FixedSizeList(_, n) => {
                let list = array.as_fixed_size_list();
                let dim = *n as usize;
                if let Some(want) = expected {
                    if want != dim && list.len() > list.null_count() {
                        return wrong_length(
                            what,
                            want,
                            dim,
                            first_valid(list.nulls()),
                            list.len(),
                        );
                    }
                }
                let child = list.values();
                if child.data_type() == &DataType::Float32 {
                    check_no_null_elements(child.as_ref(), list.nulls(), dim, what, list.len())?;
                    let values = child.as_primitive::<Float32Type>().values().clone();
                    let values = values.slice(0, list.len() * dim);
                    return Ok(Self::new(values, dim, list.nulls().cloned(), list.len()));
                }
                let floats = cast(child, &DataType::Float32)?;
                check_no_null_elements(floats.as_ref(), list.nulls(), dim, what, list.len())?;
                let values = floats.as_primitive::<Float32Type>().values().clone();
                Ok(Self::new(values, dim, list.nulls().cloned(), list.len()))
            }
            DataType::List(_) => from_list(array.as_list::<i32>(), what, expected),
            DataType::LargeList(_) => from_list(array.as_list::<i64>(), what, expected),
            DataType::Null => Ok(Self::new(
                ScalarBuffer::from(Vec::new()),
                expected.unwrap_or(0),
                Some(NullBuffer::new_null(array.len())),
                array.len(),
            )
            .with_zero_values()),
            other => exec_err!(
                "{what} must be a vector (FLOAT_VECTOR or an array of numbers), got {other}"
            ),
        }
    }

    fn new(values: ScalarBuffer<f32>, dim: usize, nulls: Option<NullBuffer>, len: usize) -> Self {
        Self {
            values,
            dim,
            nulls,
            len,
        }
    }

    fn with_zero_values(mut self) -> Self {
        self.values = ScalarBuffer::from(vec![0f32; self.len * self.dim]);
        self
    }

    /// NaN and infinite values cannot be compared by distance: an error naming the row and element.
    pub fn check_finite(&self, what: &str) -> Result<()> {
        for row in 0..self.len {
            if let Some(v) = self.get(row) {
                if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                    let place = if self.len > 1 {
                        format!("row {}, element {}", row + 1, i + 1)
                    } else {
                        format!("element {}", i + 1)
                    };
                    return exec_err!("{what}: a vector cannot contain NaN or infinity ({place})");
                }
            }
        }
        Ok(())
    }

    /// Reads one constant (a literal or a folded expression) as a single vector.
    pub fn scalar(
        value: &ScalarValue,
        what: &str,
        expected: Option<usize>,
    ) -> Result<Option<Vec<f32>>> {
        let array = value.to_array_of_size(1)?;
        let vectors = Self::read(&array, what, expected)?;
        vectors.check_finite(what)?;
        Ok(vectors.get(0).map(|v| v.to_vec()))
    }

    /// Converts to a `FLOAT_VECTOR(dim)` array.
    pub fn into_array(self) -> FixedSizeListArray {
        let values = Float32Array::new(self.values, None);
        FixedSizeListArray::new(
            Arc::new(Field::new_list_field(DataType::Float32, true)),
            self.dim as i32,
            Arc::new(values),
            self.nulls,
        )
    }
}

fn first_valid(nulls: Option<&NullBuffer>) -> usize {
    nulls.and_then(|n| n.valid_indices().next()).unwrap_or(0)
}

/// " (row N)" where there are several rows to tell apart.
fn at_row(row: usize, rows: usize) -> String {
    if rows > 1 {
        format!(" (row {})", row + 1)
    } else {
        String::new()
    }
}

fn wrong_length<T>(what: &str, want: usize, got: usize, row: usize, rows: usize) -> Result<T> {
    exec_err!(
        "{what}: expected a vector of {want} values (FLOAT_VECTOR({want})), got {got} values{}",
        at_row(row, rows)
    )
}

fn null_element<T>(what: &str, row: usize, rows: usize, element: usize) -> Result<T> {
    let place = if rows > 1 {
        format!("row {}, element {}", row + 1, element + 1)
    } else {
        format!("element {}", element + 1)
    };
    exec_err!(
        "{what}: a vector cannot contain NULL ({place}); use NULL for the whole vector instead"
    )
}

fn check_no_null_elements(
    child: &dyn Array,
    rows: Option<&NullBuffer>,
    dim: usize,
    what: &str,
    len: usize,
) -> Result<()> {
    let Some(child_nulls) = child.logical_nulls() else {
        return Ok(());
    };
    if child_nulls.null_count() == 0 {
        return Ok(());
    }
    for i in (0..child_nulls.len()).filter(|&i| child_nulls.is_null(i)) {
        let row = i / dim.max(1);
        if rows.is_none_or(|r| r.is_valid(row)) {
            return null_element(what, row, len, i % dim.max(1));
        }
    }
    Ok(())
}

fn from_list<O: OffsetSizeTrait>(
    list: &GenericListArray<O>,
    what: &str,
    expected: Option<usize>,
) -> Result<Vectors> {
    let mut dim = expected;
    let mut first_row = 0;
    let offsets = list.value_offsets();
    for row in 0..list.len() {
        if list.is_null(row) {
            continue;
        }
        let n = (offsets[row + 1] - offsets[row]).as_usize();
        match dim {
            None => {
                dim = Some(n);
                first_row = row;
            }
            Some(d) if d != n => {
                if expected.is_some() {
                    return wrong_length(what, d, n, row, list.len());
                }
                return exec_err!(
                    "{what}: vectors of different lengths (row {} has {d} values, row {} has {n})",
                    first_row + 1,
                    row + 1
                );
            }
            Some(_) => {}
        }
    }
    let dim = dim.unwrap_or(0);
    let floats = cast(list.values(), &DataType::Float32)?;
    let floats = floats.as_primitive::<Float32Type>();
    let mut values = Vec::with_capacity(list.len() * dim);
    for row in 0..list.len() {
        if list.is_null(row) {
            values.extend(std::iter::repeat_n(0f32, dim));
            continue;
        }
        let (start, end) = (offsets[row].as_usize(), offsets[row + 1].as_usize());
        if floats.null_count() > 0 {
            if let Some(i) = (start..end).find(|&i| floats.is_null(i)) {
                return null_element(what, row, list.len(), i - start);
            }
        }
        values.extend_from_slice(&floats.values()[start..end]);
    }
    Ok(Vectors::new(
        ScalarBuffer::from(values),
        dim,
        list.nulls().cloned(),
        list.len(),
    ))
}

/// `to_vector(value, dims)`: the checked conversion behind `CAST(x AS FLOAT_VECTOR(n))` and INSERT into a vector
/// column. Not meant to be called by name (it is hidden from completion by its `__` prefix).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ToVector {
    signature: Signature,
}

pub const TO_VECTOR: &str = "__kestrel_to_vector";

impl ToVector {
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            signature: Signature::any(2, Volatility::Immutable),
        })
    }

    fn dims_arg(args: &[ColumnarValue]) -> Result<usize> {
        match args.get(1) {
            Some(ColumnarValue::Scalar(ScalarValue::Int64(Some(n)))) => check_dims(*n),
            _ => exec_err!("{TO_VECTOR} expects the dimension as its second argument"),
        }
    }
}

impl ScalarUDFImpl for ToVector {
    fn name(&self) -> &str {
        TO_VECTOR
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    // Named like the CAST it replaces, so a result column keeps its name.
    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        Ok(args
            .first()
            .map(|a| a.schema_name().to_string())
            .unwrap_or_default())
    }

    fn display_name(&self, args: &[Expr]) -> Result<String> {
        Ok(args.first().map(|a| a.to_string()).unwrap_or_default())
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Err(DataFusionError::Internal(
            "to_vector's type comes from its arguments".into(),
        ))
    }

    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> Result<datafusion::arrow::datatypes::FieldRef> {
        let dims = match args.scalar_arguments.get(1) {
            Some(Some(ScalarValue::Int64(Some(n)))) => check_dims(*n)?,
            _ => return plan_err!("{TO_VECTOR} expects a constant dimension"),
        };
        Ok(Arc::new(Field::new(self.name(), vector_type(dims), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let dims = Self::dims_arg(&args.args)?;
        let what = format!("FLOAT_VECTOR({dims})");
        match &args.args[0] {
            ColumnarValue::Scalar(value) => {
                let array = value.to_array_of_size(1)?;
                let out = convert_array(&array, &what, dims)?;
                Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
            }
            ColumnarValue::Array(array) => {
                Ok(ColumnarValue::Array(convert_array(array, &what, dims)?))
            }
        }
    }
}

fn convert_array(array: &ArrayRef, what: &str, dims: usize) -> Result<ArrayRef> {
    if array.data_type() == &DataType::Null {
        return Ok(datafusion::arrow::array::new_null_array(
            &vector_type(dims),
            array.len(),
        ));
    }
    if !is_vector_like(array.data_type()) {
        return exec_err!(
            "cannot convert {} to {what}: expected an array of numbers such as [0.1, 0.2]",
            array.data_type()
        );
    }
    let vectors = Vectors::read(array, what, Some(dims))?;
    vectors.check_finite(what)?;
    if vectors.dim() != dims {
        // Only NULL rows: keep the declared dimension.
        return Ok(datafusion::arrow::array::new_null_array(
            &vector_type(dims),
            array.len(),
        ));
    }
    Ok(Arc::new(vectors.into_array()))
}

/// Routes every cast to `FLOAT_VECTOR(n)` (explicit CAST, INSERT into a vector column, CREATE TABLE AS) through
/// [`ToVector`], which checks lengths and NULL elements; Arrow's own cast pads nothing but reports neither.
#[derive(Debug, Default)]
pub struct VectorCasts;

impl AnalyzerRule for VectorCasts {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        let to_vector = Arc::new(ToVector::udf());
        plan.transform_up_with_subqueries(|plan| {
            plan.map_expressions(|expr| {
                expr.transform_up(|e| {
                    let (inner, data_type) = match &e {
                        Expr::Cast(Cast { expr, field }) => (expr, field.data_type()),
                        Expr::TryCast(TryCast { expr, field }) => (expr, field.data_type()),
                        _ => return Ok(Transformed::no(e)),
                    };
                    let Some(dims) = vector_dims(data_type) else {
                        return Ok(Transformed::no(e));
                    };
                    if data_type != &vector_type(dims) {
                        return Ok(Transformed::no(e));
                    }
                    let call = Expr::ScalarFunction(ScalarFunction::new_udf(
                        to_vector.clone(),
                        vec![
                            (**inner).clone(),
                            Expr::Literal(ScalarValue::Int64(Some(dims as i64)), None),
                        ],
                    ));
                    Ok(Transformed::yes(call))
                })
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "kestrel_vector_casts"
    }
}
