//! `kestrel`: what a Rust cell of the Kestrel kernel links to reach the notebook's SQL session.
//!
//! ```ignore
//! let batches = kestrel::sql("SELECT sensor_id, temperature FROM readings")?;
//! let out: Vec<RecordBatch> = batches.iter().map(my_transform).collect::<Result<_, _>>()?;
//! kestrel::register("features", out)?;   // later SQL cells: SELECT * FROM features
//! kestrel::show(&kestrel::sql("SELECT * FROM features LIMIT 5")?)
//! ```
//!
//! Rust cells run in evcxr's child process; the kernel listens on a local socket named by the `KESTREL_BRIDGE`
//! environment variable. Requests and results cross as Arrow IPC streams, so the batches a cell receives are its
//! own (no shared memory with the kernel) and any arrow 59 version works on either side.
//!
//! Wire format (all integers big-endian): a request is one byte (`Q` query, `R` register), a u32 length and that
//! many bytes of UTF-8 (the SQL, or the table name), and for `R` a u64 length and an Arrow IPC stream. The answer
//! is one byte (0 ok, 1 error), a u64 length and that many bytes: an Arrow IPC stream, or the error's message.

pub use arrow;

use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use std::fmt;
use std::io::{Read, Write};

/// The environment variable holding the kernel's socket path.
pub const BRIDGE_ENV: &str = "KESTREL_BRIDGE";

/// The line a panicking cell prints (see [`__cell_start`]), followed by the panic's message.
pub const PANIC_MARKER: &str = "KESTREL_CELL_PANICKED ";

/// Called by the kernel at the start of every Rust cell: a panic prints its message as one marked line on stdout,
/// which the kernel turns into the cell's error (evcxr itself catches the panic and reports success).
#[doc(hidden)]
pub fn __cell_start() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(a panic without a message)".into());
            println!(
                "{PANIC_MARKER}{}",
                message.replace('\\', "\\\\").replace('\n', "\\n")
            );
        }))
    });
}

/// Request kinds.
pub const QUERY: u8 = b'Q';
pub const REGISTER: u8 = b'R';
/// Answer status.
pub const OK: u8 = 0;
pub const FAILED: u8 = 1;

/// What went wrong: the SQL error as the kernel reports it, or a problem reaching the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Self {
        Error::new(format!("Arrow: {e}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs SQL on the kernel's session (the same tables as SQL cells) and returns the last statement's rows. A
/// statement that returns no rows (CREATE, INSERT, ...) gives an empty vector.
pub fn sql(query: &str) -> Result<Vec<RecordBatch>> {
    let answer = call(QUERY, query, None)?;
    let (_, batches) = decode(&answer)?;
    Ok(batches)
}

/// Makes `batches` the table `name` for later SQL (and Rust) cells, replacing a table of that name that an earlier
/// `register` (or CREATE TABLE) made. Every batch must have the first one's columns.
pub fn register(name: &str, batches: impl AsRef<[RecordBatch]>) -> Result<()> {
    let batches = batches.as_ref();
    let Some(first) = batches.first() else {
        return Err(Error::new(format!(
            "kestrel::register(\"{name}\", ...) got no batches; at least one (it may be empty) gives the table \
             its columns"
        )));
    };
    let schema = first.schema();
    for (i, b) in batches.iter().enumerate().skip(1) {
        if b.schema().fields() != schema.fields() {
            return Err(Error::new(format!(
                "kestrel::register(\"{name}\", ...): batch {i} has columns ({}) but batch 0 has ({})",
                columns(&b.schema()),
                columns(&schema)
            )));
        }
    }
    let ipc = encode(&schema, batches)?;
    call(REGISTER, name, Some(&ipc))?;
    Ok(())
}

/// Rows for display: the last expression of a cell shows them as an HTML table (and text).
pub fn show(batches: &[RecordBatch]) -> Table {
    Table {
        batches: batches.to_vec(),
    }
}

/// Batches displayed as a table by evcxr (`evcxr_display`), at most [`Table::MAX_ROWS`] rows.
pub struct Table {
    batches: Vec<RecordBatch>,
}

impl Table {
    pub const MAX_ROWS: usize = 50;

    fn head(&self) -> (Vec<RecordBatch>, usize) {
        let total: usize = self.batches.iter().map(|b| b.num_rows()).sum();
        let mut left = Self::MAX_ROWS;
        let mut out = Vec::new();
        for b in &self.batches {
            if left == 0 {
                break;
            }
            let take = left.min(b.num_rows());
            out.push(b.slice(0, take));
            left -= take;
        }
        (out, total)
    }

    pub fn to_text(&self) -> String {
        let (head, total) = self.head();
        let mut text = arrow::util::pretty::pretty_format_batches(&head)
            .map(|t| t.to_string())
            .unwrap_or_else(|e| format!("cannot format the rows: {e}"));
        text.push_str(&format!("\n{}", count_line(head_rows(&head), total)));
        text
    }

    pub fn to_html(&self) -> String {
        let (head, total) = self.head();
        let mut html = String::from("<table class=\"kestrel-table\"><thead><tr>");
        let Some(first) = head.first().or(self.batches.first()) else {
            return "<p>(no rows)</p>".into();
        };
        for f in first.schema().fields() {
            html.push_str(&format!(
                "<th>{}<br><small style=\"color:#888\">{}</small></th>",
                escape(f.name()),
                escape(&f.data_type().to_string())
            ));
        }
        html.push_str("</tr></thead><tbody>");
        let options = arrow::util::display::FormatOptions::default().with_null("NULL");
        for b in &head {
            let formatters: Vec<_> = b
                .columns()
                .iter()
                .map(|c| arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &options))
                .collect();
            for r in 0..b.num_rows() {
                html.push_str("<tr>");
                for (c, f) in formatters.iter().enumerate() {
                    let numeric = b.column(c).data_type().is_numeric();
                    let text = match f {
                        Ok(f) => f.value(r).to_string(),
                        Err(e) => format!("?{e}"),
                    };
                    let null = b.column(c).is_null(r);
                    let style = match (null, numeric) {
                        (true, _) => " style=\"color:#999;font-style:italic\"",
                        (false, true) => " style=\"text-align:right\"",
                        _ => "",
                    };
                    html.push_str(&format!("<td{style}>{}</td>", escape(&text)));
                }
                html.push_str("</tr>");
            }
        }
        html.push_str(&format!(
            "</tbody></table><p style=\"color:#888\">{}</p>",
            count_line(head_rows(&head), total)
        ));
        html
    }

    /// evcxr's display protocol: the value of a cell's last expression is shown through this method.
    pub fn evcxr_display(&self) {
        println!(
            "EVCXR_BEGIN_CONTENT text/html\n{}\nEVCXR_END_CONTENT",
            self.to_html()
        );
        println!(
            "EVCXR_BEGIN_CONTENT text/plain\n{}\nEVCXR_END_CONTENT",
            self.to_text()
        );
    }
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

fn head_rows(head: &[RecordBatch]) -> usize {
    head.iter().map(|b| b.num_rows()).sum()
}

fn count_line(shown: usize, total: usize) -> String {
    let s = if total == 1 { "" } else { "s" };
    if shown < total {
        format!("showing {shown} of {total} rows")
    } else {
        format!("{total} row{s}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn columns(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An Arrow IPC stream of `batches`.
pub fn encode(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut w = StreamWriter::try_new(&mut out, schema)?;
        for b in batches {
            w.write(b)?;
        }
        w.finish()?;
    }
    Ok(out)
}

/// The schema and batches of an Arrow IPC stream.
pub fn decode(ipc: &[u8]) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let reader = StreamReader::try_new(std::io::Cursor::new(ipc), None)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    Ok((schema, batches))
}

fn call(op: u8, text: &str, ipc: Option<&[u8]>) -> Result<Vec<u8>> {
    let path = std::env::var_os(BRIDGE_ENV).ok_or_else(|| {
        Error::new(format!(
            "kestrel::sql and kestrel::register work in %%rust cells of the Kestrel kernel ({BRIDGE_ENV} is not set)"
        ))
    })?;
    let lost =
        |e: std::io::Error| Error::new(format!("lost the connection to the Kestrel kernel: {e}"));
    let mut s = std::os::unix::net::UnixStream::connect(&path).map_err(|e| {
        Error::new(format!(
            "cannot reach the Kestrel kernel at {}: {e}",
            std::path::Path::new(&path).display()
        ))
    })?;
    let mut request = Vec::with_capacity(text.len() + 13 + ipc.map_or(0, |i| i.len()));
    request.push(op);
    request.extend_from_slice(&(text.len() as u32).to_be_bytes());
    request.extend_from_slice(text.as_bytes());
    if let Some(ipc) = ipc {
        request.extend_from_slice(&(ipc.len() as u64).to_be_bytes());
        request.extend_from_slice(ipc);
    }
    s.write_all(&request).map_err(lost)?;
    s.flush().map_err(lost)?;
    let mut head = [0u8; 9];
    s.read_exact(&mut head).map_err(lost)?;
    let mut len = [0u8; 8];
    len.copy_from_slice(&head[1..]);
    let mut body = vec![0u8; u64::from_be_bytes(len) as usize];
    s.read_exact(&mut body).map_err(lost)?;
    match head[0] {
        OK => Ok(body),
        _ => Err(Error::new(String::from_utf8_lossy(&body).into_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("<a>"), None])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn batches_round_trip_through_ipc() {
        let b = batch();
        let ipc = encode(&b.schema(), &[b.clone(), b.clone()]).unwrap();
        let (schema, batches) = decode(&ipc).unwrap();
        assert_eq!(schema, b.schema());
        assert_eq!(batches, vec![b.clone(), b]);
    }

    #[test]
    fn tables_show_escaped_values_and_nulls() {
        let t = show(&[batch()]);
        let html = t.to_html();
        assert!(
            html.contains("&lt;a&gt;") && html.contains(">NULL</td>"),
            "{html}"
        );
        assert!(t.to_text().contains("2 rows"));
    }

    #[test]
    fn outside_the_kernel_the_calls_say_why_they_fail() {
        if std::env::var_os(BRIDGE_ENV).is_none() {
            let e = sql("SELECT 1").unwrap_err();
            assert!(e.message().contains("KESTREL_BRIDGE is not set"), "{e}");
        }
        let e = register("t", Vec::<RecordBatch>::new()).unwrap_err();
        assert!(e.message().contains("got no batches"), "{e}");
    }
}
