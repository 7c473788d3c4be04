//! Messages → Arrow rows. Every message becomes exactly one row or exactly one dead letter: a micro-batch is
//! decoded in one pass when it is clean (the common case), and message by message when it is not, so one
//! malformed message never costs its neighbours.

use super::flat::FlatJson;
use super::options::Format;
use datafusion::arrow::array::{
    Array, ArrayRef, BinaryBuilder, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray,
    StringBuilder, TimestampMillisecondArray,
};
use datafusion::arrow::compute::{cast, concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::error::ArrowError;
use std::sync::Arc;

/// The metadata columns every live table has (after the declared ones unless declared).
pub const META: [&str; 4] = ["_partition", "_offset", "_timestamp", "_key"];

pub fn meta_field(name: &str) -> Option<Field> {
    Some(match name {
        "_partition" => Field::new(name, DataType::Int32, true),
        "_offset" => Field::new(name, DataType::Int64, true),
        "_timestamp" => Field::new(
            name,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        "_key" => Field::new(name, DataType::Utf8, true),
        _ => return None,
    })
}

/// A micro-batch of consumed messages, stored contiguously (no allocation per message). Each value is followed
/// by a newline in `data`, so a run of messages is fed to a streaming decoder as it lies.
#[derive(Debug, Default)]
pub struct Messages {
    data: Vec<u8>,
    keys_data: Vec<u8>,
    /// (start, end) of each value in `data` (the newline after it not included); `None` for a message without
    /// a value (a tombstone).
    values: Vec<Option<(usize, usize)>>,
    keys: Vec<Option<(usize, usize)>>,
    pub partition: Vec<i32>,
    pub offset: Vec<i64>,
    /// Kafka timestamps (ms since the epoch); `None` where the message has none.
    pub timestamp: Vec<Option<i64>>,
}

impl Messages {
    pub fn push(
        &mut self,
        partition: i32,
        offset: i64,
        timestamp: Option<i64>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) {
        self.keys.push(key.map(|k| {
            let start = self.keys_data.len();
            self.keys_data.extend_from_slice(k);
            (start, self.keys_data.len())
        }));
        self.values.push(value.map(|v| {
            let start = self.data.len();
            self.data.extend_from_slice(v);
            let end = self.data.len();
            self.data.push(b'\n');
            (start, end)
        }));
        self.partition.push(partition);
        self.offset.push(offset);
        self.timestamp.push(timestamp);
    }

    pub fn len(&self) -> usize {
        self.offset.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offset.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.data.len() + self.keys_data.len()
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.keys_data.clear();
        self.values.clear();
        self.keys.clear();
        self.partition.clear();
        self.offset.clear();
        self.timestamp.clear();
    }

    pub fn value(&self, i: usize) -> Option<&[u8]> {
        self.values[i].map(|(s, e)| &self.data[s..e])
    }

    /// The value with the newline after it.
    fn value_line(&self, i: usize) -> Option<&[u8]> {
        self.values[i].map(|(s, e)| &self.data[s..=e])
    }

    pub fn key(&self, i: usize) -> Option<&[u8]> {
        self.keys[i].map(|(s, e)| &self.keys_data[s..e])
    }
}

/// What a micro-batch became.
#[derive(Debug, Default)]
pub struct Decoded {
    /// The rows (the table's schema), in message order.
    pub batch: Option<RecordBatch>,
    /// Messages that did not decode: (index in the micro-batch, why).
    pub dead: Vec<(usize, String)>,
}

/// What a micro-batch's JSON messages have become so far: parts of rows in message order, the message of each
/// row, and dead letters.
struct Out<'a> {
    parts: Vec<RecordBatch>,
    rows: Vec<usize>,
    dead: &'a mut Vec<(usize, String)>,
}

impl Out<'_> {
    /// Rows decoded from `messages`, one each.
    fn add(&mut self, b: RecordBatch, messages: std::ops::Range<usize>) {
        self.parts.push(b);
        self.rows.extend(messages);
    }
}

/// Decodes message values of one format into a table's rows.
pub struct Decoder {
    format: Format,
    delimiter: u8,
    /// The table's schema (declared columns and metadata columns).
    schema: SchemaRef,
    /// The declared non-metadata columns as decoded from the value: timestamps are read as text first (to accept
    /// RFC 3339 strings and epoch milliseconds alike).
    value_schema: SchemaRef,
    json: Option<arrow_json::reader::Decoder>,
    /// The fast path for flat objects of scalar columns (`None` when a column needs the general decoder).
    flat: Option<FlatJson>,
    line: Vec<u8>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("format", &self.format)
            .finish()
    }
}

fn is_time(t: &DataType) -> bool {
    matches!(t, DataType::Timestamp(_, _))
}

impl Decoder {
    pub fn new(format: Format, delimiter: u8, schema: SchemaRef) -> Result<Self, ArrowError> {
        let value_fields: Vec<Field> = schema
            .fields()
            .iter()
            .filter(|f| !META.contains(&f.name().as_str()))
            .map(|f| {
                let mut f = f.as_ref().clone();
                if is_time(f.data_type()) {
                    f = f.with_data_type(DataType::Utf8);
                }
                // Nullability is checked after decoding, with a message that names the column.
                f.with_nullable(true)
            })
            .collect();
        let value_schema = Arc::new(Schema::new(value_fields));
        let mut d = Self {
            format,
            delimiter,
            schema,
            value_schema,
            json: None,
            flat: None,
            line: Vec::new(),
        };
        if format == Format::Json {
            d.json = Some(d.json_decoder()?);
            d.flat = FlatJson::new(&d.value_schema);
        }
        Ok(d)
    }

    /// Whether flat JSON objects take the fast path (every column is of a type it decodes).
    pub fn fast_path(&self) -> bool {
        self.flat.is_some()
    }

    /// The same decoder without the fast path for flat JSON objects (every message through arrow-json): the
    /// reference the fast path is tested and measured against.
    pub fn without_fast_path(mut self) -> Self {
        self.flat = None;
        self
    }

    fn json_decoder(&self) -> Result<arrow_json::reader::Decoder, ArrowError> {
        arrow_json::ReaderBuilder::new(self.value_schema.clone())
            .with_coerce_primitive(true)
            .with_batch_size(1 << 20)
            .build_decoder()
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Decodes a micro-batch.
    pub fn decode(&mut self, m: &Messages) -> Decoded {
        let mut out = Decoded::default();
        if m.is_empty() {
            return out;
        }
        let values = match self.format {
            Format::Raw => self.decode_raw(m, &mut out.dead),
            Format::Json => self.decode_json(m, &mut out.dead),
            Format::Csv => self.decode_values(m, &mut out.dead),
        };
        let Some((values, rows)) = values else {
            return out;
        };
        match self.assemble(m, values, &rows, &mut out.dead) {
            Ok(batch) => out.batch = batch,
            Err(e) => {
                // Cannot happen for data the decoders accepted; never lose the messages if it does.
                for &i in &rows {
                    out.dead
                        .push((i, format!("internal error assembling rows: {e}")));
                }
            }
        }
        out.dead.sort_by_key(|d| d.0);
        out
    }

    /// JSON. Flat objects of the declared scalar columns (the common case) are parsed straight into columns by
    /// [`FlatJson`]; a message it refuses starts a run of messages for arrow-json's decoder, up to the next
    /// message it takes. Rows stay in message order.
    fn decode_json(
        &mut self,
        m: &Messages,
        dead: &mut Vec<(usize, String)>,
    ) -> Option<(RecordBatch, Vec<usize>)> {
        let mut out = Out {
            parts: Vec::new(),
            rows: Vec::new(),
            dead,
        };
        match self.flat.take() {
            None => self.json_range(m, 0, m.len(), &mut out),
            Some(mut flat) => {
                let n = m.len();
                // messages fast_from..i are rows in `flat`
                let (mut fast_from, mut i) = (0, 0);
                while i < n {
                    if flat.push(m.value(i)) {
                        i += 1;
                        continue;
                    }
                    Self::flat_rows(&mut flat, fast_from, i, &mut out);
                    let slow_from = i;
                    i += 1;
                    while i < n && !flat.push(m.value(i)) {
                        i += 1;
                    }
                    self.json_range(m, slow_from, i, &mut out);
                    // message i, if any, is flat's first row now
                    fast_from = i;
                    i += 1;
                }
                Self::flat_rows(&mut flat, fast_from, n, &mut out);
                self.flat = Some(flat);
            }
        }
        let Out {
            mut parts,
            rows,
            dead,
        } = out;
        if rows.is_empty() {
            return None;
        }
        let all = if parts.len() == 1 {
            Ok(parts.swap_remove(0))
        } else {
            concat_batches(&self.value_schema, &parts)
        };
        match all {
            Ok(b) => Some((b, rows)),
            Err(e) => {
                for i in rows {
                    dead.push((i, format!("internal error: {e}")));
                }
                None
            }
        }
    }

    /// The fast path's rows, messages `from..to`, as one part.
    fn flat_rows(flat: &mut FlatJson, from: usize, to: usize, out: &mut Out<'_>) {
        if flat.rows() == 0 {
            return;
        }
        match flat.finish() {
            Ok(b) => out.add(b, from..to),
            // cannot happen (the columns are built for the schema); never lose the messages if it does
            Err(e) => out
                .dead
                .extend((from..to).map(|i| (i, format!("internal error: {e}")))),
        }
    }

    /// Messages `from..to` through arrow-json's streaming decoder, one by one: after each the decoder must hold
    /// exactly one more complete record, so every row belongs to its message, whatever the whitespace inside
    /// it. A message that does not (not JSON, empty, two records, cut off) is decoded alone, into a row or a
    /// dead letter, after the run before it is decoded again from a fresh decoder (the failed message left the
    /// decoder mid-value; the run's bytes were fine). A value that does not convert to its column only shows when
    /// a run becomes columns: the run is halved until that message is found. A clean run costs one pass.
    fn json_range(&mut self, m: &Messages, from: usize, to: usize, out: &mut Out<'_>) {
        let mut start = from;
        if self.json.as_ref().is_none_or(|d| !d.is_empty()) {
            self.reset_json();
        }
        for i in from..to {
            if self.feed(m, i, i - start) {
                continue;
            }
            self.reset_json();
            self.json_run(m, start, i, out);
            self.json_alone(m, i, out);
            start = i + 1;
        }
        self.flush_run(m, start, to, out);
    }

    fn reset_json(&mut self) {
        // a decoder for a schema the table was created with always builds; without one every message is decoded
        // alone (and reported) instead
        self.json = self.json_decoder().ok();
    }

    /// Feeds message `i` (and its newline); whether the decoder now holds `before + 1` complete records.
    fn feed(&mut self, m: &Messages, i: usize, before: usize) -> bool {
        let (Some(d), Some(v)) = (self.json.as_mut(), m.value_line(i)) else {
            return false;
        };
        let mut read = 0;
        while read < v.len() {
            match d.decode(&v[read..]) {
                Ok(0) | Err(_) => return false,
                Ok(n) => read += n,
            }
        }
        !d.has_partial_record() && d.len() == before + 1
    }

    /// Decodes messages `from..to`, each known to hold one record, from a fresh decoder.
    fn json_run(&mut self, m: &Messages, from: usize, to: usize, out: &mut Out<'_>) {
        for i in from..to {
            if !self.feed(m, i, i - from) {
                // cannot happen (they fed cleanly before); never lose them if it does
                self.reset_json();
                for j in from..to {
                    self.json_alone(m, j, out);
                }
                return;
            }
        }
        self.flush_run(m, from, to, out);
    }

    /// Turns the fed run `from..to` into columns; on a conversion error, halves it.
    fn flush_run(&mut self, m: &Messages, from: usize, to: usize, out: &mut Out<'_>) {
        if from >= to {
            return;
        }
        let flushed = self.json.as_mut().map(|d| d.flush());
        match flushed {
            Some(Ok(Some(b))) if b.num_rows() == to - from => {
                out.add(b, from..to);
            }
            _ => {
                self.reset_json();
                if to - from <= 4 {
                    for i in from..to {
                        self.json_alone(m, i, out);
                    }
                } else {
                    let mid = from + (to - from) / 2;
                    self.json_run(m, from, mid, out);
                    self.json_run(m, mid, to, out);
                }
            }
        }
    }

    /// One message on its own: a row, or a dead letter that says why. Leaves the decoder empty.
    fn json_alone(&mut self, m: &Messages, i: usize, out: &mut Out<'_>) {
        match self.decode_one(m.value(i)) {
            Ok(b) => {
                out.add(b, i..i + 1);
            }
            Err(e) => out.dead.push((i, e)),
        }
    }

    /// CSV: one pass over the whole micro-batch; message by message when that fails or does not give exactly one
    /// row per message.
    fn decode_values(
        &mut self,
        m: &Messages,
        dead: &mut Vec<(usize, String)>,
    ) -> Option<(RecordBatch, Vec<usize>)> {
        let all: Vec<usize> = (0..m.len()).collect();
        let clean = all.iter().all(|&i| match m.value(i) {
            Some(v) => !v.iter().all(u8::is_ascii_whitespace) && !v.contains(&b'\n'),
            None => false,
        });
        if clean {
            if let Ok(b) = self.decode_many(m, &all) {
                if b.num_rows() == m.len() {
                    return Some((b, all));
                }
            }
        }
        let mut batches = Vec::new();
        let mut rows = Vec::new();
        for i in 0..m.len() {
            match self.decode_one(m.value(i)) {
                Ok(b) => {
                    batches.push(b);
                    rows.push(i);
                }
                Err(e) => dead.push((i, e)),
            }
        }
        if rows.is_empty() {
            return None;
        }
        match concat_batches(&self.value_schema, &batches) {
            Ok(b) => Some((b, rows)),
            Err(e) => {
                for i in rows {
                    dead.push((i, format!("internal error: {e}")));
                }
                None
            }
        }
    }

    fn decode_many(&mut self, m: &Messages, idx: &[usize]) -> Result<RecordBatch, ArrowError> {
        self.line.clear();
        for &i in idx {
            if let Some(v) = m.value(i) {
                self.line.extend_from_slice(v);
            }
            self.line.push(b'\n');
        }
        let buf = std::mem::take(&mut self.line);
        let r = self.decode_bytes(&buf);
        self.line = buf;
        r
    }

    fn decode_bytes(&mut self, buf: &[u8]) -> Result<RecordBatch, ArrowError> {
        match self.format {
            Format::Json => {
                let r = (|| {
                    let d = self
                        .json
                        .as_mut()
                        .ok_or_else(|| ArrowError::InvalidArgumentError("no decoder".into()))?;
                    let mut read = 0;
                    while read < buf.len() {
                        let n = d.decode(&buf[read..])?;
                        if n == 0 {
                            break;
                        }
                        read += n;
                    }
                    if d.has_partial_record() {
                        return Err(ArrowError::JsonError("incomplete JSON value".into()));
                    }
                    Ok(d.flush()?
                        .unwrap_or_else(|| RecordBatch::new_empty(self.value_schema.clone())))
                })();
                if r.is_err() {
                    // A failed decode leaves the decoder mid-value: start afresh.
                    self.json = Some(self.json_decoder()?);
                }
                r
            }
            Format::Csv => {
                let mut d = arrow_csv::ReaderBuilder::new(self.value_schema.clone())
                    .with_delimiter(self.delimiter)
                    .with_batch_size(1 << 20)
                    .build_decoder();
                let mut read = 0;
                while read < buf.len() {
                    let n = d.decode(&buf[read..])?;
                    if n == 0 {
                        break;
                    }
                    read += n;
                }
                Ok(d.flush()?
                    .unwrap_or_else(|| RecordBatch::new_empty(self.value_schema.clone())))
            }
            Format::Raw => Err(ArrowError::InvalidArgumentError("raw".into())),
        }
    }

    fn decode_one(&mut self, value: Option<&[u8]>) -> Result<RecordBatch, String> {
        let Some(v) = value else {
            return Err("the message has no value (a tombstone)".into());
        };
        if v.iter().all(u8::is_ascii_whitespace) {
            return Err("the message is empty".into());
        }
        let mut buf = Vec::with_capacity(v.len() + 1);
        buf.extend_from_slice(v);
        buf.push(b'\n');
        let b = self.decode_bytes(&buf).map_err(|e| {
            let what = match self.format {
                Format::Json => "not a JSON object of the table's columns",
                _ => "not a CSV record of the table's columns",
            };
            format!("{what}: {}", clean_arrow_error(&e))
        })?;
        match b.num_rows() {
            1 => Ok(b),
            0 => Err("the message holds no record".into()),
            n => Err(format!("the message holds {n} records, not one")),
        }
    }

    /// Raw: the declared `key`/`value` columns take the bytes (TEXT must be UTF-8).
    fn decode_raw(
        &mut self,
        m: &Messages,
        dead: &mut Vec<(usize, String)>,
    ) -> Option<(RecordBatch, Vec<usize>)> {
        let mut rows = Vec::with_capacity(m.len());
        for i in 0..m.len() {
            let mut ok = true;
            for f in self.value_schema.fields() {
                if f.data_type() == &DataType::Utf8 {
                    let bytes = if f.name() == "key" {
                        m.key(i)
                    } else {
                        m.value(i)
                    };
                    if let Some(b) = bytes {
                        if let Err(e) = std::str::from_utf8(b) {
                            dead.push((i, format!("column {} is TEXT but the {} is not UTF-8 ({e}); declare it BYTEA", f.name(), f.name())));
                            ok = false;
                            break;
                        }
                    }
                }
            }
            if ok {
                rows.push(i);
            }
        }
        if rows.is_empty() {
            return None;
        }
        let mut columns: Vec<ArrayRef> = Vec::new();
        for f in self.value_schema.fields() {
            let get = |i: usize| {
                if f.name() == "key" {
                    m.key(i)
                } else {
                    m.value(i)
                }
            };
            let a: ArrayRef = if f.data_type() == &DataType::Utf8 {
                let mut b = StringBuilder::new();
                for &i in &rows {
                    b.append_option(get(i).and_then(|v| std::str::from_utf8(v).ok()));
                }
                Arc::new(b.finish())
            } else {
                let mut b = BinaryBuilder::new();
                for &i in &rows {
                    b.append_option(get(i));
                }
                Arc::new(b.finish())
            };
            columns.push(a);
        }
        match RecordBatch::try_new(self.value_schema.clone(), columns) {
            Ok(b) => Some((b, rows)),
            Err(e) => {
                for i in rows {
                    dead.push((i, format!("internal error: {e}")));
                }
                None
            }
        }
    }

    /// Decoded values + metadata → the table's schema. Rows whose timestamps do not parse or whose NOT NULL
    /// columns are missing become dead letters here.
    fn assemble(
        &self,
        m: &Messages,
        values: RecordBatch,
        rows: &[usize],
        dead: &mut Vec<(usize, String)>,
    ) -> Result<Option<RecordBatch>, ArrowError> {
        let n = rows.len();
        let mut bad: Vec<Option<String>> = vec![None; n];
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for f in self.schema.fields() {
            let name = f.name().as_str();
            let col: ArrayRef = match name {
                "_partition" => Arc::new(Int32Array::from_iter_values(
                    rows.iter().map(|&i| m.partition[i]),
                )),
                "_offset" => Arc::new(Int64Array::from_iter_values(
                    rows.iter().map(|&i| m.offset[i]),
                )),
                "_timestamp" => Arc::new(
                    TimestampMillisecondArray::from_iter(rows.iter().map(|&i| m.timestamp[i]))
                        .with_timezone("UTC"),
                ),
                "_key" => {
                    let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 16);
                    for &i in rows {
                        match m.key(i).map(String::from_utf8_lossy) {
                            Some(k) => b.append_value(k),
                            None => b.append_null(),
                        }
                    }
                    Arc::new(b.finish())
                }
                _ => {
                    let idx = values.schema().index_of(name)?;
                    let c = values.column(idx).clone();
                    if is_time(f.data_type()) {
                        parse_times(&c, f.data_type(), name, &mut bad)?
                    } else {
                        c
                    }
                }
            };
            let col = if col.data_type() != f.data_type() {
                cast(&col, f.data_type())?
            } else {
                col
            };
            if !f.is_nullable() && col.null_count() > 0 && !META.contains(&name) {
                for (r, slot) in bad.iter_mut().enumerate() {
                    if col.is_null(r) && slot.is_none() {
                        *slot = Some(format!(
                            "column {name} is NOT NULL but the message has no value for it"
                        ));
                    }
                }
            }
            columns.push(col);
        }
        let keep: Vec<bool> = bad.iter().map(|b| b.is_none()).collect();
        for (r, why) in bad.into_iter().enumerate() {
            if let Some(why) = why {
                dead.push((rows[r], why));
            }
        }
        // Nullability was checked above; build against a nullable copy, then restore the declared schema.
        let loose = Arc::new(Schema::new(
            self.schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        let mut batch = RecordBatch::try_new(loose, columns)?;
        if keep.iter().any(|k| !k) {
            batch = filter_record_batch(&batch, &BooleanArray::from(keep))?;
        }
        if batch.num_rows() == 0 {
            return Ok(None);
        }
        Ok(Some(RecordBatch::try_new(
            self.schema.clone(),
            batch.columns().to_vec(),
        )?))
    }
}

/// Text timestamps: RFC 3339 / ISO 8601 strings, or integers as epoch milliseconds.
fn parse_times(
    c: &ArrayRef,
    to: &DataType,
    name: &str,
    bad: &mut [Option<String>],
) -> Result<ArrayRef, ArrowError> {
    let Some(s) = c.as_any().downcast_ref::<StringArray>() else {
        return cast(c, to);
    };
    let DataType::Timestamp(unit, tz) = to else {
        return cast(c, to);
    };
    let per_ms: i64 = match unit {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 1,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1_000_000,
    };
    let mut out: Vec<Option<i64>> = Vec::with_capacity(s.len());
    for (r, v) in s.iter().enumerate() {
        let Some(v) = v else {
            out.push(None);
            continue;
        };
        let t = v.trim();
        let epoch_ms = t.parse::<i64>().ok().map(|ms| {
            if per_ms == 0 {
                ms.div_euclid(1000)
            } else {
                ms.saturating_mul(per_ms)
            }
        });
        let parsed = epoch_ms.or_else(|| {
            datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(t)
                .ok()
                .map(|ns| match unit {
                    TimeUnit::Second => ns.div_euclid(1_000_000_000),
                    TimeUnit::Millisecond => ns.div_euclid(1_000_000),
                    TimeUnit::Microsecond => ns.div_euclid(1_000),
                    TimeUnit::Nanosecond => ns,
                })
        });
        if parsed.is_none() && bad[r].is_none() {
            bad[r] = Some(format!(
                "column {name}: '{v}' is not a timestamp (RFC 3339 text or epoch milliseconds)"
            ));
        }
        out.push(parsed);
    }
    let a: ArrayRef = match unit {
        TimeUnit::Second => Arc::new(
            datafusion::arrow::array::TimestampSecondArray::from(out).with_timezone_opt(tz.clone()),
        ),
        TimeUnit::Millisecond => {
            Arc::new(TimestampMillisecondArray::from(out).with_timezone_opt(tz.clone()))
        }
        TimeUnit::Microsecond => Arc::new(
            datafusion::arrow::array::TimestampMicrosecondArray::from(out)
                .with_timezone_opt(tz.clone()),
        ),
        TimeUnit::Nanosecond => Arc::new(
            datafusion::arrow::array::TimestampNanosecondArray::from(out)
                .with_timezone_opt(tz.clone()),
        ),
    };
    Ok(a)
}

/// Arrow's messages carry a "Json error: " or "Parser error: " prefix; the dead letter says what it is already.
fn clean_arrow_error(e: &ArrowError) -> String {
    let s = e.to_string();
    for prefix in [
        "Json error: ",
        "Parser error: ",
        "Csv error: ",
        "Invalid argument error: ",
    ] {
        if let Some(rest) = s.strip_prefix(prefix) {
            return rest.to_string();
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::util::pretty::pretty_format_batches;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
            Field::new("sensor_id", DataType::Utf8, false),
            Field::new("temperature", DataType::Float64, true),
            meta_field("_partition").unwrap(),
            meta_field("_offset").unwrap(),
            meta_field("_timestamp").unwrap(),
            meta_field("_key").unwrap(),
        ]))
    }

    fn messages(values: &[&str]) -> Messages {
        let mut m = Messages::default();
        for (i, v) in values.iter().enumerate() {
            m.push(
                0,
                i as i64,
                Some(1_700_000_000_000),
                Some(b"k"),
                Some(v.as_bytes()),
            );
        }
        m
    }

    #[test]
    fn clean_json_decodes_in_one_pass() {
        let mut d = Decoder::new(Format::Json, b',', schema()).unwrap();
        let m = messages(&[
            r#"{"ts": "2024-01-01T00:00:00Z", "sensor_id": "s1", "temperature": 21.5}"#,
            r#"{"ts": 1704067260000, "sensor_id": 7, "temperature": "22", "extra": [1]}"#,
            r#"{"ts": "2024-01-02", "sensor_id": "s3"}"#,
        ]);
        let out = d.decode(&m);
        assert!(out.dead.is_empty(), "{:?}", out.dead);
        let text = pretty_format_batches(&[out.batch.unwrap()])
            .unwrap()
            .to_string();
        assert!(text.contains("2024-01-01T00:00:00 "), "{text}");
        assert!(text.contains("2024-01-01T00:01:00 "), "{text}");
        assert!(text.contains("| 7 "), "{text}");
        assert!(text.contains("2024-01-02T00:00:00 "), "{text}");
    }

    #[test]
    fn each_bad_message_is_one_dead_letter() {
        let mut d = Decoder::new(Format::Json, b',', schema()).unwrap();
        let m = messages(&[
            r#"{"ts": "2024-01-01T00:00:00Z", "sensor_id": "s1", "temperature": 1}"#,
            r#"{"ts": "2024-01-01T00:00:00Z", "sensor_id": "s1", "temperature": "hot"}"#,
            r#"not json"#,
            r#"{"ts": "yesterday", "sensor_id": "s1"}"#,
            r#"{"ts": "2024-01-01T00:00:00Z", "temperature": 3}"#,
            r#"{"a":1}{"a":2}"#,
            r#"{"ts": "2024-01-01T00:00:02Z", "sensor_id": "s2", "temperature": 2}"#,
        ]);
        let out = d.decode(&m);
        let b = out.batch.unwrap();
        assert_eq!(b.num_rows(), 2);
        let offsets: Vec<i64> = b
            .column(4)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .values()
            .to_vec();
        assert_eq!(offsets, vec![0, 6]);
        let dead: Vec<usize> = out.dead.iter().map(|d| d.0).collect();
        assert_eq!(dead, vec![1, 2, 3, 4, 5]);
        assert!(out.dead[0].1.contains("hot"), "{:?}", out.dead);
        assert!(
            out.dead[2].1.contains("'yesterday' is not a timestamp"),
            "{:?}",
            out.dead
        );
        assert!(
            out.dead[3].1.contains("sensor_id is NOT NULL"),
            "{:?}",
            out.dead
        );
        // the decoder is usable after a failure
        let out = d.decode(&messages(&[r#"{"sensor_id": "x"}"#]));
        assert_eq!(out.batch.unwrap().num_rows(), 1);
    }

    fn offsets(b: &RecordBatch) -> Vec<i64> {
        b.column(4)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .values()
            .to_vec()
    }

    #[test]
    fn rows_belong_to_their_messages() {
        let mut d = Decoder::new(Format::Json, b',', schema()).unwrap();
        // a pretty-printed record is one row; a record cut across two messages is two dead letters, never a row
        let mut m = messages(&[
            "{\n  \"sensor_id\": \"pretty\",\n  \"temperature\": 1\n}",
            r#"{"sensor_id": "#,
            r#""glued", "temperature": 2}"#,
            "   ",
            r#"{"sensor_id": "ok", "temperature": 3}"#,
        ]);
        m.push(0, 5, None, None, None);
        let out = d.decode(&m);
        assert_eq!(offsets(&out.batch.unwrap()), vec![0, 4]);
        let dead: Vec<usize> = out.dead.iter().map(|d| d.0).collect();
        assert_eq!(dead, vec![1, 2, 3, 5], "{:?}", out.dead);
        assert!(out.dead[3].1.contains("tombstone"), "{:?}", out.dead);

        // thousands of messages with sparse bad ones (cut off, and values that do not convert): exactly the bad
        // ones are dead letters, and every row carries its own message's values
        let bad = |i: usize| i % 97 == 5 || i % 89 == 7;
        let values: Vec<String> = (0..5000)
            .map(|i| match i {
                i if i % 97 == 5 => format!(r#"{{"sensor_id": "s{i}", "temperature": "hot"}}"#),
                i if i % 89 == 7 => r#"{"sensor_id": "#.to_string(),
                i => format!(r#"{{"sensor_id": "s{i}", "temperature": {i}}}"#),
            })
            .collect();
        let refs: Vec<&str> = values.iter().map(|s| s.as_str()).collect();
        let out = d.decode(&messages(&refs));
        let b = out.batch.unwrap();
        let want: Vec<i64> = (0..5000).filter(|&i| !bad(i)).map(|i| i as i64).collect();
        assert_eq!(offsets(&b), want);
        let ids = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        let temps = b
            .column(2)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Float64Array>()
            .unwrap();
        for (r, &o) in want.iter().enumerate() {
            assert_eq!(ids.value(r), format!("s{o}"));
            assert_eq!(temps.value(r), o as f64);
        }
        let dead: Vec<usize> = out.dead.iter().map(|d| d.0).collect();
        assert_eq!(dead, (0..5000).filter(|&i| bad(i)).collect::<Vec<_>>());
    }

    /// Every type the fast path decodes, and one it does not.
    fn wide_schema(with_list: bool) -> SchemaRef {
        let mut fields = vec![
            Field::new("i8", DataType::Int8, true),
            Field::new("i32", DataType::Int32, true),
            Field::new("i64", DataType::Int64, true),
            Field::new("u16", DataType::UInt16, true),
            Field::new("u64", DataType::UInt64, true),
            Field::new("f32", DataType::Float32, true),
            Field::new("f64", DataType::Float64, true),
            Field::new("b", DataType::Boolean, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("sv", DataType::Utf8View, true),
            Field::new("ls", DataType::LargeUtf8, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("req", DataType::Int64, false),
        ];
        if with_list {
            fields.push(Field::new(
                "l",
                DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
                true,
            ));
        }
        fields.push(meta_field("_offset").unwrap());
        Arc::new(Schema::new(fields))
    }

    /// Messages the fast path must decode exactly as arrow-json does, or leave to it.
    const TRICKY: &[&str] = &[
        r#"{"req": 1}"#,
        r#"{}"#,
        r#"  {"req":2 , "s" : "plain" }  "#,
        "{\"req\":3,\n\t\"s\":\"tab\\tnew\\nline \\\"q\\\" \\\\ \\/ \\b\\f\\r\"}",
        r#"{"req":4,"s":"\u00e9\u4e2d\ud83d\ude00 é 中 😀"}"#,
        r#"{"req":5,"s":"\ud83d"}"#,
        r#"{"req":6,"s":"\ude00\ud83d"}"#,
        r#"{"req":7,"s":"bad \q escape"}"#,
        "{\"req\":8,\"s\":\"raw \u{1} control\"}",
        r#"{"req":9,"s":12.50,"i64":-0,"f64":-0.0}"#,
        r#"{"req":10,"s":true,"b":false}"#,
        r#"{"req":11,"s":null,"b":null,"i64":null,"f64":null}"#,
        r#"{"req":12,"i8":127,"u16":65535,"i32":-2147483648}"#,
        r#"{"req":13,"i8":128}"#,
        r#"{"req":14,"u16":-1}"#,
        r#"{"req":15,"u64":18446744073709551615}"#,
        r#"{"req":16,"i64":9223372036854775807}"#,
        r#"{"req":17,"i64":9223372036854775808}"#,
        r#"{"req":18,"i64":1.0}"#,
        r#"{"req":19,"i64":1e3}"#,
        r#"{"req":20,"i64":"42"}"#,
        r#"{"req":21,"f64":"4.5"}"#,
        r#"{"req":22,"f64":1e400}"#,
        r#"{"req":23,"f64":1.7976931348623157e308,"f32":3.4028235e38}"#,
        r#"{"req":24,"f32":0.1,"f64":0.1}"#,
        r#"{"req":25,"f32":1e39}"#,
        r#"{"req":26,"f64":01}"#,
        r#"{"req":27,"f64":1.}"#,
        r#"{"req":28,"f64":.5}"#,
        r#"{"req":29,"f64":-}"#,
        r#"{"req":30,"f64":2E-3,"i32":0}"#,
        r#"{"req":31,"b":"true"}"#,
        r#"{"req":32,"b":1}"#,
        r#"{"req":33,"i64":5,"i64":6}"#,
        r#"{"req":34,"extra":{"a":[1,2,{"b":null}],"c":"x\"y"},"more":[],"e":{}}"#,
        r#"{"req":35,"extra":[1,2,}"#,
        r#"{"req":36,"extra":"\x"}"#,
        r#"{"re\u0071":37}"#,
        r#"{"req":38,"s":{"nested":1}}"#,
        r#"{"req":39,"s":[1]}"#,
        r#"{"req":40,"ts":"2026-01-02T03:04:05.678Z"}"#,
        r#"{"req":41,"ts":1767225600000}"#,
        r#"{"req":42,"ts":"1767225600000"}"#,
        r#"{"req":43,"ts":"yesterday"}"#,
        r#"{"req":44,"ts":true}"#,
        r#"{"req":45} {"req":46}"#,
        r#"{"req":47}x"#,
        r#"{"req":48"#,
        r#"[1,2]"#,
        r#"42"#,
        r#""text""#,
        r#"null"#,
        "",
        "   ",
        r#"{"s":"no req"}"#,
        r#"{"req":null}"#,
        r#"{"req":49,}"#,
        r#"{"req":50 "s":"x"}"#,
        r#"{"req":51,"s":"x",,"b":true}"#,
        r#"{'req':52}"#,
        r#"{"req":53,"b":tru}"#,
        r#"{"req":54,"b":nul}"#,
        r#"{"req":55,"b":truex}"#,
        r#"{"req":56,"l":[1,2,3]}"#,
        r#"{"req":57,"l":"not a list"}"#,
        "{\"req\":58,\"s\":\"\u{a0}nbsp\u{2028}\"}",
        "{\"req\":59}\u{c}",
        "\u{feff}{\"req\":60}",
        r#"{"req":61,"i32":-}"#,
        r#"{"req":62,"f64":1e}"#,
        r#"{"req":63,"f64":1e+}"#,
        r#"{"req":64,"f64":-1.5E+2,"f32":-0}"#,
        r#"{"req":65,"i64":+1}"#,
        r#"{"req":66,"extra":-01}"#,
        r#"{"req":67,"extra":"\ud83d"}"#,
        r#"{"req":68,"sv":"view \" text","ls":"large","sv2":1}"#,
        r#"{"req":69,"sv":12.5e3,"ls":false,"s":"x"}"#,
        r#"{"req":70,"sv":"a string longer than twelve bytes, out of line","ls":null}"#,
        r#"{"req":71,"sv":{"x":1}}"#,
    ];

    fn outcome(d: &mut Decoder, m: &Messages) -> (String, Vec<(usize, String)>) {
        let out = d.decode(m);
        let rows = out
            .batch
            .map(|b| pretty_format_batches(&[b]).unwrap().to_string())
            .unwrap_or_default();
        (rows, out.dead)
    }

    #[test]
    fn the_json_fast_path_decodes_exactly_as_arrow_json() {
        for with_list in [false, true] {
            let schema = wide_schema(with_list);
            let mut fast = Decoder::new(Format::Json, b',', schema.clone()).unwrap();
            assert_eq!(fast.flat.is_some(), !with_list);
            let mut slow = Decoder::new(Format::Json, b',', schema)
                .unwrap()
                .without_fast_path();
            // each message alone, all of them in one micro-batch, and a tombstone and invalid UTF-8 among them
            for v in TRICKY {
                let m = messages(&[v]);
                assert_eq!(outcome(&mut fast, &m), outcome(&mut slow, &m), "{v}");
            }
            let mut m = messages(TRICKY);
            m.push(0, 98, None, None, None);
            m.push(0, 99, None, None, Some(b"{\"req\":99,\"s\":\"\xff\"}"));
            m.push(0, 100, None, None, Some(br#"{"req":100}"#));
            let (rows, dead) = outcome(&mut fast, &m);
            assert_eq!(
                (&rows, &dead),
                (&outcome(&mut slow, &m).0, &outcome(&mut slow, &m).1)
            );
            // the outcome shows both kinds: rows and dead letters with arrow-json's reasons
            assert!(rows.contains("tab"), "{rows}");
            assert!(dead.iter().any(|(_, e)| e.contains("NOT NULL")), "{dead:?}");
            // pseudo-random mixes: runs of clean messages between refused ones, in every order
            let mut seed = 0x9e37_79b9_7f4a_7c15u64;
            for _ in 0..40 {
                let picks: Vec<&str> = (0..60)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        if seed.is_multiple_of(3) {
                            TRICKY[(seed >> 8) as usize % TRICKY.len()]
                        } else {
                            r#"{"req":1,"s":"ok","sv":"view","f64":2.5,"ts":1767225600000}"#
                        }
                    })
                    .collect();
                let m = messages(&picks);
                assert_eq!(outcome(&mut fast, &m), outcome(&mut slow, &m), "{picks:?}");
            }
        }
    }

    #[test]
    fn csv_and_raw() {
        let mut d = Decoder::new(Format::Csv, b',', schema()).unwrap();
        let out = d.decode(&messages(&[
            "2024-01-01 00:00:00,s1,1.5",
            "x,y",
            "1704067200000,s2,2",
        ]));
        assert_eq!(out.batch.unwrap().num_rows(), 2);
        assert_eq!(out.dead.len(), 1);
        let raw = Arc::new(Schema::new(vec![
            Field::new("value", DataType::Utf8, true),
            meta_field("_offset").unwrap(),
        ]));
        let mut d = Decoder::new(Format::Raw, b',', raw).unwrap();
        let mut m = Messages::default();
        m.push(0, 0, None, None, Some(b"hello"));
        m.push(0, 1, None, None, Some(&[0xff, 0xfe]));
        let out = d.decode(&m);
        assert_eq!(out.batch.unwrap().num_rows(), 1);
        assert!(out.dead[0].1.contains("not UTF-8"));
    }
}
