//! A live table: the rows consumed from one topic so far (within retention), a consumer thread that appends
//! micro-batches as they arrive, and the counters `sys.sources` shows.
//!
//! Readers take a snapshot (the list of batches, cheap to clone) under a read lock, so a query sees a consistent
//! prefix of the stream while ingestion goes on. Continuous views subscribe to appends ([`Subscription`]).

use super::decode::{Decoded, Decoder, Messages};
use super::options::{KafkaOptions, Retention, Start};
use super::{DeadLetter, DeadLetters};
use datafusion::arrow::array::{Array, RecordBatch, TimestampMillisecondArray};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// A micro-batch is closed when no message has come for IDLE_FLUSH (the fetched backlog is drained: freshness),
/// after FLUSH_AFTER at the latest (a steady trickle), or at this many messages / bytes (throughput).
const IDLE_FLUSH: Duration = Duration::from_millis(2);
/// While messages are queued, the polling thread reads the clock once per this many.
const CLOCK_EVERY: u32 = 256;
const FLUSH_AFTER: Duration = Duration::from_millis(20);
const MAX_BATCH_MESSAGES: usize = 32_768;
const MAX_BATCH_BYTES: usize = 8 << 20;
/// Small trailing batches are merged once there are this many, so scans do not pay per tiny batch.
const MERGE_SMALL: usize = 16;
const SMALL_ROWS: usize = 8_192;

#[derive(Debug, Clone)]
struct Chunk {
    batch: RecordBatch,
    /// Sequence number of the first row.
    first: u64,
    /// Newest Kafka timestamp in the chunk (ms), for time retention.
    newest_ms: i64,
    bytes: usize,
}

#[derive(Debug, Default)]
struct Store {
    chunks: VecDeque<Chunk>,
    rows: usize,
    bytes: usize,
    /// Rows ever appended (the next row's sequence number).
    appended: u64,
    /// Chunks keep their rows where they are (an index addresses rows by sequence number and chunk): no merging.
    fixed: bool,
}

impl Store {
    fn push(&mut self, batch: RecordBatch, newest_ms: i64) {
        let bytes = batch.get_array_memory_size();
        let rows = batch.num_rows();
        self.chunks.push_back(Chunk {
            batch,
            first: self.appended,
            newest_ms,
            bytes,
        });
        self.rows += rows;
        self.bytes += bytes;
        self.appended += rows as u64;
        if !self.fixed {
            self.merge_tail();
        }
    }

    fn merge_tail(&mut self) {
        let small = self
            .chunks
            .iter()
            .rev()
            .take_while(|c| c.batch.num_rows() < SMALL_ROWS)
            .count();
        if small < MERGE_SMALL {
            return;
        }
        let start = self.chunks.len() - small;
        let tail: Vec<Chunk> = self.chunks.drain(start..).collect();
        let schema = tail[0].batch.schema();
        let batches: Vec<RecordBatch> = tail.iter().map(|c| c.batch.clone()).collect();
        match concat_batches(&schema, &batches) {
            Ok(batch) => {
                let bytes = batch.get_array_memory_size();
                self.bytes = self.bytes - tail.iter().map(|c| c.bytes).sum::<usize>() + bytes;
                self.chunks.push_back(Chunk {
                    batch,
                    first: tail[0].first,
                    newest_ms: tail.iter().map(|c| c.newest_ms).max().unwrap_or(0),
                    bytes,
                });
            }
            Err(_) => self.chunks.extend(tail),
        }
    }

    fn pop_front(&mut self) {
        if let Some(c) = self.chunks.pop_front() {
            self.rows -= c.batch.num_rows();
            self.bytes -= c.bytes;
        }
    }

    /// Applies retention; returns the rows evicted.
    fn retain(&mut self, retention: Retention, now_ms: i64) -> usize {
        let before = self.rows;
        match retention {
            Retention::All => {}
            Retention::Rows(limit) => {
                while let Some(front) = self.chunks.front() {
                    let excess = self.rows.saturating_sub(limit);
                    if excess == 0 {
                        break;
                    }
                    let n = front.batch.num_rows();
                    if excess >= n {
                        self.pop_front();
                    } else {
                        let batch = front.batch.slice(excess, n - excess);
                        let bytes = batch.get_array_memory_size();
                        let first = front.first + excess as u64;
                        let newest_ms = front.newest_ms;
                        self.pop_front();
                        self.rows += batch.num_rows();
                        self.bytes += bytes;
                        self.chunks.push_front(Chunk {
                            batch,
                            first,
                            newest_ms,
                            bytes,
                        });
                        break;
                    }
                }
            }
            Retention::Time(d) => {
                let cutoff = now_ms - d.as_millis() as i64;
                while self.chunks.front().is_some_and(|c| c.newest_ms < cutoff) {
                    self.pop_front();
                }
            }
        }
        before - self.rows
    }
}

/// New rows for one incremental consumer (a continuous view): every batch appended after it subscribed, whatever
/// retention evicts meanwhile. Drained by its owner.
#[derive(Debug, Default)]
pub struct Subscription {
    queue: Mutex<Vec<RecordBatch>>,
    /// Batches queued and not yet fully taken in (drained but still being applied count too).
    pending: std::sync::atomic::AtomicUsize,
}

impl Subscription {
    /// The batches appended since the last call. Call [`Subscription::done`] with their number once applied.
    pub fn drain(&self) -> Vec<RecordBatch> {
        self.queue
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .unwrap_or_default()
    }

    pub fn done(&self, batches: usize) {
        let _ = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                Some(p.saturating_sub(batches))
            });
    }

    pub fn idle(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0
    }
}

/// What the consumer is doing, for `sys.sources`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceState {
    Starting,
    CatchingUp,
    Live,
    Paused,
    Reconnecting,
    Stopped,
}

impl SourceState {
    pub fn name(self) -> &'static str {
        match self {
            SourceState::Starting => "starting",
            SourceState::CatchingUp => "catching up",
            SourceState::Live => "live",
            SourceState::Paused => "paused (memory)",
            SourceState::Reconnecting => "reconnecting",
            SourceState::Stopped => "stopped",
        }
    }
}

#[derive(Debug, Default)]
pub struct Counters {
    /// Messages consumed (rows appended + dead letters).
    pub consumed: AtomicU64,
    pub errors: AtomicU64,
    pub lag: AtomicI64,
    /// Rows per second over the last few seconds (f64 bits).
    rate_bits: AtomicU64,
    /// Messages librdkafka delivered twice (after a reconnect or offset reset) and that were skipped.
    pub duplicates_skipped: AtomicU64,
}

impl Counters {
    pub fn rate(&self) -> f64 {
        f64::from_bits(self.rate_bits.load(Ordering::Relaxed))
    }
}

/// One `STORED AS KAFKA` table.
#[derive(Debug)]
pub struct LiveTable {
    pub name: String,
    pub options: KafkaOptions,
    /// The broker address used (the demo broker's resolved address for `kafka://demo/...`).
    pub bootstrap: String,
    schema: SchemaRef,
    store: RwLock<Store>,
    pub counters: Counters,
    state: Mutex<(SourceState, Option<String>)>,
    /// Next offset to read per partition.
    next: Mutex<BTreeMap<i32, i64>>,
    /// High watermarks per partition, as last seen.
    high: Mutex<BTreeMap<i32, i64>>,
    /// Offsets after messages this session produced to the topic (INSERT INTO), per partition, until read.
    produced: Mutex<BTreeMap<i32, i64>>,
    stop: AtomicBool,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Signalled after every append (for waiters: tests, the kernel's catch-up display).
    appended: (Mutex<u64>, Condvar),
    dead: Arc<DeadLetters>,
    subscribers: Mutex<Vec<std::sync::Weak<Subscription>>>,
    /// Called after every append, off the store's lock (an index on the table takes new rows in).
    on_append: Mutex<Option<AppendHook>>,
    pub created: SystemTime,
}

/// What [`LiveTable::on_append`] calls.
#[derive(Clone)]
pub struct AppendHook(pub Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for AppendHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppendHook")
    }
}

impl LiveTable {
    pub fn new(
        name: String,
        options: KafkaOptions,
        bootstrap: String,
        schema: SchemaRef,
        dead: Arc<DeadLetters>,
    ) -> Self {
        Self {
            name,
            options,
            bootstrap,
            schema,
            store: RwLock::new(Store::default()),
            counters: Counters::default(),
            state: Mutex::new((SourceState::Starting, None)),
            next: Mutex::new(BTreeMap::new()),
            high: Mutex::new(BTreeMap::new()),
            produced: Mutex::new(BTreeMap::new()),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
            appended: (Mutex::new(0), Condvar::new()),
            dead,
            subscribers: Mutex::new(Vec::new()),
            on_append: Mutex::new(None),
            created: SystemTime::now(),
        }
    }

    /// "Created live table readings: topic sensors at localhost:9092, 3 partitions, 12,000 messages to catch up".
    pub fn describe_start(&self) -> String {
        let lag = self.counters.lag.load(Ordering::Relaxed);
        let at = if self.options.demo {
            "the demo broker".to_string()
        } else {
            self.bootstrap.clone()
        };
        let partitions = self.partitions();
        format!(
            "Created live table {}: topic {} at {at}, {partitions} partition{}, {}",
            self.name,
            self.options.topic,
            if partitions == 1 { "" } else { "s" },
            if lag > 0 {
                format!(
                    "{} messages to catch up (SELECT * FROM sys.sources shows progress)",
                    crate::outcome::group_thousands(lag as u64)
                )
            } else {
                "caught up".to_string()
            }
        )
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The batches held now: a consistent prefix of the stream (within retention).
    pub fn snapshot(&self) -> Vec<RecordBatch> {
        match self.store.read() {
            Ok(s) => s.chunks.iter().map(|c| c.batch.clone()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The chunks held now with the sequence number of each one's first row, and the next sequence number.
    /// After [`LiveTable::fix_positions`] a row keeps its chunk and place until retention evicts it.
    pub fn chunks(&self) -> (Vec<(u64, RecordBatch)>, u64) {
        match self.store.read() {
            Ok(s) => (
                s.chunks
                    .iter()
                    .map(|c| (c.first, c.batch.clone()))
                    .collect(),
                s.appended,
            ),
            Err(_) => (Vec::new(), 0),
        }
    }

    /// Stops merging small chunks, so that rows stay addressable (an index on the table).
    pub fn fix_positions(&self) {
        if let Ok(mut s) = self.store.write() {
            s.fixed = true;
        }
    }

    /// Calls `hook` after every append from now on.
    pub fn on_append(&self, hook: AppendHook) {
        if let Ok(mut h) = self.on_append.lock() {
            *h = Some(hook);
        }
    }

    /// (rows held, bytes held, rows ever appended).
    pub fn sizes(&self) -> (usize, usize, u64) {
        match self.store.read() {
            Ok(s) => (s.rows, s.bytes, s.appended),
            Err(_) => (0, 0, 0),
        }
    }

    /// Whether every subscriber (continuous view) has taken in every appended batch.
    pub fn subscribers_idle(&self) -> bool {
        self.subscribers
            .lock()
            .map(|s| s.iter().filter_map(|w| w.upgrade()).all(|s| s.idle()))
            .unwrap_or(true)
    }

    /// Subscribes to appended rows; returns the subscription and the rows held now, with no gap or overlap
    /// between the two.
    pub fn subscribe(&self) -> (Arc<Subscription>, Vec<RecordBatch>) {
        let sub = Arc::new(Subscription::default());
        let Ok(store) = self.store.read() else {
            return (sub, vec![]);
        };
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.retain(|s| s.strong_count() > 0);
            subs.push(Arc::downgrade(&sub));
        }
        let held = store.chunks.iter().map(|c| c.batch.clone()).collect();
        (sub, held)
    }

    pub fn state(&self) -> (SourceState, Option<String>) {
        self.state
            .lock()
            .map(|s| s.clone())
            .unwrap_or((SourceState::Stopped, None))
    }

    fn set_state(&self, state: SourceState) {
        if let Ok(mut s) = self.state.lock() {
            s.0 = state;
        }
    }

    fn clear_error(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.1 = None;
        }
    }

    fn set_error(&self, error: String) {
        if let Ok(mut s) = self.state.lock() {
            s.1 = Some(error);
        }
    }

    pub fn partitions(&self) -> usize {
        self.next.lock().map(|n| n.len()).unwrap_or(0)
    }

    /// Next offset to read per partition (the committed position in group mode).
    pub fn positions(&self) -> BTreeMap<i32, i64> {
        self.next.lock().map(|n| n.clone()).unwrap_or_default()
    }

    /// Waits until at least `rows` rows were ever appended, or the timeout passes. Returns the count.
    pub fn wait_for_rows(&self, rows: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &self.appended;
        let Ok(mut n) = lock.lock() else { return 0 };
        while *n < rows {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match cv.wait_timeout(n, left) {
                Ok((g, _)) => n = g,
                Err(_) => return 0,
            }
        }
        *n
    }

    /// Messages still to read: up to the high watermark, or past it up to what this session produced (the
    /// watermark librdkafka caches may not show those yet). Produced offsets that were read are forgotten.
    fn lag(&self, next: &BTreeMap<i32, i64>) -> i64 {
        let high = self.high.lock().map(|h| h.clone()).unwrap_or_default();
        let mut produced = self.produced.lock().ok();
        let mut lag = 0i64;
        for (&p, &n) in next {
            let mut end = high.get(&p).copied().unwrap_or(n);
            if let Some(produced) = produced.as_mut() {
                match produced.get(&p).copied() {
                    Some(e) if e > n => end = end.max(e),
                    Some(_) => {
                        produced.remove(&p);
                    }
                    None => {}
                }
            }
            lag += (end - n).max(0);
        }
        lag
    }

    /// An INSERT INTO this table's topic was acknowledged up to these offsets (per partition).
    pub fn produced(&self, ends: &BTreeMap<i32, i64>) {
        if let Ok(mut produced) = self.produced.lock() {
            for (&p, &e) in ends {
                let end = produced.entry(p).or_insert(e);
                *end = (*end).max(e);
            }
        }
        let lag = self.lag(&self.positions());
        self.counters.lag.store(lag, Ordering::Relaxed);
    }

    /// Waits until the consumer has read everything the broker held (lag 0), or the timeout passes.
    pub fn wait_caught_up(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.counters.lag.load(Ordering::Relaxed) == 0
                && matches!(self.state().0, SourceState::Live)
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the consumer and waits for its thread (at most a poll interval).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
        self.set_state(SourceState::Stopped);
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Starts consuming on a thread of its own.
    pub fn start(
        self: &Arc<Self>,
        consumer: BaseConsumer,
        decoder: Decoder,
    ) -> std::io::Result<()> {
        let me = self.clone();
        let handle = std::thread::Builder::new()
            .name(format!("kafka-{}", self.name))
            .spawn(move || {
                let watcher = me.clone();
                let run = std::panic::AssertUnwindSafe(move || me.run(consumer, decoder));
                if let Err(panic) = std::panic::catch_unwind(run) {
                    // never silently: the table says it stopped, and why
                    let why = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "unknown".into());
                    watcher.set_error(format!(
                        "the consumer failed: {why}; DROP and CREATE the table again"
                    ));
                    watcher.set_state(SourceState::Stopped);
                }
            })?;
        if let Ok(mut t) = self.thread.lock() {
            *t = Some(handle);
        }
        Ok(())
    }

    /// Where each partition starts, and the watermarks seen at start.
    pub fn assign(&self, consumer: &BaseConsumer, partitions: &[i32]) -> Result<(), String> {
        let topic = &self.options.topic;
        let timeout = Duration::from_secs(10);
        let mut committed = BTreeMap::new();
        if self.options.start == Start::Group {
            let mut tpl = TopicPartitionList::new();
            for &p in partitions {
                tpl.add_partition(topic, p);
            }
            let c = consumer.committed_offsets(tpl, timeout).map_err(|e| {
                format!(
                    "reading the committed offsets of group {:?}: {e}",
                    self.options.group_id
                )
            })?;
            for e in c.elements() {
                if let Offset::Offset(o) = e.offset() {
                    committed.insert(e.partition(), o);
                }
            }
        }
        let mut tpl = TopicPartitionList::new();
        let mut next = BTreeMap::new();
        let mut high = BTreeMap::new();
        for &p in partitions {
            let (lo, hi) = consumer
                .fetch_watermarks(topic, p, timeout)
                .map_err(|e| format!("reading the offsets of {topic}/{p}: {e}"))?;
            let start = match self.options.start {
                Start::Earliest => lo,
                Start::Latest => hi,
                Start::Group => committed.get(&p).copied().unwrap_or(lo).clamp(lo, hi),
            };
            tpl.add_partition_offset(topic, p, Offset::Offset(start))
                .map_err(|e| e.to_string())?;
            next.insert(p, start);
            high.insert(p, hi);
        }
        consumer
            .assign(&tpl)
            .map_err(|e| format!("assigning {topic}: {e}"))?;
        let lag: i64 = partitions.iter().map(|p| (high[p] - next[p]).max(0)).sum();
        self.counters.lag.store(lag, Ordering::Relaxed);
        if let Ok(mut n) = self.next.lock() {
            *n = next;
        }
        if let Ok(mut h) = self.high.lock() {
            *h = high;
        }
        self.set_state(if lag > 0 {
            SourceState::CatchingUp
        } else {
            SourceState::Live
        });
        Ok(())
    }

    fn run(self: Arc<Self>, consumer: BaseConsumer, decoder: Decoder) {
        // Decoding runs on a second thread: polling goes on while a micro-batch is decoded. At most two batches
        // wait for it (then polling waits too: backpressure); emptied buffers come back for reuse.
        let (to_decoder, batches) =
            std::sync::mpsc::sync_channel::<(Messages, BTreeMap<i32, i64>)>(2);
        let (recycle, recycled) = std::sync::mpsc::channel::<Messages>();
        let me = self.clone();
        let decoding = std::thread::Builder::new()
            .name(format!("kafka-decode-{}", self.name))
            .spawn(move || {
                let mut decoder = decoder;
                for (mut batch, next) in batches {
                    me.append(&mut decoder, &batch, &next);
                    batch.clear();
                    let _ = recycle.send(batch);
                }
            });
        let decoding = match decoding {
            Ok(d) => d,
            Err(e) => {
                self.set_error(format!("starting the decoder thread: {e}"));
                self.set_state(SourceState::Stopped);
                return;
            }
        };
        let mut batch = Messages::default();
        let mut first_at: Option<Instant> = None;
        let mut next = self.positions();
        let mut last_tick = Instant::now();
        let mut committed = next.clone();
        let mut rate_window: VecDeque<(Instant, u64)> = VecDeque::new();
        let mut paused = false;
        // when the last client error came (broker down, connection reset); cleared by a message or 5 quiet seconds
        let mut errored: Option<Instant> = None;
        // Reading clocks was a third of this thread's time: while messages are queued, the clock is read every
        // CLOCK_EVERY messages (and librdkafka's poll is asked not to wait, which spares its own clock reading);
        // only an empty queue makes it wait, with a fresh reading.
        let mut now = Instant::now();
        let mut since_clock = 0u32;
        while !self.stop.load(Ordering::Relaxed) {
            let mut idle = false;
            since_clock += 1;
            if since_clock >= CLOCK_EVERY {
                now = Instant::now();
                since_clock = 0;
            }
            if paused {
                std::thread::sleep(Duration::from_millis(50));
                now = Instant::now();
            } else {
                let mut polled = consumer.poll(Duration::ZERO);
                if polled.is_none() {
                    now = Instant::now();
                    since_clock = 0;
                    let timeout = match first_at {
                        None => Duration::from_millis(100),
                        Some(t) => FLUSH_AFTER
                            .saturating_sub(now.saturating_duration_since(t))
                            .min(IDLE_FLUSH),
                    };
                    polled = consumer.poll(timeout);
                    if polled.is_some() {
                        // it waited: the first message of a batch starts the batch's clock now
                        now = Instant::now();
                    }
                }
                match polled {
                    Some(Ok(msg)) => {
                        let p = msg.partition();
                        let offset = msg.offset();
                        let expected = next.get(&p).copied().unwrap_or(0);
                        if offset < expected {
                            self.counters
                                .duplicates_skipped
                                .fetch_add(1, Ordering::Relaxed);
                        } else {
                            next.insert(p, offset + 1);
                            batch.push(
                                p,
                                offset,
                                msg.timestamp().to_millis(),
                                msg.key(),
                                msg.payload(),
                            );
                            first_at.get_or_insert(now);
                        }
                        if errored.take().is_some() {
                            self.set_state(SourceState::CatchingUp);
                            self.clear_error();
                        }
                    }
                    Some(Err(e)) => {
                        self.set_error(format!("{e}"));
                        errored = Some(Instant::now());
                        self.set_state(SourceState::Reconnecting);
                    }
                    None => idle = true,
                }
            }
            let due = idle
                || first_at.is_some_and(|t| now.saturating_duration_since(t) >= FLUSH_AFTER)
                || batch.len() >= MAX_BATCH_MESSAGES
                || batch.bytes() >= MAX_BATCH_BYTES;
            if due && !batch.is_empty() {
                let spare = recycled.try_recv().unwrap_or_default();
                let full = std::mem::replace(&mut batch, spare);
                if to_decoder.send((full, next.clone())).is_err() {
                    break; // the decoder thread is gone (it panicked): reported below
                }
                first_at = None;
            }
            if now.saturating_duration_since(last_tick) >= Duration::from_millis(200) || paused {
                last_tick = now;
                if errored.is_some_and(|t| t.elapsed() >= Duration::from_secs(5)) {
                    // quiet since: librdkafka reconnected (an idle broker closes connections now and then)
                    errored = None;
                    self.clear_error();
                }
                paused = self.tick(&consumer, &mut rate_window, paused, errored.is_some());
                let appended = self.positions();
                if appended != committed {
                    self.commit(&consumer, &appended, CommitMode::Async);
                    committed = appended;
                }
            }
        }
        if !batch.is_empty() {
            let _ = to_decoder.send((batch, next.clone()));
        }
        drop(to_decoder);
        if decoding.join().is_err() {
            self.set_error(
                "the decoder failed; DROP and CREATE the table again (no message was committed past the last \
                 appended row)"
                    .into(),
            );
        }
        self.commit(&consumer, &self.positions(), CommitMode::Sync);
        self.set_state(SourceState::Stopped);
    }

    /// Decodes and appends a micro-batch and records its dead letters; then its messages count as read.
    fn append(&self, decoder: &mut Decoder, batch: &Messages, next: &BTreeMap<i32, i64>) {
        let Decoded { batch: rows, dead } = decoder.decode(batch);
        let now = SystemTime::now();
        if !dead.is_empty() {
            let letters = dead
                .into_iter()
                .map(|(i, error)| DeadLetter {
                    table: self.name.clone(),
                    topic: self.options.topic.clone(),
                    partition: batch.partition[i],
                    offset: batch.offset[i],
                    key: batch
                        .key(i)
                        .map(|k| String::from_utf8_lossy(k).into_owned()),
                    payload: batch
                        .value(i)
                        .map(|v| String::from_utf8_lossy(v).into_owned()),
                    error,
                    received_at: now,
                })
                .collect::<Vec<_>>();
            self.counters
                .errors
                .fetch_add(letters.len() as u64, Ordering::Relaxed);
            self.dead.add(letters);
        }
        let now_ms = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        if let Some(rows) = rows {
            let newest_ms = newest_timestamp(&rows).unwrap_or(now_ms);
            if let Ok(mut s) = self.store.write() {
                // under the store's lock, so that subscribe() sees each batch either held or queued, once
                if let Ok(subs) = self.subscribers.lock() {
                    for sub in subs.iter().filter_map(|s| s.upgrade()) {
                        if let Ok(mut q) = sub.queue.lock() {
                            q.push(rows.clone());
                            sub.pending.fetch_add(1, Ordering::AcqRel);
                        }
                    }
                }
                s.push(rows, newest_ms);
                s.retain(self.options.retention, now_ms);
            }
        }
        self.counters
            .consumed
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        if let Ok(mut n) = self.next.lock() {
            n.extend(next.iter().map(|(k, v)| (*k, *v)));
        }
        let appended = self.sizes().2;
        let hook = self.on_append.lock().ok().and_then(|h| h.clone());
        if let Some(AppendHook(hook)) = hook {
            hook();
        }
        let (lock, cv) = &self.appended;
        if let Ok(mut n) = lock.lock() {
            *n = appended;
        }
        cv.notify_all();
    }

    fn commit(&self, consumer: &BaseConsumer, next: &BTreeMap<i32, i64>, mode: CommitMode) {
        if self.options.group_id.is_none() || next.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (&p, &o) in next {
            // The committed offset is the next one to read (Kafka's convention), never the last one read.
            if tpl
                .add_partition_offset(&self.options.topic, p, Offset::Offset(o))
                .is_err()
            {
                return;
            }
        }
        if let Err(e) = consumer.commit(&tpl, mode) {
            self.set_error(format!("committing offsets: {e}"));
        }
    }

    /// Housekeeping (on the polling thread): lag from the high watermarks librdkafka has seen, the ingest rate, time retention, and the
    /// memory bound. Returns whether the consumer is paused.
    fn tick(
        &self,
        consumer: &BaseConsumer,
        rate_window: &mut VecDeque<(Instant, u64)>,
        paused: bool,
        errored: bool,
    ) -> bool {
        // lag counts from the rows appended (not merely polled): lag 0 means a query sees everything
        let next = self.positions();
        if let Ok(mut high) = self.high.lock() {
            for &p in next.keys() {
                if let Some(h) = cached_high_watermark(consumer, &self.options.topic, p) {
                    high.insert(p, h);
                }
            }
        }
        let lag = self.lag(&next);
        self.counters.lag.store(lag, Ordering::Relaxed);
        let now = Instant::now();
        let consumed = self.counters.consumed.load(Ordering::Relaxed);
        rate_window.push_back((now, consumed));
        while rate_window.len() > 2 && now.duration_since(rate_window[0].0) > Duration::from_secs(5)
        {
            rate_window.pop_front();
        }
        if let (Some(a), Some(b)) = (rate_window.front(), rate_window.back()) {
            let secs = b.0.duration_since(a.0).as_secs_f64();
            let rate = if secs > 0.0 {
                (b.1 - a.1) as f64 / secs
            } else {
                0.0
            };
            self.counters
                .rate_bits
                .store(rate.to_bits(), Ordering::Relaxed);
        }
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let bytes = match self.store.write() {
            Ok(mut s) => {
                s.retain(self.options.retention, now_ms);
                s.bytes
            }
            Err(_) => 0,
        };
        let assignment = consumer.assignment().ok();
        let full = bytes >= self.options.max_bytes;
        if full && !paused {
            if let Some(a) = &assignment {
                let _ = consumer.pause(a);
            }
            self.set_state(SourceState::Paused);
            self.set_error(format!(
                "paused: the table holds {} MB, its max.memory; set a 'retention' to keep only recent rows",
                bytes >> 20
            ));
            return true;
        }
        if paused && bytes < self.options.max_bytes / 10 * 9 {
            if let Some(a) = &assignment {
                let _ = consumer.resume(a);
            }
            self.clear_error();
        } else if paused {
            return true;
        }
        if !errored {
            self.set_state(if lag > 0 {
                SourceState::CatchingUp
            } else {
                SourceState::Live
            });
        }
        false
    }
}

impl Drop for LiveTable {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn newest_timestamp(batch: &RecordBatch) -> Option<i64> {
    let c = batch.column_by_name("_timestamp")?;
    let a = c.as_any().downcast_ref::<TimestampMillisecondArray>()?;
    datafusion::arrow::compute::max(a).filter(|_| a.null_count() < a.len())
}

/// The high watermark librdkafka last saw in a fetch response (no broker round trip).
fn cached_high_watermark(consumer: &BaseConsumer, topic: &str, partition: i32) -> Option<i64> {
    use rdkafka::bindings as rd;
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut lo, mut hi) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid for the consumer's lifetime; the call only reads librdkafka's cache.
    let err = unsafe {
        rd::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut lo,
            &mut hi,
        )
    };
    (err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && hi >= 0).then_some(hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    fn batch(from: i64, n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from_iter_values(from..from + n))],
        )
        .unwrap()
    }

    #[test]
    fn row_retention_keeps_exactly_the_newest_rows() {
        let mut s = Store::default();
        for i in 0..40 {
            s.push(batch(i * 10, 10), 0);
            s.retain(Retention::Rows(55), 0);
            assert!(s.rows <= 55);
        }
        assert_eq!(s.rows, 55);
        assert_eq!(s.appended, 400);
        let first = s.chunks.front().unwrap();
        let x = first
            .batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(x.value(0), 345);
        assert_eq!(first.first, 345);
    }

    #[test]
    fn small_batches_merge() {
        let mut s = Store::default();
        for i in 0..MERGE_SMALL as i64 {
            s.push(batch(i, 1), 0);
        }
        assert_eq!(s.chunks.len(), 1);
        assert_eq!(s.rows, MERGE_SMALL);
    }
}
