//! The fast path for JSON messages: one flat object whose values are scalars, parsed straight into column
//! builders without arrow-json's tape. It accepts only what it can decode exactly as arrow-json would (strict
//! JSON; integers into integer columns, numbers into float columns, strings, numbers and booleans into text
//! columns) and refuses anything else — a float in an integer column, a number written as a string, escapes in
//! keys, a repeated key, a nested value in a declared column, bytes that are not UTF-8 — so the caller decodes
//! that message the general way, which also writes the dead letter when the message is bad. A refused message
//! leaves nothing behind: the columns are cut back to the rows before it.

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float32Array, Float64Array, Int64Array, LargeStringArray, RecordBatch,
    StringArray,
};
use datafusion::arrow::buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::error::ArrowError;
use std::sync::Arc;

/// Nesting deeper than this inside an undeclared field is left to the general decoder.
const MAX_DEPTH: usize = 64;

/// A column's values so far (one per row, a default under a null).
enum Values {
    /// Any integer type, with the range of values it holds.
    Int {
        v: Vec<i64>,
        lo: i64,
        hi: i64,
    },
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bool(Vec<bool>),
    /// The end of each value in `data`.
    Text {
        ends: Vec<usize>,
        data: Vec<u8>,
    },
}

/// A column being built. Values go straight in as a message is parsed; a refused message is taken out again by
/// truncating every column to the rows before it.
struct Column {
    valid: Vec<bool>,
    values: Values,
}

impl Column {
    /// A column of type `t`; `None` for a type the fast path does not decode (the general decoder does them all).
    fn of(t: &DataType) -> Option<Self> {
        let int = |lo: i64, hi: i64| Values::Int {
            v: Vec::new(),
            lo,
            hi,
        };
        let values = match t {
            DataType::Int8 => int(i8::MIN.into(), i8::MAX.into()),
            DataType::Int16 => int(i16::MIN.into(), i16::MAX.into()),
            DataType::Int32 => int(i32::MIN.into(), i32::MAX.into()),
            DataType::Int64 => int(i64::MIN, i64::MAX),
            DataType::UInt8 => int(0, u8::MAX.into()),
            DataType::UInt16 => int(0, u16::MAX.into()),
            DataType::UInt32 => int(0, u32::MAX.into()),
            // larger values are left to the general decoder
            DataType::UInt64 => int(0, i64::MAX),
            DataType::Float32 => Values::F32(Vec::new()),
            DataType::Float64 => Values::F64(Vec::new()),
            DataType::Boolean => Values::Bool(Vec::new()),
            // Utf8View and LargeUtf8 are built as Utf8 and cast
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => Values::Text {
                ends: Vec::new(),
                data: Vec::new(),
            },
            _ => return None,
        };
        Some(Self {
            valid: Vec::new(),
            values,
        })
    }

    fn len(&self) -> usize {
        self.valid.len()
    }

    fn push_null(&mut self) {
        self.valid.push(false);
        match &mut self.values {
            Values::Int { v, .. } => v.push(0),
            Values::F32(v) => v.push(0.0),
            Values::F64(v) => v.push(0.0),
            Values::Bool(v) => v.push(false),
            Values::Text { ends, data } => ends.push(data.len()),
        }
    }

    fn push_text(&mut self, t: &[u8]) {
        if let Values::Text { ends, data } = &mut self.values {
            data.extend_from_slice(t);
            ends.push(data.len());
            self.valid.push(true);
        }
    }

    fn truncate(&mut self, n: usize) {
        if self.valid.len() <= n {
            return;
        }
        self.valid.truncate(n);
        match &mut self.values {
            Values::Int { v, .. } => v.truncate(n),
            Values::F32(v) => v.truncate(n),
            Values::F64(v) => v.truncate(n),
            Values::Bool(v) => v.truncate(n),
            Values::Text { ends, data } => {
                ends.truncate(n);
                data.truncate(ends.last().copied().unwrap_or(0));
            }
        }
    }

    /// The column as an array of `t`; starts a new one.
    fn finish(&mut self, t: &DataType) -> Result<ArrayRef, ArrowError> {
        let nulls =
            (!self.valid.iter().all(|&v| v)).then(|| NullBuffer::from(self.valid.as_slice()));
        self.valid.clear();
        let a: ArrayRef = match &mut self.values {
            Values::Int { v, .. } => Arc::new(Int64Array::new(renew(v).into(), nulls)),
            Values::F32(v) => Arc::new(Float32Array::new(renew(v).into(), nulls)),
            Values::F64(v) => Arc::new(Float64Array::new(renew(v).into(), nulls)),
            Values::Bool(v) => Arc::new(BooleanArray::new(v.as_slice().into(), nulls)),
            Values::Text { ends, data } => {
                let data = Buffer::from_vec(renew(data));
                if matches!(t, DataType::LargeUtf8) {
                    let offsets = std::iter::once(0)
                        .chain(ends.iter().map(|&e| e as i64))
                        .collect::<Vec<i64>>();
                    Arc::new(LargeStringArray::try_new(
                        OffsetBuffer::new(ScalarBuffer::from(offsets)),
                        data,
                        nulls,
                    )?)
                } else {
                    let offsets = std::iter::once(Ok(0))
                        .chain(ends.iter().map(|&e| i32::try_from(e)))
                        .collect::<Result<Vec<i32>, _>>()
                        .map_err(|_| {
                            ArrowError::ComputeError("over 2 GB of text in one batch".into())
                        })?;
                    Arc::new(StringArray::try_new(
                        OffsetBuffer::new(ScalarBuffer::from(offsets)),
                        data,
                        nulls,
                    )?)
                }
            }
        };
        match &mut self.values {
            Values::Bool(v) => v.clear(),
            Values::Text { ends, .. } => ends.clear(),
            _ => {}
        }
        // integers were range-checked for their type: the cast is exact; Utf8 → Utf8View shares the bytes
        if a.data_type() != t {
            cast(&a, t)
        } else {
            Ok(a)
        }
    }
}

/// Hands over a column's values and leaves room for as many in the next batch (growing from empty page-faulted
/// and copied a batch's worth of memory again and again).
fn renew<T>(v: &mut Vec<T>) -> Vec<T> {
    let n = v.len();
    std::mem::replace(v, Vec::with_capacity(n))
}

/// A string's text: where it lies in the message (no escapes), or in the scratch buffer with its escapes
/// resolved.
#[derive(Debug, Clone, Copy)]
enum Str {
    Span(usize, usize),
    Unescaped(usize, usize),
}

/// Flat JSON objects → columns of a value schema (see [`super::decode::Decoder`]).
pub struct FlatJson {
    schema: SchemaRef,
    names: Vec<Vec<u8>>,
    columns: Vec<Column>,
    scratch: String,
    rows: usize,
}

impl std::fmt::Debug for FlatJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlatJson")
            .field("columns", &self.columns.len())
            .field("rows", &self.rows)
            .finish()
    }
}

fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

/// A position in one message.
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn ws(&mut self) {
        while self.b.get(self.i).is_some_and(|&c| is_ws(c)) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn literal(&mut self, word: &[u8]) -> Option<(usize, usize)> {
        let start = self.i;
        (self.b.get(start..start + word.len())? == word).then(|| {
            self.i += word.len();
            (start, self.i)
        })
    }

    fn digits(&mut self) -> usize {
        let rest = self.b.get(self.i..).unwrap_or_default();
        let n = rest
            .iter()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        self.i += n;
        n
    }

    /// A number in JSON's grammar: (start, end, whether it is an integer). Refuses what follows a number
    /// directly in arrow-json's scan (so both see the same text).
    fn number(&mut self) -> Option<(usize, usize, bool)> {
        let start = self.i;
        let _ = self.eat(b'-');
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        let mut int = true;
        if self.eat(b'.').is_some() {
            int = false;
            if self.digits() == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            int = false;
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        if matches!(
            self.peek(),
            Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
        ) {
            return None;
        }
        Some((start, self.i, int))
    }

    /// A string after its opening quote. Without escapes: its span in the message; with them: its text in
    /// `out`, appended (the span of `out` it took). Refuses control characters and bad escapes.
    fn string(&mut self, text: &str, out: &mut String) -> Option<Str> {
        let start = self.i;
        let rest = self.b.get(start..)?;
        let n = rest
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        self.i = start + n;
        match rest[n] {
            b'"' => {
                self.i += 1;
                return Some(Str::Span(start, start + n));
            }
            b'\\' => {}
            _ => return None, // a control character
        }
        let from = out.len();
        out.push_str(text.get(start..self.i)?);
        loop {
            let run = self.i;
            while self
                .peek()
                .is_some_and(|c| c != b'"' && c != b'\\' && c >= 0x20)
            {
                self.i += 1;
            }
            out.push_str(text.get(run..self.i)?);
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(Str::Unescaped(from, out.len()));
                }
                b'\\' => {
                    self.i += 1;
                    let e = self.peek()?;
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => out.push(self.unicode()?),
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = std::str::from_utf8(self.b.get(self.i..self.i + 4)?).ok()?;
        if !h.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        self.i += 4;
        u32::from_str_radix(h, 16).ok()
    }

    /// `\u` escapes after the `u`: a character, or a surrogate pair (a lone surrogate is refused).
    fn unicode(&mut self) -> Option<char> {
        let hi = self.hex4()?;
        if (0xD800..0xDC00).contains(&hi) {
            self.eat(b'\\')?;
            self.eat(b'u')?;
            let lo = self.hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                return None;
            }
            return char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00));
        }
        char::from_u32(hi)
    }

    /// Any JSON value, checked and passed over (a field the table does not declare).
    fn skip(&mut self, text: &str, scratch: &mut String, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => {
                self.i += 1;
                let mark = scratch.len();
                self.string(text, scratch)?;
                scratch.truncate(mark);
            }
            b'-' | b'0'..=b'9' => {
                self.number()?;
            }
            b't' => {
                self.literal(b"true")?;
            }
            b'f' => {
                self.literal(b"false")?;
            }
            b'n' => {
                self.literal(b"null")?;
            }
            open @ (b'{' | b'[') => {
                self.i += 1;
                let close = if open == b'{' { b'}' } else { b']' };
                self.ws();
                if self.eat(close).is_some() {
                    return Some(());
                }
                loop {
                    if open == b'{' {
                        self.eat(b'"')?;
                        let mark = scratch.len();
                        self.string(text, scratch)?;
                        scratch.truncate(mark);
                        self.ws();
                        self.eat(b':')?;
                        self.ws();
                    }
                    self.skip(text, scratch, depth + 1)?;
                    self.ws();
                    match self.peek()? {
                        b',' => {
                            self.i += 1;
                            self.ws();
                        }
                        c if c == close => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            _ => return None,
        }
        Some(())
    }
}

impl FlatJson {
    /// `None` when a column has a type the fast path does not decode (the general decoder does them all).
    pub fn new(schema: &SchemaRef) -> Option<Self> {
        let columns = schema
            .fields()
            .iter()
            .map(|f| Column::of(f.data_type()))
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            schema: schema.clone(),
            names: schema
                .fields()
                .iter()
                .map(|f| f.name().as_bytes().to_vec())
                .collect(),
            columns,
            scratch: String::new(),
            rows: 0,
        })
    }

    /// Rows appended since the last [`finish`](Self::finish).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Appends the message as a row, or refuses it (`false`) and appends nothing.
    pub fn push(&mut self, value: Option<&[u8]>) -> bool {
        let Some(text) = value.and_then(|v| std::str::from_utf8(v).ok()) else {
            return false;
        };
        self.scratch.clear();
        if self.parse(text).is_none() {
            for c in &mut self.columns {
                c.truncate(self.rows);
            }
            return false;
        }
        self.rows += 1;
        for c in &mut self.columns {
            if c.len() < self.rows {
                c.push_null(); // not in the message
            }
        }
        true
    }

    /// The column a key names; `guess` (the one after the previous key's) first. Compared inline: names are
    /// short, and a call to memcmp per key was a tenth of the parse.
    fn column(&self, key: &[u8], guess: usize) -> Option<usize> {
        let same = |n: &Vec<u8>| n.len() == key.len() && n.iter().zip(key).all(|(a, b)| a == b);
        if self.names.get(guess).is_some_and(same) {
            return Some(guess);
        }
        self.names.iter().position(same)
    }

    fn parse(&mut self, text: &str) -> Option<()> {
        let mut c = Cursor {
            b: text.as_bytes(),
            i: 0,
        };
        c.ws();
        c.eat(b'{')?;
        c.ws();
        if c.eat(b'}').is_none() {
            let mut guess = 0;
            loop {
                c.eat(b'"')?;
                let Str::Span(ks, ke) = c.string(text, &mut self.scratch)? else {
                    return None; // an escaped key: the general decoder matches those
                };
                c.ws();
                c.eat(b':')?;
                c.ws();
                match self.column(&c.b[ks..ke], guess) {
                    Some(k) => {
                        if self.columns[k].len() > self.rows {
                            return None; // a repeated key
                        }
                        self.value(&mut c, text, k)?;
                        guess = k + 1;
                    }
                    None => c.skip(text, &mut self.scratch, 0)?,
                }
                c.ws();
                match c.peek()? {
                    b',' => {
                        c.i += 1;
                        c.ws();
                    }
                    b'}' => {
                        c.i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        c.ws();
        (c.i == c.b.len()).then_some(())
    }

    /// The value of column `k`, appended to it.
    fn value(&mut self, c: &mut Cursor<'_>, text: &str, k: usize) -> Option<()> {
        let col = &mut self.columns[k];
        match c.peek()? {
            b'n' => {
                c.literal(b"null")?;
                col.push_null();
            }
            b't' | b'f' => {
                let (s, e) = c.literal(b"true").or_else(|| c.literal(b"false"))?;
                match &mut col.values {
                    Values::Bool(v) => {
                        v.push(e - s == 4);
                        col.valid.push(true);
                    }
                    Values::Text { .. } => col.push_text(&c.b[s..e]),
                    _ => return None,
                }
            }
            b'"' => {
                c.i += 1;
                if !matches!(col.values, Values::Text { .. }) {
                    return None;
                }
                match c.string(text, &mut self.scratch)? {
                    Str::Span(s, e) => col.push_text(&c.b[s..e]),
                    Str::Unescaped(s, e) => col.push_text(self.scratch.as_bytes().get(s..e)?),
                }
            }
            b'-' | b'0'..=b'9' => {
                let (s, e, int) = c.number()?;
                let n = &c.b[s..e];
                match &mut col.values {
                    Values::Int { v, lo, hi } if int => {
                        let x = lexical_core::parse::<i64>(n).ok()?;
                        if !(*lo..=*hi).contains(&x) {
                            return None;
                        }
                        v.push(x);
                    }
                    Values::F64(v) => {
                        let x = lexical_core::parse::<f64>(n).ok()?;
                        if !x.is_finite() {
                            return None;
                        }
                        v.push(x);
                    }
                    Values::F32(v) => {
                        let x = lexical_core::parse::<f32>(n).ok()?;
                        if !x.is_finite() {
                            return None;
                        }
                        v.push(x);
                    }
                    Values::Text { .. } => {
                        col.push_text(n);
                        return Some(());
                    }
                    _ => return None,
                }
                col.valid.push(true);
            }
            _ => return None,
        }
        Some(())
    }

    /// The rows appended so far, as a batch of the value schema; starts a new one.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        self.rows = 0;
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        for (col, field) in self.columns.iter_mut().zip(self.schema.fields()) {
            arrays.push(col.finish(field.data_type())?);
        }
        RecordBatch::try_new(self.schema.clone(), arrays)
    }
}
