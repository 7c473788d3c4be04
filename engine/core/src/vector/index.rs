//! HNSW indexes on vector columns, kept fresh as rows arrive.
//!
//! An index is a list of immutable *segments*, each an ANN graph over some of the table's rows, plus a watermark:
//! how many batches of each partition the segments cover. Rows beyond the watermark (the *tail*: INSERTs since the
//! last build) are searched exactly, so a row is findable the moment it is inserted. Once the tail is large enough
//! a background thread builds it into a new segment; when there are too many segments, small ones are merged.
//! A DELETE or UPDATE (which rewrites a memory table's batches) makes every segment stale: searches fall back to
//! exact until a background rebuild lands. Segments hold at most [`SEGMENT_CAPACITY`] rows (hora's limit per graph),
//! so an index can cover any number of rows.
//!
//! On a Kafka live table rows are addressed by their sequence number instead (the table's chunks stop merging
//! once indexed, and retention only drops the oldest): the watermark is one sequence number, new rows are taken in
//! as they are appended, a hit on a row retention has evicted is skipped, and segments whose rows are all evicted
//! are dropped.
//!
//! The graph library sits behind [`AnnIndex`]; `hora` is the one backend today.

use super::convert::Vectors;
use super::knn::{Hit, PreparedQuery, TopK};
use super::Metric;
use crate::stream::live::{AppendHook, LiveTable};
use crate::views::MaterializedView;
use datafusion::arrow::array::{Array, BooleanArray, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{MemTable, Session};
use datafusion::common::{plan_err, Constraints, DataFusionError, Result, Statistics};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Most rows in one graph (hora's cap per index).
pub const SEGMENT_CAPACITY: usize = 1_000_000;
/// Tail rows that trigger a background segment build.
const CATCH_UP_ROWS: usize = 4_096;
/// More segments than this are merged in the background.
const MAX_SEGMENTS: usize = 8;
/// A filter that leaves at most this many rows (or under 1/20 of the table) is answered exactly: cheaper than
/// walking a graph for candidates that mostly fail the filter, and always complete.
const EXACT_BELOW: usize = 20_000;
/// Segments this small are ranked exactly: as fast as a graph walk, and never approximate.
const EXACT_SEGMENT: usize = 2_048;

/// HNSW parameters (`WITH (m = .., ef_construction = .., ef_search = ..)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswParams {
    pub m: usize,
    pub ef_construction: usize,
    pub ef_search: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        Self {
            m: 16,
            ef_construction: 200,
            ef_search: 64,
        }
    }
}

/// An approximate nearest-neighbour structure over items `0..len`.
pub trait AnnIndex: Send + Sync + fmt::Debug {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Up to `k` item ids, nearest first (approximately), exploring at least `ef` candidates.
    fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<usize>;
    /// The backend's name, for EXPLAIN and sys.indexes.
    fn backend(&self) -> &'static str;
}

/// Builds an ANN index over `n = vectors.len() / dim` items; `progress(done)` is called as items are added.
pub fn build_hnsw(
    vectors: &[f32],
    dim: usize,
    metric: Metric,
    params: HnswParams,
    threads: usize,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Box<dyn AnnIndex>> {
    hora_backend::build(vectors, dim, metric, params, threads, progress)
}

mod hora_backend {
    use super::*;
    use hora::core::ann_index::ANNIndex;
    use hora::core::metrics::Metric as HoraMetric;
    use hora::index::hnsw_idx::HNSWIndex;
    use hora::index::hnsw_params::HNSWParams;

    /// How vectors are mapped into the euclidean space hora searches. hora 0.1.1's own DotProduct metric ranks
    /// the *farthest* first (its dot product is negated twice) and its CosineSimilarity takes square roots of
    /// negated norms, so only its Euclidean metric is usable: cosine becomes euclidean over normalised vectors
    /// (‖a−b‖² = 2 − 2cos), and inner product becomes euclidean by the standard MIPS augmentation (each item gets
    /// an extra coordinate √(M² − ‖x‖²), the query gets 0, so ‖q − x‖² = ‖q‖² + M² − 2q·x).
    #[derive(Debug, Clone, Copy)]
    enum Transform {
        Identity,
        Normalize,
        Augment { max_norm_sq: f32 },
    }

    impl Transform {
        fn item(self, v: &[f32]) -> Vec<f32> {
            match self {
                Transform::Identity => v.to_vec(),
                Transform::Normalize => normalized(v),
                Transform::Augment { max_norm_sq } => {
                    let mut out = Vec::with_capacity(v.len() + 1);
                    out.extend_from_slice(v);
                    let norm_sq = crate::vector::kernels::norm_squared(v);
                    out.push((max_norm_sq - norm_sq).max(0.0).sqrt());
                    out
                }
            }
        }

        fn query(self, v: &[f32]) -> Vec<f32> {
            match self {
                Transform::Identity => v.to_vec(),
                Transform::Normalize => normalized(v),
                Transform::Augment { .. } => {
                    let mut out = Vec::with_capacity(v.len() + 1);
                    out.extend_from_slice(v);
                    out.push(0.0);
                    out
                }
            }
        }

        fn dim(self, dim: usize) -> usize {
            match self {
                Transform::Augment { .. } => dim + 1,
                _ => dim,
            }
        }
    }

    pub struct Hora {
        index: HNSWIndex<f32, usize>,
        len: usize,
        transform: Transform,
    }

    impl fmt::Debug for Hora {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "Hora(hnsw, {} items)", self.len)
        }
    }

    impl AnnIndex for Hora {
        fn len(&self) -> usize {
            self.len
        }

        fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<usize> {
            if self.len == 0 {
                return Vec::new();
            }
            let q = self.transform.query(query);
            // hora fixes ef_search when the index is built and explores max(ef_search, n) candidates for n
            // results; built with ef_search = 1, asking for max(k, ef) results makes ef a per-query setting.
            // The caller re-ranks exactly and keeps k.
            let n = k.max(ef).min(self.len);
            // hora panics rather than returning errors; a failed search must not take the kernel down.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.index.search(&q, n)))
                .unwrap_or_default()
        }

        fn backend(&self) -> &'static str {
            "hora hnsw"
        }
    }

    fn normalized(v: &[f32]) -> Vec<f32> {
        let norm = crate::vector::kernels::norm_squared(v).sqrt();
        if norm > 0.0 {
            v.iter().map(|x| x / norm).collect()
        } else {
            v.to_vec()
        }
    }

    pub fn build(
        vectors: &[f32],
        dim: usize,
        metric: Metric,
        params: HnswParams,
        threads: usize,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Box<dyn AnnIndex>> {
        let n = vectors.len() / dim.max(1);
        if n > SEGMENT_CAPACITY {
            return plan_err!("an index segment holds at most {SEGMENT_CAPACITY} vectors, got {n}");
        }
        let hora_params = HNSWParams::<f32>::default()
            .max_item(n.max(1))
            .n_neighbor(params.m)
            .n_neighbor0(params.m * 2)
            .ef_build(params.ef_construction)
            .ef_search(1);
        let transform = match metric {
            Metric::Euclidean => Transform::Identity,
            Metric::Cosine => Transform::Normalize,
            Metric::Dot => Transform::Augment {
                max_norm_sq: vectors
                    .chunks_exact(dim.max(1))
                    .map(crate::vector::kernels::norm_squared)
                    .fold(0.0, f32::max),
            },
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .build()
            .map_err(|e| {
                DataFusionError::Execution(format!("cannot start index build threads: {e}"))
            })?;
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut index = HNSWIndex::<f32, usize>::new(transform.dim(dim), &hora_params);
            // Items are added and linked in chunks so a long build can report progress.
            let chunk = (n / 50).clamp(1_000, 50_000);
            let mut done = 0;
            while done < n {
                let end = (done + chunk).min(n);
                for i in done..end {
                    let v = &vectors[i * dim..(i + 1) * dim];
                    let r = match transform {
                        Transform::Identity => index.add(v, i),
                        t => index.add(&t.item(v), i),
                    };
                    r.map_err(|e| format!("adding vector {i}: {e}"))?;
                }
                pool.install(|| index.build(HoraMetric::Euclidean))
                    .map_err(|e| format!("linking vectors {done}..{end}: {e}"))?;
                done = end;
                progress(done);
            }
            Ok::<_, String>(index)
        }));
        match built {
            Ok(Ok(index)) => Ok(Box::new(Hora {
                index,
                len: n,
                transform,
            })),
            Ok(Err(e)) => Err(DataFusionError::Execution(format!(
                "index build failed: {e}"
            ))),
            Err(_) => Err(DataFusionError::Execution(
                "index build failed: the HNSW library panicked".into(),
            )),
        }
    }
}

/// Where a vector lives in a memory table: partition, batch within the partition, row within the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowRef {
    pub partition: u32,
    pub batch: u32,
    pub row: u32,
}

impl RowRef {
    /// A live table's row by sequence number (the high and low halves in `batch` and `row`).
    pub fn seq(n: u64) -> Self {
        Self {
            partition: 0,
            batch: (n >> 32) as u32,
            row: n as u32,
        }
    }

    fn seq_number(self) -> u64 {
        ((self.batch as u64) << 32) | self.row as u64
    }
}

/// One immutable graph over some rows.
#[derive(Debug)]
pub struct Segment {
    index: Box<dyn AnnIndex>,
    rows: Vec<RowRef>,
}

impl Segment {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

#[derive(Debug, Clone, Default)]
struct IndexState {
    segments: Vec<Arc<Segment>>,
    /// Batches of each partition covered by the segments.
    watermark: Vec<usize>,
    /// The table version the segments were built from.
    version: u64,
}

/// One `CREATE INDEX ... USING hnsw`.
#[derive(Debug)]
pub struct VectorIndex {
    pub name: String,
    pub table: String,
    pub column: String,
    pub column_index: usize,
    pub dim: usize,
    pub metric: Metric,
    pub params: HnswParams,
    /// Candidates explored per search; starts at `params.ef_search`, adjustable without a rebuild.
    ef_search: std::sync::atomic::AtomicUsize,
    /// Filters passing at most this many rows are answered exactly (starts at [`EXACT_BELOW`]).
    exact_below: std::sync::atomic::AtomicUsize,
    state: RwLock<IndexState>,
    building: AtomicBool,
    /// Time spent building (CREATE INDEX plus background catch-up and merges).
    build_time: Mutex<Duration>,
    last_error: Mutex<Option<String>>,
}

/// What sys.indexes shows about an index.
#[derive(Debug, Clone)]
pub struct IndexStats {
    pub rows_indexed: usize,
    pub segments: usize,
    pub build_time: Duration,
    pub building: bool,
    pub last_error: Option<String>,
}

impl VectorIndex {
    pub fn stats(&self) -> IndexStats {
        let state = self.state.read().map(|s| s.clone()).unwrap_or_default();
        IndexStats {
            rows_indexed: state.segments.iter().map(|s| s.len()).sum(),
            segments: state.segments.len(),
            build_time: self.build_time.lock().map(|d| *d).unwrap_or_default(),
            building: self.building.load(Ordering::Relaxed),
            last_error: self.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }

    pub fn ef_search(&self) -> usize {
        self.ef_search.load(Ordering::Relaxed)
    }

    /// Changes how many candidates a search explores (recall against speed); no rebuild needed.
    pub fn set_ef_search(&self, ef: usize) {
        self.ef_search.store(ef.max(1), Ordering::Relaxed);
    }

    pub fn exact_below(&self) -> usize {
        self.exact_below.load(Ordering::Relaxed)
    }

    /// Changes the filter size under which searches are exact (tests use 0 to exercise filtered graph search).
    pub fn set_exact_below(&self, rows: usize) {
        self.exact_below.store(rows, Ordering::Relaxed);
    }

    fn state(&self) -> IndexState {
        self.state.read().map(|s| s.clone()).unwrap_or_default()
    }

    fn add_build_time(&self, d: Duration) {
        if let Ok(mut t) = self.build_time.lock() {
            *t += d;
        }
    }
}

/// A consistent view of a table's batches for one search.
#[derive(Debug, Clone)]
pub struct TableSnapshot {
    partitions: Vec<usize>,
    flat: Vec<RecordBatch>,
    /// Flat index of each partition's first batch.
    starts: Vec<usize>,
    version: u64,
    /// A live table's: rows are addressed by sequence number.
    seq: Option<Sequence>,
}

#[derive(Debug, Clone)]
struct Sequence {
    /// The sequence number of each flat batch's first row (ascending).
    first: Vec<u64>,
    /// The next row's sequence number.
    end: u64,
}

impl TableSnapshot {
    /// Over an in-memory table's partitions (rows addressed by partition, batch and row).
    fn of_partitions<'a>(parts: impl Iterator<Item = &'a [RecordBatch]>, version: u64) -> Self {
        let mut partitions = Vec::new();
        let mut flat = Vec::new();
        let mut starts = Vec::new();
        for batches in parts {
            starts.push(flat.len());
            partitions.push(batches.len());
            flat.extend(batches.iter().cloned());
        }
        TableSnapshot {
            partitions,
            flat,
            starts,
            version,
            seq: None,
        }
    }

    pub fn batches(&self) -> &[RecordBatch] {
        &self.flat
    }

    pub fn into_batches(self) -> Vec<RecordBatch> {
        self.flat
    }

    /// Where a row is in this snapshot: (flat batch, row); `None` if it is not (evicted, or rewritten).
    fn locate(&self, r: RowRef) -> Option<(usize, usize)> {
        let (batch, row) = match &self.seq {
            None => {
                let p = r.partition as usize;
                if r.batch as usize >= *self.partitions.get(p)? {
                    return None;
                }
                (self.starts[p] + r.batch as usize, r.row as usize)
            }
            Some(seq) => {
                let n = r.seq_number();
                let batch = seq.first.partition_point(|&f| f <= n).checked_sub(1)?;
                (batch, (n - seq.first[batch]) as usize)
            }
        };
        (row < self.flat.get(batch)?.num_rows()).then_some((batch, row))
    }

    /// The watermark after indexing everything in this snapshot: batch counts per partition, or a live table's
    /// next sequence number.
    fn batch_counts(&self) -> Vec<usize> {
        match &self.seq {
            None => self.partitions.clone(),
            Some(seq) => vec![seq.end as usize],
        }
    }

    /// The flat batches beyond a watermark (a live table's chunks never straddle one: they stop merging when
    /// indexed, and retention only trims the oldest).
    fn beyond(&self, watermark: &[usize]) -> Vec<usize> {
        match &self.seq {
            None => self
                .partitions
                .iter()
                .enumerate()
                .flat_map(|(p, &count)| {
                    let from = watermark.get(p).copied().unwrap_or(0).min(count);
                    (from..count).map(move |b| self.starts[p] + b)
                })
                .collect(),
            Some(seq) => {
                let w = watermark.first().copied().unwrap_or(0) as u64;
                (0..self.flat.len())
                    .filter(|&b| seq.first[b] + self.flat[b].num_rows() as u64 > w)
                    .collect()
            }
        }
    }

    /// Whether none of a segment's rows is left (a live table's retention evicted them all).
    fn evicted(&self, segment: &Segment) -> bool {
        match &self.seq {
            None => false,
            Some(seq) => {
                let oldest = seq.first.first().copied().unwrap_or(seq.end);
                segment.rows.iter().all(|r| r.seq_number() < oldest)
            }
        }
    }

    fn rows(&self) -> usize {
        self.flat.iter().map(|b| b.num_rows()).sum()
    }

    /// The vectors and row references of the batches from `from` (the watermark) on.
    fn collect(
        &self,
        column: usize,
        from: &[usize],
        dim: usize,
    ) -> Result<(Vec<f32>, Vec<RowRef>)> {
        let mut values = Vec::new();
        let mut rows = Vec::new();
        if let Some(seq) = &self.seq {
            let w = from.first().copied().unwrap_or(0) as u64;
            for b in self.beyond(from) {
                let batch = &self.flat[b];
                let vectors = Vectors::read(batch.column(column), "indexed column", Some(dim))?;
                for row in 0..batch.num_rows() {
                    let n = seq.first[b] + row as u64;
                    if let (true, Some(v)) = (n >= w, vectors.get(row)) {
                        values.extend_from_slice(v);
                        rows.push(RowRef::seq(n));
                    }
                }
            }
            return Ok((values, rows));
        }
        for (p, &count) in self.partitions.iter().enumerate() {
            let first = from.get(p).copied().unwrap_or(0);
            for b in first..count {
                let batch = &self.flat[self.starts[p] + b];
                let vectors = Vectors::read(batch.column(column), "indexed column", Some(dim))?;
                for row in 0..batch.num_rows() {
                    if let Some(v) = vectors.get(row) {
                        values.extend_from_slice(v);
                        rows.push(RowRef {
                            partition: p as u32,
                            batch: b as u32,
                            row: row as u32,
                        });
                    }
                }
            }
        }
        Ok((values, rows))
    }

    fn vector(&self, column: usize, r: RowRef) -> Option<Vec<f32>> {
        let (batch, row) = self.locate(r)?;
        let vectors =
            Vectors::read(self.flat[batch].column(column), "indexed column", None).ok()?;
        vectors.get(row).map(|v| v.to_vec())
    }
}

/// What other indexes over an [`IndexedTable`] (full-text) need of a snapshot: rows addressed by one `u64` key
/// that stays valid while the rows do (a memory table's partition, batch and row packed; a live table's sequence
/// number), so an index can name rows without holding them.
impl TableSnapshot {
    /// The table version the snapshot saw: DELETE, UPDATE and TRUNCATE bump it, and every row key changes.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The watermark after taking in every row of this snapshot.
    pub fn watermark(&self) -> Vec<usize> {
        self.batch_counts()
    }

    /// Calls `f(flat batch, row, key)` for every row beyond a watermark, in order.
    /// How many rows [`Self::for_each_row_beyond`] would visit, without visiting them.
    pub fn rows_beyond(&self, from: &[usize]) -> usize {
        match &self.seq {
            Some(seq) => {
                let w = from.first().copied().unwrap_or(0) as u64;
                self.beyond(from)
                    .into_iter()
                    .map(|b| {
                        let rows = self.flat[b].num_rows();
                        rows - (w.saturating_sub(seq.first[b]) as usize).min(rows)
                    })
                    .sum()
            }
            None => self
                .beyond(from)
                .into_iter()
                .map(|b| self.flat[b].num_rows())
                .sum(),
        }
    }

    pub fn for_each_row_beyond(
        &self,
        from: &[usize],
        mut f: impl FnMut(usize, usize, u64) -> Result<()>,
    ) -> Result<()> {
        if let Some(seq) = &self.seq {
            let w = from.first().copied().unwrap_or(0) as u64;
            for b in self.beyond(from) {
                for row in 0..self.flat[b].num_rows() {
                    let n = seq.first[b] + row as u64;
                    if n >= w {
                        f(b, row, n)?;
                    }
                }
            }
            return Ok(());
        }
        for (p, &count) in self.partitions.iter().enumerate() {
            for b in from.get(p).copied().unwrap_or(0)..count {
                if p >= 1 << 8 || b >= 1 << 24 {
                    return plan_err!(
                        "a table of more than 256 partitions or 16M batches per partition cannot be \
                         indexed; rewrite it with CREATE TABLE ... AS SELECT"
                    );
                }
                let flat = self.starts[p] + b;
                let base = ((p as u64) << 56) | ((b as u64) << 32);
                for row in 0..self.flat[flat].num_rows() {
                    f(flat, row, base | row as u64)?;
                }
            }
        }
        Ok(())
    }

    /// Where the row with this key is in the snapshot: (flat batch, row); `None` if it is gone.
    pub fn locate_key(&self, key: u64) -> Option<(usize, usize)> {
        let r = if self.seq.is_some() {
            RowRef::seq(key)
        } else {
            RowRef {
                partition: (key >> 56) as u32,
                batch: ((key >> 32) & 0xff_ffff) as u32,
                row: key as u32,
            }
        };
        self.locate(r)
    }

    /// A live table's oldest row still held (keys below it were evicted); `None` for memory tables.
    pub fn oldest_key(&self) -> Option<u64> {
        let seq = self.seq.as_ref()?;
        Some(seq.first.first().copied().unwrap_or(seq.end))
    }
}

/// A table with vector indexes. Reads and writes go to the wrapped table.
/// - An in-memory table: INSERT appends batches, which the indexes pick up; DELETE, UPDATE and TRUNCATE bump the
///   version, which invalidates them.
/// - A Kafka live table: appended rows are taken in as they arrive; rows retention evicts leave the results.
#[derive(Debug)]
pub struct IndexedTable {
    inner: Arc<dyn TableProvider>,
    rows: Rows,
    version: AtomicU64,
    indexes: RwLock<Vec<Arc<VectorIndex>>>,
}

#[derive(Debug)]
enum Rows {
    Memory(Arc<MemTable>),
    Live(Arc<LiveTable>),
    /// A materialized view: a live source's maintainer appends batches to it, a REFRESH replaces them.
    View(Arc<MaterializedView>),
}

impl IndexedTable {
    pub fn new(inner: Arc<MemTable>) -> Self {
        Self {
            inner: inner.clone(),
            rows: Rows::Memory(inner),
            version: AtomicU64::new(0),
            indexes: RwLock::new(Vec::new()),
        }
    }

    /// Indexes over a live table (`provider` is what DataFusion had registered for it).
    pub fn over_live(provider: Arc<dyn TableProvider>, live: Arc<LiveTable>) -> Arc<Self> {
        live.fix_positions();
        let table = Arc::new(Self {
            inner: provider,
            rows: Rows::Live(live.clone()),
            version: AtomicU64::new(0),
            indexes: RwLock::new(Vec::new()),
        });
        let weak = Arc::downgrade(&table);
        live.on_append(AppendHook(Arc::new(move || {
            if let Some(t) = weak.upgrade() {
                t.take_in_appends();
            }
        })));
        table
    }

    /// Indexes over a materialized view (`provider` is what DataFusion had registered for it).
    pub fn over_view(provider: Arc<dyn TableProvider>, view: Arc<MaterializedView>) -> Self {
        Self {
            inner: provider,
            rows: Rows::View(view),
            version: AtomicU64::new(0),
            indexes: RwLock::new(Vec::new()),
        }
    }

    /// The live table under an indexed table, for [`crate::stream::Sources::add_wrapper`].
    pub fn live_under(provider: &dyn std::any::Any) -> Option<Arc<LiveTable>> {
        provider.downcast_ref::<IndexedTable>()?.live().cloned()
    }

    /// The live table under the indexes, if that is what they index.
    pub fn live(&self) -> Option<&Arc<LiveTable>> {
        match &self.rows {
            Rows::Live(l) => Some(l),
            Rows::Memory(_) | Rows::View(_) => None,
        }
    }

    /// After a live table's append: an index whose tail has grown past [`CATCH_UP_ROWS`] builds it into a segment in
    /// the background (without waiting for a search to notice).
    fn take_in_appends(&self) {
        let Rows::Live(live) = &self.rows else {
            return;
        };
        let end = live.sizes().2 as usize;
        for index in self.indexes() {
            let w = index.state().watermark.first().copied().unwrap_or(0);
            if end.saturating_sub(w) < CATCH_UP_ROWS || index.building.swap(true, Ordering::AcqRel)
            {
                continue;
            }
            // builds until the tail is small again: rows that arrived during a build are not left waiting for
            // the next append
            let live = live.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("index {}", index.name))
                .spawn({
                    let index = index.clone();
                    move || loop {
                        let snapshot = live_snapshot(&live);
                        let w = index.state().watermark.first().copied().unwrap_or(0);
                        if (snapshot.batch_counts()[0]).saturating_sub(w) < CATCH_UP_ROWS {
                            break index.building.store(false, Ordering::Release);
                        }
                        let started = Instant::now();
                        let result = catch_up(&index, &snapshot);
                        index.add_build_time(started.elapsed());
                        let failed = result.is_err();
                        if let Ok(mut e) = index.last_error.lock() {
                            *e = result.err().map(|e| e.to_string());
                        }
                        if failed {
                            break index.building.store(false, Ordering::Release);
                        }
                    }
                });
            if spawned.is_err() {
                index.building.store(false, Ordering::Release);
            }
        }
    }

    /// The table `name` of a session as an [`IndexedTable`], wrapping (and re-registering) an in-memory or Kafka
    /// live table the first time an index is created on it. `what` names the index kind in the error for tables
    /// read from files.
    pub async fn attach(
        ctx: &datafusion::execution::context::SessionContext,
        name: &str,
        what: &str,
    ) -> Result<Arc<IndexedTable>> {
        use std::any::Any;
        let table_ref = datafusion::common::TableReference::from(name);
        let provider = ctx.table_provider(table_ref.clone()).await?;
        if super::knn::downcast::<IndexedTable>(&provider).is_some() {
            let any: Arc<dyn Any + Send + Sync> = provider;
            return any
                .downcast::<IndexedTable>()
                .map_err(|_| DataFusionError::Internal("indexed table changed type".into()));
        }
        let indexed = if super::knn::downcast::<MemTable>(&provider).is_some() {
            let any: Arc<dyn Any + Send + Sync> = provider;
            let mem = any
                .downcast::<MemTable>()
                .map_err(|_| DataFusionError::Internal("memory table changed type".into()))?;
            Arc::new(IndexedTable::new(mem))
        } else if let Some(live) = super::knn::downcast::<crate::stream::LiveProvider>(&provider) {
            // a Kafka live table: the indexes take appended rows in as they arrive
            IndexedTable::over_live(provider.clone(), live.0.clone())
        } else if let Some(view) = crate::views::view_behind(&provider) {
            // a materialized view: rows its maintainer appends extend the indexes, a refresh rebuilds them
            Arc::new(IndexedTable::over_view(provider.clone(), view))
        } else {
            return plan_err!(
                "{what} needs an in-memory table, and {name} is read from a file or a source; load it first: \
                 CREATE TABLE {name}_mem AS SELECT * FROM {name}"
            );
        };
        ctx.deregister_table(table_ref.clone())?;
        ctx.register_table(table_ref, indexed.clone())?;
        Ok(indexed)
    }

    pub fn indexes(&self) -> Vec<Arc<VectorIndex>> {
        self.indexes.read().map(|i| i.clone()).unwrap_or_default()
    }

    pub fn remove_index(&self, name: &str) -> bool {
        match self.indexes.write() {
            Ok(mut list) => {
                let before = list.len();
                list.retain(|i| i.name != name);
                list.len() != before
            }
            Err(_) => false,
        }
    }

    /// Rows not yet in the index's graphs (searched exactly until a background build takes them in): appended
    /// since the last build, or all of them after a DELETE/UPDATE until the rebuild lands.
    pub fn pending_rows(&self, index: &VectorIndex) -> usize {
        let state = index.state();
        // a write holding a partition: nothing to report until it is done
        let Some(snapshot) = self.try_snapshot() else {
            return 0;
        };
        let batches = if state.version != snapshot.version {
            (0..snapshot.flat.len()).collect()
        } else {
            snapshot.beyond(&state.watermark)
        };
        batches
            .into_iter()
            .map(|b| {
                let batch = &snapshot.flat[b];
                batch.num_rows() - batch.column(index.column_index).null_count()
            })
            .sum()
    }

    fn index_on(&self, column: usize) -> Option<Arc<VectorIndex>> {
        self.indexes()
            .into_iter()
            .find(|i| i.column_index == column)
    }

    pub async fn snapshot(&self) -> TableSnapshot {
        match &self.rows {
            Rows::Memory(m) => {
                let version = self.version.load(Ordering::Acquire);
                let mut guards = Vec::with_capacity(m.batches.len());
                for p in &m.batches {
                    guards.push(p.read().await);
                }
                TableSnapshot::of_partitions(guards.iter().map(|g| g.as_slice()), version)
            }
            Rows::Live(live) => live_snapshot(live),
            Rows::View(view) => view_snapshot(view),
        }
    }

    /// The snapshot now without waiting (for sys tables, which cannot await): `None` while a write holds a
    /// partition.
    pub fn try_snapshot(&self) -> Option<TableSnapshot> {
        match &self.rows {
            Rows::Memory(m) => {
                let version = self.version.load(Ordering::Acquire);
                let guards = m
                    .batches
                    .iter()
                    .map(|p| p.try_read().ok())
                    .collect::<Option<Vec<_>>>()?;
                Some(TableSnapshot::of_partitions(
                    guards.iter().map(|g| g.as_slice()),
                    version,
                ))
            }
            Rows::Live(live) => Some(live_snapshot(live)),
            Rows::View(view) => Some(view_snapshot(view)),
        }
    }

    /// How a KNN_MATCH on this column is answered, for EXPLAIN.
    pub fn describe_search(&self, column: usize) -> String {
        match self.index_on(column) {
            Some(i) => format!("hnsw index {} ({}, {})", i.name, i.metric.name(), "hora"),
            None => "exact".into(),
        }
    }

    /// Builds a new index over everything in the table now (CREATE INDEX), reporting vectors indexed.
    pub async fn create_index(
        &self,
        mut index: VectorIndex,
        threads: usize,
        progress: Arc<dyn Fn(usize, usize) + Send + Sync>,
    ) -> Result<Arc<VectorIndex>> {
        let snapshot = self.snapshot().await;
        let started = Instant::now();
        let (column, dim, metric, params) =
            (index.column_index, index.dim, index.metric, index.params);
        let state = tokio::task::spawn_blocking(move || {
            build_state(&snapshot, column, dim, metric, params, threads, &*progress)
        })
        .await
        .map_err(|e| DataFusionError::Execution(format!("index build stopped: {e}")))??;
        index.state = RwLock::new(state);
        index.build_time = Mutex::new(started.elapsed());
        let index = Arc::new(index);
        if let Ok(mut list) = self.indexes.write() {
            list.push(index.clone());
        }
        Ok(index)
    }

    /// The k nearest rows to `query` among the rows whose mask is true. Returns hits (batch indices into the
    /// snapshot) nearest first, and the metric their distances are in.
    pub fn search(
        &self,
        snapshot: &TableSnapshot,
        column: usize,
        query: &[f32],
        k: usize,
        masks: Option<&[BooleanArray]>,
    ) -> Result<(Vec<Hit>, Metric)> {
        let Some(index) = self.index_on(column) else {
            return Ok((
                exact(snapshot, column, query, k, masks, Metric::Euclidean, None)?,
                Metric::Euclidean,
            ));
        };
        let metric = index.metric;
        let state = index.state();
        if state.version != snapshot.version {
            // The table was rewritten since the segments were built: exact now, rebuild in the background.
            spawn_rebuild(index.clone(), snapshot, true);
            return Ok((
                exact(snapshot, column, query, k, masks, metric, None)?,
                metric,
            ));
        }
        let tail = snapshot.beyond(&state.watermark);
        let tail_rows: usize = tail.iter().map(|&i| snapshot.flat[i].num_rows()).sum();
        if tail_rows >= CATCH_UP_ROWS || state.segments.len() > MAX_SEGMENTS {
            spawn_rebuild(index.clone(), snapshot, false);
        }
        if let Some(masks) = masks {
            let passing: usize = masks.iter().map(|m| m.true_count()).sum();
            if passing <= index.exact_below() || passing * 20 < snapshot.rows() {
                return Ok((
                    exact(snapshot, column, query, k, Some(masks), metric, None)?,
                    metric,
                ));
            }
        }

        let prepared = PreparedQuery::new(query);
        let mut top = TopK::new(k);
        // The tail: exact.
        push_exact(
            &mut top,
            snapshot,
            column,
            &prepared,
            metric,
            masks,
            Some(&tail),
        )?;
        // The segments: graph search, with over-fetching when a filter rejects candidates.
        let passing_share = match masks {
            Some(m) => {
                let passing: usize = m.iter().map(|m| m.true_count()).sum();
                passing as f64 / snapshot.rows().max(1) as f64
            }
            None => 1.0,
        };
        let mut cache = VectorCache::new(snapshot, column);
        for segment in &state.segments {
            if segment.len() <= EXACT_SEGMENT {
                segment_exact(&mut top, segment, &mut cache, &prepared, metric, masks)?;
                continue;
            }
            let mut fetch = ((k as f64 / passing_share.max(1e-6))
                * if masks.is_some() { 2.0 } else { 1.0 })
            .ceil() as usize;
            fetch = fetch.max(k);
            let ef = index.ef_search();
            // Each attempt ranks its candidates afresh (a retry returns the earlier ones again), so a row is
            // counted once; the segment's best k then join the others.
            let mut segment_top;
            loop {
                segment_top = TopK::new(k);
                let ids = segment
                    .index
                    .search(&prepared.vector, fetch.min(segment.len()), ef);
                let mut found = 0;
                for id in &ids {
                    let Some(r) = segment.rows.get(*id) else {
                        continue;
                    };
                    if let Some(hit) = cache.rank(*r, &prepared, metric, masks)? {
                        found += 1;
                        segment_top.push(hit);
                    }
                }
                if found >= k.min(segment.len()) {
                    break;
                }
                if fetch >= segment.len() || ids.len() < fetch.max(ef).min(segment.len()) {
                    // The graph cannot give more (or the filter rejects nearly everything): rank every row.
                    segment_top = TopK::new(k);
                    segment_exact(
                        &mut segment_top,
                        segment,
                        &mut cache,
                        &prepared,
                        metric,
                        masks,
                    )?;
                    break;
                }
                fetch = (fetch * 4).min(segment.len());
            }
            top.merge(segment_top);
        }
        Ok((top.into_sorted(), metric))
    }
}

/// A materialized view's rows now: its generation is the snapshot's version (a refresh rewrites every row).
fn view_snapshot(view: &MaterializedView) -> TableSnapshot {
    let (parts, generation) = view.rows();
    TableSnapshot::of_partitions(parts.iter().map(|p| p.as_slice()), generation)
}

/// A live table's rows now, addressed by sequence number.
fn live_snapshot(live: &LiveTable) -> TableSnapshot {
    let (chunks, end) = live.chunks();
    let (first, flat): (Vec<u64>, Vec<RecordBatch>) = chunks.into_iter().unzip();
    TableSnapshot {
        partitions: vec![flat.len()],
        starts: vec![0],
        flat,
        version: 0,
        seq: Some(Sequence { first, end }),
    }
}

/// Vectors of a snapshot's batches, read once each, for ranking rows one at a time.
struct VectorCache<'a> {
    snapshot: &'a TableSnapshot,
    column: usize,
    batches: Vec<Option<Vectors>>,
}

impl<'a> VectorCache<'a> {
    fn new(snapshot: &'a TableSnapshot, column: usize) -> Self {
        Self {
            snapshot,
            column,
            batches: vec![None; snapshot.flat.len()],
        }
    }

    /// The row as a hit, if it passes the mask and its distance is defined.
    fn rank(
        &mut self,
        r: RowRef,
        query: &PreparedQuery,
        metric: Metric,
        masks: Option<&[BooleanArray]>,
    ) -> Result<Option<Hit>> {
        // a row the segment knows but this snapshot does not: evicted by retention, or a table rewritten under a
        // concurrent search
        let Some((batch, row)) = self.snapshot.locate(r) else {
            return Ok(None);
        };
        if let Some(m) = masks {
            if !m[batch].is_valid(row) || !m[batch].value(row) {
                return Ok(None);
            }
        }
        if self.batches[batch].is_none() {
            let column = self.snapshot.flat[batch].column(self.column);
            self.batches[batch] = Some(Vectors::read(column, "indexed column", None)?);
        }
        let Some(v) = self.batches[batch].as_ref().and_then(|vs| vs.get(row)) else {
            return Ok(None);
        };
        Ok(metric.distance_prepared(query, v).map(|distance| Hit {
            distance,
            batch,
            row,
        }))
    }
}

/// Ranks every row of a segment exactly.
fn segment_exact(
    top: &mut TopK,
    segment: &Segment,
    cache: &mut VectorCache<'_>,
    query: &PreparedQuery,
    metric: Metric,
    masks: Option<&[BooleanArray]>,
) -> Result<()> {
    for r in &segment.rows {
        if let Some(hit) = cache.rank(*r, query, metric, masks)? {
            top.push(hit);
        }
    }
    Ok(())
}

/// Exact ranking over the whole snapshot (or the listed batches).
fn exact(
    snapshot: &TableSnapshot,
    column: usize,
    query: &[f32],
    k: usize,
    masks: Option<&[BooleanArray]>,
    metric: Metric,
    only: Option<&[usize]>,
) -> Result<Vec<Hit>> {
    let prepared = PreparedQuery::new(query);
    let mut top = TopK::new(k);
    push_exact(&mut top, snapshot, column, &prepared, metric, masks, only)?;
    Ok(top.into_sorted())
}

fn push_exact(
    top: &mut TopK,
    snapshot: &TableSnapshot,
    column: usize,
    query: &PreparedQuery,
    metric: Metric,
    masks: Option<&[BooleanArray]>,
    only: Option<&[usize]>,
) -> Result<()> {
    let all: Vec<usize>;
    let batches = match only {
        Some(b) => b,
        None => {
            all = (0..snapshot.flat.len()).collect();
            &all
        }
    };
    for &b in batches {
        let batch = &snapshot.flat[b];
        let vectors = Vectors::read(batch.column(column), "KNN_MATCH column", None)?;
        top.push_batch(
            b,
            &vectors,
            masks.map(|m| &m[b]),
            metric,
            query,
            0..batch.num_rows(),
        );
    }
    Ok(())
}

/// Builds segments over every row of a snapshot.
fn build_state(
    snapshot: &TableSnapshot,
    column: usize,
    dim: usize,
    metric: Metric,
    params: HnswParams,
    threads: usize,
    progress: &(dyn Fn(usize, usize) + Send + Sync),
) -> Result<IndexState> {
    let (values, rows) = snapshot.collect(column, &[], dim)?;
    let total = rows.len();
    let mut segments = Vec::new();
    let mut start = 0;
    while start < total || (total == 0 && segments.is_empty()) {
        let end = (start + SEGMENT_CAPACITY).min(total);
        let report = |done: usize| progress(start + done, total);
        let index = build_hnsw(
            &values[start * dim..end * dim],
            dim,
            metric,
            params,
            threads,
            &report,
        )?;
        segments.push(Arc::new(Segment {
            index,
            rows: rows[start..end].to_vec(),
        }));
        if total == 0 {
            break;
        }
        start = end;
    }
    Ok(IndexState {
        segments,
        watermark: snapshot.batch_counts(),
        version: snapshot.version,
    })
}

/// Starts a background build (one at a time per index): the tail as a new segment (merging small segments when
/// there are too many), or everything when `full`. The result is installed only if the table has not changed in
/// a way that invalidates it.
fn spawn_rebuild(index: Arc<VectorIndex>, snapshot: &TableSnapshot, full: bool) {
    if index.building.swap(true, Ordering::AcqRel) {
        return;
    }
    let snapshot = snapshot.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("index {}", index.name))
        .spawn({
            let index = index.clone();
            move || {
                let started = Instant::now();
                let result = if full {
                    rebuild_all(&index, &snapshot)
                } else {
                    catch_up(&index, &snapshot)
                };
                index.add_build_time(started.elapsed());
                if let Ok(mut e) = index.last_error.lock() {
                    *e = result.err().map(|e| e.to_string());
                }
                index.building.store(false, Ordering::Release);
            }
        });
    if spawned.is_err() {
        index.building.store(false, Ordering::Release);
    }
}

fn rebuild_all(index: &VectorIndex, snapshot: &TableSnapshot) -> Result<()> {
    let state = build_state(
        snapshot,
        index.column_index,
        index.dim,
        index.metric,
        index.params,
        1,
        &|_, _| {},
    )?;
    if let Ok(mut current) = index.state.write() {
        if current.version < snapshot.version {
            *current = state;
        }
    }
    Ok(())
}

fn catch_up(index: &VectorIndex, snapshot: &TableSnapshot) -> Result<()> {
    let before = index.state();
    let (dim, column) = (index.dim, index.column_index);
    let (mut values, mut rows) = snapshot.collect(column, &before.watermark, dim)?;
    // Too many segments: fold the smallest ones into the new one.
    let mut merged: Vec<Arc<Segment>> = Vec::new();
    if before.segments.len() + 1 > MAX_SEGMENTS {
        let mut by_size = before.segments.clone();
        by_size.sort_by_key(|s| s.len());
        for s in by_size {
            if rows.len() + s.len() > SEGMENT_CAPACITY || merged.len() + 1 >= before.segments.len()
            {
                break;
            }
            for r in &s.rows {
                if let Some(v) = snapshot.vector(column, *r) {
                    values.extend_from_slice(&v);
                    rows.push(*r);
                }
            }
            merged.push(s);
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    let built = build_hnsw(&values, dim, index.metric, index.params, 1, &|_| {})?;
    let segment = Arc::new(Segment { index: built, rows });
    let mut current = index
        .state
        .write()
        .map_err(|_| DataFusionError::Internal("index state lock poisoned".into()))?;
    // Install only onto the state this build started from.
    if current.version != snapshot.version || current.watermark != before.watermark {
        return Ok(());
    }
    current
        .segments
        .retain(|s| !merged.iter().any(|m| Arc::ptr_eq(m, s)) && !snapshot.evicted(s));
    current.segments.push(segment);
    current.watermark = snapshot.batch_counts();
    Ok(())
}

impl VectorIndex {
    pub fn new(
        name: String,
        table: String,
        column: String,
        column_index: usize,
        dim: usize,
        metric: Metric,
        params: HnswParams,
    ) -> Self {
        Self {
            name,
            table,
            column,
            column_index,
            dim,
            metric,
            params,
            ef_search: std::sync::atomic::AtomicUsize::new(params.ef_search),
            exact_below: std::sync::atomic::AtomicUsize::new(EXACT_BELOW),
            state: RwLock::new(IndexState::default()),
            building: AtomicBool::new(false),
            build_time: Mutex::new(Duration::ZERO),
            last_error: Mutex::new(None),
        }
    }

    /// Waits for a background build to finish (tests and benchmarks that need a settled index).
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.building.load(Ordering::Acquire) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

#[async_trait::async_trait]
impl TableProvider for IndexedTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn constraints(&self) -> Option<&Constraints> {
        self.inner.constraints()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.inner.get_column_default(column)
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    fn statistics(&self) -> Option<Statistics> {
        self.inner.statistics()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner.scan(state, projection, filters, limit).await
    }

    async fn insert_into(
        &self,
        state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            self.version.fetch_add(1, Ordering::AcqRel);
        }
        self.inner.insert_into(state, input, insert_op).await
    }

    async fn delete_from(
        &self,
        state: &dyn Session,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.version.fetch_add(1, Ordering::AcqRel);
        self.inner.delete_from(state, filters).await
    }

    async fn update(
        &self,
        state: &dyn Session,
        assignments: Vec<(String, Expr)>,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.version.fetch_add(1, Ordering::AcqRel);
        self.inner.update(state, assignments, filters).await
    }

    async fn truncate(&self, state: &dyn Session) -> Result<Arc<dyn ExecutionPlan>> {
        self.version.fetch_add(1, Ordering::AcqRel);
        self.inner.truncate(state).await
    }
}
