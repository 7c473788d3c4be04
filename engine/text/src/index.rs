//! The full-text indexes of one table: a tantivy index in memory with one field per `INDEX ... USING FULLTEXT`
//! (a field holds every column the index covers, as CrateDB's composite indexes do) and a fast field with each
//! document's row key (see [`TableSnapshot::for_each_row_beyond`]).
//!
//! Freshness: the index remembers how far into the table it has read (a watermark) and the table version it read.
//! A search first takes in the rows beyond the watermark, commits and reloads, so a row is found by the first query
//! after its INSERT (or its arrival on a live table). A DELETE, UPDATE or TRUNCATE changes the version: the next
//! search re-reads the table. On a live table, documents of rows that retention has evicted are deleted as the
//! index catches up, so the index holds what the table holds. Commits happen only when a search finds new rows,
//! so a table under sustained ingest commits at most once per query.

use super::analyzers::AnalyzerDef;
use super::query::{MatchSpec, TargetRef};
use crate::vector::index::{IndexedTable, TableSnapshot};
use datafusion::arrow::array::{
    Array, BooleanArray, LargeStringArray, StringArray, StringViewArray,
};
use datafusion::common::{exec_err, DataFusionError, Result};
use std::ops::Bound;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tantivy::collector::{Collector, FilterCollector, SegmentCollector, TopDocs};
use tantivy::query::{Query, RangeQuery};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::{
    DocId, Index, IndexReader, IndexWriter, ReloadPolicy, Score, SegmentReader, TantivyDocument,
    Term,
};

/// The fast field holding each document's row key.
pub const ROW_FIELD: &str = "__kestrel_row";
/// Memory the writer buffers before it writes a segment.
const WRITER_BUDGET: usize = 64 << 20;

/// One `INDEX name USING FULLTEXT (columns) WITH (analyzer = ...)`.
#[derive(Debug, Clone)]
pub struct TextIndexDef {
    pub name: String,
    pub table: String,
    pub columns: Vec<String>,
    pub column_indices: Vec<usize>,
    pub analyzer: AnalyzerDef,
}

/// What sys.indexes shows about a full-text index.
#[derive(Debug, Clone, Default)]
pub struct TextStats {
    pub rows_indexed: usize,
    pub segments: usize,
    pub build_time: Duration,
    pub commits: u64,
}

struct Built {
    index: Index,
    reader: IndexReader,
    writer: IndexWriter<TantivyDocument>,
    row: Field,
    fields: Vec<Field>,
    /// The table rows taken in (see [`TableSnapshot::watermark`]) and the version they belong to.
    watermark: Vec<usize>,
    version: u64,
    /// A live table's: documents of rows below this key have been deleted.
    evicted_below: u64,
}

/// The full-text indexes of one table.
pub struct TableText {
    pub table: Weak<IndexedTable>,
    pub table_name: String,
    defs: Mutex<Vec<TextIndexDef>>,
    built: Mutex<Option<Built>>,
    stats: Mutex<TextStats>,
}

impl std::fmt::Debug for TableText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TableText({})", self.table_name)
    }
}

fn tantivy_error(what: &str, e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Execution(format!("full-text index: {what}: {e}"))
}

/// A text column of a batch, whatever its string type.
enum Texts<'a> {
    Utf8(&'a StringArray),
    Large(&'a LargeStringArray),
    View(&'a StringViewArray),
}

impl<'a> Texts<'a> {
    fn of(array: &'a dyn Array, column: &str) -> Result<Self> {
        let any = array.as_any();
        if let Some(a) = any.downcast_ref::<StringArray>() {
            return Ok(Texts::Utf8(a));
        }
        if let Some(a) = any.downcast_ref::<LargeStringArray>() {
            return Ok(Texts::Large(a));
        }
        if let Some(a) = any.downcast_ref::<StringViewArray>() {
            return Ok(Texts::View(a));
        }
        exec_err!(
            "full-text index: column {column} holds {}, not text",
            array.data_type()
        )
    }

    fn get(&self, row: usize) -> Option<&'a str> {
        match self {
            Texts::Utf8(a) => a.is_valid(row).then(|| a.value(row)),
            Texts::Large(a) => a.is_valid(row).then(|| a.value(row)),
            Texts::View(a) => a.is_valid(row).then(|| a.value(row)),
        }
    }
}

/// The tokenizer name an index's field is analyzed with (tantivy registers a few names of its own).
fn tokenizer_key(def: &TextIndexDef) -> String {
    format!("kestrel:{}", def.name)
}

impl TableText {
    pub fn new(table: &Arc<IndexedTable>, table_name: &str) -> Self {
        Self {
            table: Arc::downgrade(table),
            table_name: table_name.to_string(),
            defs: Mutex::new(Vec::new()),
            built: Mutex::new(None),
            stats: Mutex::new(TextStats::default()),
        }
    }

    pub fn defs(&self) -> Vec<TextIndexDef> {
        self.defs.lock().map(|d| d.clone()).unwrap_or_default()
    }

    pub fn def(&self, name: &str) -> Option<TextIndexDef> {
        self.defs().into_iter().find(|d| d.name == name)
    }

    pub fn stats(&self) -> TextStats {
        let mut stats = self.stats.lock().map(|s| s.clone()).unwrap_or_default();
        if let Ok(built) = self.built.lock() {
            if let Some(b) = built.as_ref() {
                let searcher = b.reader.searcher();
                stats.rows_indexed = searcher.num_docs() as usize;
                stats.segments = searcher.segment_readers().len();
            }
        }
        stats
    }

    /// Rows of the table the index has not taken in yet (all of them after a DELETE/UPDATE, until the next search).
    pub fn pending_rows(&self, snapshot: &TableSnapshot) -> usize {
        let Ok(built) = self.built.lock() else {
            return 0;
        };
        let Some(b) = built.as_ref() else {
            return snapshot.batches().iter().map(|b| b.num_rows()).sum();
        };
        let from: &[usize] = if b.version == snapshot.version() {
            &b.watermark
        } else {
            &[]
        };
        snapshot.rows_beyond(from)
    }

    /// Replaces the table's index definitions; the next refresh re-reads the table into a tantivy index with a
    /// field for each.
    pub fn set_defs(&self, defs: Vec<TextIndexDef>) -> Result<()> {
        let mut built = self
            .built
            .lock()
            .map_err(|_| DataFusionError::Internal("full-text index poisoned".into()))?;
        *built = None;
        *self
            .defs
            .lock()
            .map_err(|_| DataFusionError::Internal("full-text index poisoned".into()))? = defs;
        Ok(())
    }

    fn build_empty(defs: &[TextIndexDef]) -> Result<Built> {
        let mut schema = Schema::builder();
        let row = schema.add_u64_field(
            ROW_FIELD,
            NumericOptions::default().set_fast().set_indexed(),
        );
        let fields: Vec<Field> = defs
            .iter()
            .map(|d| {
                let indexing = TextFieldIndexing::default()
                    .set_tokenizer(&tokenizer_key(d))
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions);
                schema.add_text_field(
                    &d.name,
                    TextOptions::default().set_indexing_options(indexing),
                )
            })
            .collect();
        let index = Index::create_in_ram(schema.build());
        for d in defs {
            index
                .tokenizers()
                .register(&tokenizer_key(d), d.analyzer.build()?);
        }
        let writer = index
            .writer_with_num_threads(1, WRITER_BUDGET)
            .map_err(|e| tantivy_error("cannot start a writer", e))?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| tantivy_error("cannot open a reader", e))?;
        Ok(Built {
            index,
            reader,
            writer,
            row,
            fields,
            watermark: Vec::new(),
            version: 0,
            evicted_below: 0,
        })
    }

    /// Whether the index already holds exactly the rows of `snapshot`, so that [`TableText::refresh`] would have
    /// nothing to do. False while another statement is refreshing it.
    pub fn is_current(&self, snapshot: &TableSnapshot) -> bool {
        let Ok(guard) = self.built.try_lock() else {
            return false;
        };
        guard.as_ref().is_some_and(|b| {
            b.version == snapshot.version()
                && snapshot.oldest_key().is_none_or(|k| k <= b.evicted_below)
                && snapshot.rows_beyond(&b.watermark) == 0
        })
    }

    /// Takes in every row of `snapshot` the index does not have (all of them if the table was rewritten), deletes
    /// evicted rows of a live table, and commits if anything changed. `progress(done, total)` is told as rows go in.
    pub fn refresh(&self, snapshot: &TableSnapshot, progress: &dyn Fn(usize, usize)) -> Result<()> {
        let defs = self.defs();
        let mut guard = self
            .built
            .lock()
            .map_err(|_| DataFusionError::Internal("full-text index poisoned".into()))?;
        if guard.is_none() {
            *guard = Some(Self::build_empty(&defs)?);
        }
        let Some(b) = guard.as_mut() else {
            return Err(DataFusionError::Internal("full-text index missing".into()));
        };
        let started = Instant::now();
        let mut changed = false;
        if b.version != snapshot.version() {
            b.writer
                .delete_all_documents()
                .map_err(|e| tantivy_error("cannot clear", e))?;
            b.watermark.clear();
            b.version = snapshot.version();
            changed = true;
        }
        if let Some(oldest) = snapshot.oldest_key() {
            if oldest > b.evicted_below {
                let query = RangeQuery::new(
                    Bound::Unbounded,
                    Bound::Excluded(Term::from_field_u64(b.row, oldest)),
                );
                b.writer
                    .delete_query(Box::new(query))
                    .map_err(|e| tantivy_error("cannot delete evicted rows", e))?;
                b.evicted_below = oldest;
                changed = true;
            }
        }
        let total = snapshot.rows_beyond(&b.watermark);
        if total > 0 {
            let batches = snapshot.batches();
            let mut columns: Vec<(usize, Vec<Option<Texts>>)> = Vec::new();
            let mut done = 0usize;
            let (writer, row_field, fields) = (&b.writer, b.row, &b.fields);
            snapshot.for_each_row_beyond(&b.watermark, |batch, row, key| {
                if columns.last().map(|c| c.0) != Some(batch) {
                    let texts = defs
                        .iter()
                        .flat_map(|d| d.column_indices.iter().zip(&d.columns))
                        .map(|(&i, name)| {
                            Texts::of(batches[batch].column(i).as_ref(), name).map(Some)
                        })
                        .collect::<Result<Vec<_>>>()?;
                    columns.push((batch, texts));
                }
                let Some((_, texts)) = columns.last() else {
                    return Ok(());
                };
                let mut doc = TantivyDocument::default();
                doc.add_u64(row_field, key);
                let mut t = 0;
                for (d, field) in defs.iter().zip(fields) {
                    for _ in &d.column_indices {
                        if let Some(Some(text)) =
                            texts.get(t).map(|c| c.as_ref().and_then(|c| c.get(row)))
                        {
                            doc.add_text(*field, text);
                        }
                        t += 1;
                    }
                }
                writer
                    .add_document(doc)
                    .map_err(|e| tantivy_error("cannot add a row", e))?;
                done += 1;
                if done % 8192 == 0 {
                    progress(done, total);
                }
                Ok(())
            })?;
            progress(done, total);
            changed = true;
        }
        b.watermark = snapshot.watermark();
        if changed {
            b.writer
                .commit()
                .map_err(|e| tantivy_error("cannot commit", e))?;
            b.reader
                .reload()
                .map_err(|e| tantivy_error("cannot reload", e))?;
            if let Ok(mut s) = self.stats.lock() {
                s.build_time += started.elapsed();
                s.commits += 1;
            }
        }
        Ok(())
    }

    /// Builds the tantivy query of a MATCH against this table's fields.
    pub fn query(&self, spec: &MatchSpec) -> Result<Box<dyn Query>> {
        let guard = self
            .built
            .lock()
            .map_err(|_| DataFusionError::Internal("full-text index poisoned".into()))?;
        let Some(b) = guard.as_ref() else {
            return exec_err!("full-text index of {} is not built", self.table_name);
        };
        let defs = self.defs();
        let targets = spec
            .targets
            .iter()
            .map(|t: &TargetRef| {
                let i = defs.iter().position(|d| d.name == t.index).ok_or_else(|| {
                    DataFusionError::Plan(format!(
                        "MATCH: {} has no full-text index {}",
                        self.table_name, t.index
                    ))
                })?;
                Ok((b.fields[i], defs[i].analyzer.clone(), t.boost))
            })
            .collect::<Result<Vec<_>>>()?;
        super::query::build(&b.index, &targets, spec)
    }

    /// Rows matching `query` among those `allowed` lets through, best first: (row key, BM25 score). At most `limit`
    /// rows when given (the top ones); every match otherwise.
    pub fn search(
        &self,
        query: &dyn Query,
        allowed: Option<Arc<Allowed>>,
        limit: Option<usize>,
    ) -> Result<Vec<(u64, f32)>> {
        let searcher = {
            let guard = self
                .built
                .lock()
                .map_err(|_| DataFusionError::Internal("full-text index poisoned".into()))?;
            let Some(b) = guard.as_ref() else {
                return Ok(Vec::new());
            };
            b.reader.searcher()
        };
        let err = |e| tantivy_error("search failed", e);
        let mut hits: Vec<(u64, f32)> = match limit {
            Some(k) => {
                let docs = match allowed {
                    None => searcher
                        .search(query, &TopDocs::with_limit(k.max(1)).order_by_score())
                        .map_err(err)?,
                    Some(a) => searcher
                        .search(
                            query,
                            &FilterCollector::new(
                                ROW_FIELD.to_string(),
                                move |key: u64| a.contains(key),
                                TopDocs::with_limit(k.max(1)).order_by_score(),
                            ),
                        )
                        .map_err(err)?,
                };
                let mut out = Vec::with_capacity(docs.len());
                for (score, address) in docs {
                    let column = searcher
                        .segment_reader(address.segment_ord)
                        .fast_fields()
                        .u64(ROW_FIELD)
                        .map_err(err)?;
                    if let Some(key) = column.first(address.doc_id) {
                        out.push((key, score));
                    }
                }
                if k == 0 {
                    out.clear();
                }
                out
            }
            None => searcher
                .search(query, &AllMatches { allowed })
                .map_err(err)?,
        };
        hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(hits)
    }
}

/// The rows a WHERE clause's other conditions let through, by row key.
pub struct Allowed {
    pub snapshot: TableSnapshot,
    pub masks: Vec<BooleanArray>,
}

impl Allowed {
    pub fn contains(&self, key: u64) -> bool {
        match self.snapshot.locate_key(key) {
            Some((b, r)) => self
                .masks
                .get(b)
                .is_some_and(|m| m.is_valid(r) && m.value(r)),
            None => false,
        }
    }
}

/// Collects every matching document with its score (MATCH is a condition: every matching row is in the result).
struct AllMatches {
    allowed: Option<Arc<Allowed>>,
}

struct AllMatchesSegment {
    rows: tantivy::columnar::Column<u64>,
    allowed: Option<Arc<Allowed>>,
    hits: Vec<(u64, f32)>,
}

impl Collector for AllMatches {
    type Fruit = Vec<(u64, f32)>;
    type Child = AllMatchesSegment;

    fn for_segment(
        &self,
        _ord: u32,
        segment: &SegmentReader,
    ) -> tantivy::Result<AllMatchesSegment> {
        Ok(AllMatchesSegment {
            rows: segment.fast_fields().u64(ROW_FIELD)?,
            allowed: self.allowed.clone(),
            hits: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        true
    }

    fn merge_fruits(&self, fruits: Vec<Vec<(u64, f32)>>) -> tantivy::Result<Vec<(u64, f32)>> {
        Ok(fruits.into_iter().flatten().collect())
    }
}

impl SegmentCollector for AllMatchesSegment {
    type Fruit = Vec<(u64, f32)>;

    fn collect(&mut self, doc: DocId, score: Score) {
        if let Some(key) = self.rows.first(doc) {
            if self.allowed.as_ref().is_none_or(|a| a.contains(key)) {
                self.hits.push((key, score));
            }
        }
    }

    fn harvest(self) -> Vec<(u64, f32)> {
        self.hits
    }
}
