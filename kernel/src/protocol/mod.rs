//! The Jupyter side of the kernel: sockets, signing, the message loop and the bookkeeping every kernel does
//! (execution count, busy/idle, execute_input, replies, history, interrupt, shutdown).
//!
//! A language plugs in by implementing [`Interpreter`]; it never touches a socket and publishes output through the
//! [`Publisher`] it is handed. This layer knows nothing of SQL. Offsets given to and taken from the interpreter are
//! byte offsets into the code; the conversion to and from the protocol's code-point offsets happens here.
//!
//! Sockets and framing use the pure-Rust `zeromq` crate; the connection file is read with `jupyter-protocol`'s
//! `ConnectionInfo`. Signing and the message envelope are in [`wire`]: see the README for why.

pub mod history;
pub mod publisher;
pub mod server;
pub mod wire;

pub use publisher::Publisher;
pub use server::serve;

use serde_json::{Map, Value};
use std::future::Future;

/// A MIME bundle: `{"text/plain": "...", "text/html": "..."}`.
pub type MimeBundle = Map<String, Value>;

/// What running a cell produced.
#[derive(Debug)]
pub enum ExecuteOutcome {
    /// Success; the bundle, if any, is the cell's result (execute_result).
    Ok(Option<MimeBundle>),
    /// Failure, published as an `error` message and returned in the reply.
    Error {
        ename: String,
        evalue: String,
        traceback: Vec<String>,
    },
}

/// Candidates replacing `code[start..end]` (byte offsets).
#[derive(Debug, Default)]
pub struct CompleteOutcome {
    pub matches: Vec<String>,
    pub start: usize,
    pub end: usize,
    /// `(text, type, signature)` per match, shown by JupyterLab's completer.
    pub types: Vec<(String, String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsComplete {
    Complete,
    Incomplete,
    Invalid,
}

/// The static description of the kernel and its language, for kernel_info_reply.
#[derive(Debug, Clone)]
pub struct KernelInfo {
    pub implementation: String,
    pub implementation_version: String,
    pub language_info: Value,
    pub banner: String,
    pub help_links: Value,
}

/// A language behind the protocol. Offsets are byte offsets into `code`.
pub trait Interpreter: Send + Sync + 'static {
    fn kernel_info(&self) -> KernelInfo;

    /// Runs a cell. Cancelling the returned future (on interrupt) must leave the interpreter usable.
    fn execute(&self, code: String, out: Publisher) -> impl Future<Output = ExecuteOutcome> + Send;

    fn complete(&self, code: String, cursor: usize)
        -> impl Future<Output = CompleteOutcome> + Send;

    /// Documentation for the name at `cursor`, or `None` when nothing is known of it.
    fn inspect(
        &self,
        code: String,
        cursor: usize,
    ) -> impl Future<Output = Option<MimeBundle>> + Send;

    fn is_complete(&self, code: &str) -> IsComplete;

    /// The user asked for an interrupt (whether or not a cell runs): stop background work such as watches.
    fn interrupt(&self) {}
}

/// Code-point offset → byte offset (clamped to the end of `text`).
pub fn char_to_byte(text: &str, chars: usize) -> usize {
    text.char_indices()
        .nth(chars)
        .map_or(text.len(), |(i, _)| i)
}

/// Byte offset → code-point offset.
pub fn byte_to_char(text: &str, byte: usize) -> usize {
    let byte = byte.min(text.len());
    text.char_indices().take_while(|&(i, _)| i < byte).count()
}

#[cfg(test)]
mod offset_tests {
    use super::*;

    #[test]
    fn offsets_convert_both_ways() {
        let s = "SELECT 'ü→', x";
        for chars in 0..=s.chars().count() {
            assert_eq!(byte_to_char(s, char_to_byte(s, chars)), chars);
        }
        assert_eq!(char_to_byte(s, 100), s.len());
        assert_eq!(char_to_byte(s, 9), "SELECT 'ü".len());
    }
}

#[cfg(test)]
mod tests;
