//! `SERIAL`, `BIGSERIAL`, `SMALLSERIAL`: an integer column whose DEFAULT is the next number of a counter of its
//! own, as PostgreSQL's owned sequence. CREATE TABLE is rewritten on the parsed statement: the column becomes
//! `INT`/`BIGINT`/`SMALLINT NOT NULL DEFAULT __kestrel_serial('table.column')`, and the counter starts at 1.
//! An INSERT that gives the column a value leaves the counter alone (PostgreSQL does the same).

use datafusion::arrow::array::Int64Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::sql::sqlparser::ast::{
    self, ColumnOption, ColumnOptionDef, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentList, FunctionArguments, Ident, ObjectName, Value,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const SERIAL: &str = "__kestrel_serial";

/// The session's counters, by `table.column`.
#[derive(Debug, Default)]
pub struct Counters(Mutex<HashMap<String, i64>>);

impl Counters {
    fn take(&self, key: &str, n: usize) -> Result<i64> {
        let Ok(mut map) = self.0.lock() else {
            return exec_err!("serial counters poisoned");
        };
        let next = map.entry(key.to_string()).or_insert(1);
        let first = *next;
        *next += n as i64;
        Ok(first)
    }

    fn reset(&self, key: &str) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(key.to_string(), 1);
        }
    }
}

/// Rewrites SERIAL columns of a CREATE TABLE; returns whether there were any.
pub fn rewrite_create_table(statement: &mut ast::Statement, counters: &Counters) -> bool {
    let ast::Statement::CreateTable(create) = statement else {
        return false;
    };
    let mut any = false;
    let table = create.name.to_string();
    for column in &mut create.columns {
        let Some(int) = super::types::serial_type(&column.data_type) else {
            continue;
        };
        any = true;
        column.data_type = match int {
            DataType::Int16 => ast::DataType::SmallInt(None),
            DataType::Int32 => ast::DataType::Int(None),
            _ => ast::DataType::BigInt(None),
        };
        let key = format!("{table}.{}", column.name.value);
        counters.reset(&key);
        let has_default = column
            .options
            .iter()
            .any(|o| matches!(o.option, ColumnOption::Default(_)));
        if !has_default {
            column.options.push(ColumnOptionDef {
                name: None,
                option: ColumnOption::Default(serial_call(&key)),
            });
        }
        if !column
            .options
            .iter()
            .any(|o| matches!(o.option, ColumnOption::NotNull))
        {
            column.options.push(ColumnOptionDef {
                name: None,
                option: ColumnOption::NotNull,
            });
        }
    }
    any
}

fn serial_call(key: &str) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(SERIAL)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::value(
                Value::SingleQuotedString(key.to_string()),
            )))],
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

#[derive(Debug)]
struct Serial {
    signature: Signature,
    counters: Arc<Counters>,
}

impl PartialEq for Serial {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.counters, &other.counters)
    }
}
impl Eq for Serial {}
impl std::hash::Hash for Serial {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        SERIAL.hash(state)
    }
}

impl ScalarUDFImpl for Serial {
    fn name(&self) -> &str {
        SERIAL
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let key = match args.args.first() {
            Some(ColumnarValue::Scalar(ScalarValue::Utf8(Some(k)))) => k.clone(),
            _ => return exec_err!("{SERIAL} expects the column's name"),
        };
        let first = self.counters.take(&key, args.number_rows)?;
        Ok(ColumnarValue::Array(Arc::new(
            Int64Array::from_iter_values(first..first + args.number_rows as i64),
        )))
    }
}

pub fn udf(counters: Arc<Counters>) -> ScalarUDF {
    ScalarUDF::new_from_impl(Serial {
        signature: Signature::exact(vec![DataType::Utf8], Volatility::Volatile),
        counters,
    })
}
