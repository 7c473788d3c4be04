//! Errors as a user sees them: what kind of failure (parse, plan, execution) and what was wrong.
//!
//! DataFusion wraps its errors in layers (context, diagnostics, shared, collections); we peel them to find the
//! root, classify it, and keep DataFusion's message for the root, without its "Error during planning:" prefixes.

use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;
use std::fmt;

/// The stage at which a statement failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The text is not valid SQL (tokenizer or parser).
    Parse,
    /// Valid SQL that cannot be planned: unknown table or column, type mismatch, unsupported statement.
    Plan,
    /// The plan failed while running: bad file, arithmetic overflow, out of memory, ...
    Execution,
    /// A bug in Kestrel or DataFusion: a panic or an internal error.
    Internal,
}

impl ErrorKind {
    /// The name shown to users, e.g. the Jupyter `ename`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Parse => "ParseError",
            ErrorKind::Plan => "PlanError",
            ErrorKind::Execution => "ExecutionError",
            ErrorKind::Internal => "InternalError",
        }
    }
}

/// An error from running SQL, classified for the user.
#[derive(Debug, Clone)]
pub struct EngineError {
    pub kind: ErrorKind,
    /// What was wrong, in DataFusion's words without the error-kind prefix.
    pub message: String,
    /// 1-based position of the failing statement in its cell, and how many the cell holds.
    pub statement: Option<(usize, usize)>,
}

impl EngineError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            statement: None,
        }
    }

    /// Names the failing statement (0-based `index`) of a cell of `count` statements, when there are several.
    pub fn in_statement(mut self, index: usize, count: usize) -> Self {
        if count > 1 {
            self.statement = Some((index + 1, count));
        }
        self
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.message)?;
        if let Some((i, n)) = self.statement {
            write!(f, " (statement {i} of {n})")?;
        }
        Ok(())
    }
}

impl std::error::Error for EngineError {}

impl From<DataFusionError> for EngineError {
    fn from(err: DataFusionError) -> Self {
        classify(&err)
    }
}

fn classify(err: &DataFusionError) -> EngineError {
    use DataFusionError as E;
    match err {
        // Wrappers: the root says what went wrong. A context is kept when it adds something.
        E::Context(context, inner) => {
            let mut e = classify(inner);
            e.message = format!("{context}: {}", e.message);
            e
        }
        E::Diagnostic(_, inner) => classify(inner),
        E::Shared(inner) => classify(inner),
        E::Collection(errs) => match errs.first() {
            Some(first) => classify(first),
            None => EngineError::new(ErrorKind::Internal, "empty error collection"),
        },
        E::SQL(parser_error, _) => EngineError::new(ErrorKind::Parse, parser_message(parser_error)),
        E::Plan(_) | E::SchemaError(..) | E::NotImplemented(_) | E::Configuration(_) => {
            EngineError::new(ErrorKind::Plan, err.message().trim())
        }
        E::Internal(msg) => EngineError::new(ErrorKind::Internal, msg.trim()),
        E::ExecutionJoin(join) if join.is_panic() => EngineError::new(
            ErrorKind::Internal,
            format!("a query task panicked: {join}"),
        ),
        // An external error may itself wrap a DataFusion error (e.g. from a table provider).
        E::External(inner) => match inner.downcast_ref::<DataFusionError>() {
            Some(df) => classify(df),
            None => EngineError::new(ErrorKind::Execution, inner.to_string()),
        },
        _ => EngineError::new(ErrorKind::Execution, err.message().trim()),
    }
}

fn parser_message(err: &ParserError) -> String {
    match err {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m.clone(),
        ParserError::RecursionLimitExceeded => "the statement is nested too deeply".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_and_kind_survive_wrapping() {
        let err = DataFusionError::Context(
            "reading data.csv".into(),
            Box::new(DataFusionError::Plan("table 'x' not found".into())),
        );
        let e = EngineError::from(err);
        assert_eq!(e.kind, ErrorKind::Plan);
        assert_eq!(e.message, "reading data.csv: table 'x' not found");
    }

    #[test]
    fn parse_errors_lose_the_debug_wrapper() {
        let err = DataFusionError::SQL(
            Box::new(ParserError::ParserError(
                "Expected: an SQL statement, found: SELEC".into(),
            )),
            None,
        );
        let e = EngineError::from(err);
        assert_eq!(e.kind, ErrorKind::Parse);
        assert_eq!(e.message, "Expected: an SQL statement, found: SELEC");
        assert_eq!(
            e.to_string(),
            "ParseError: Expected: an SQL statement, found: SELEC"
        );
    }
}
