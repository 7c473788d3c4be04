//! Recall of the indexed KNN_MATCH against exact search, on generated clustered data, through SQL.

use crate::{Engine, Outcome, RunOptions};
use datafusion::arrow::array::{
    AsArray, FixedSizeListArray, Float32Array, Int64Array, RecordBatch,
};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::catalog::MemTable;
use std::sync::Arc;
use std::time::Duration;

/// A small deterministic generator (xorshift64*), so the test data is the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform().max(1e-7), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f32::consts::PI * v).cos()
    }
}

const DIM: usize = 64;

struct Data {
    centres: Vec<Vec<f32>>,
    rng: Rng,
}

impl Data {
    fn new(clusters: usize) -> Self {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let centres = (0..clusters)
            .map(|_| (0..DIM).map(|_| rng.uniform() * 20.0 - 10.0).collect())
            .collect();
        Self { centres, rng }
    }

    /// A point of a random cluster, and the cluster.
    fn point(&mut self) -> (Vec<f32>, i64) {
        let c = (self.rng.next() % self.centres.len() as u64) as usize;
        let v = self.centres[c]
            .iter()
            .map(|x| x + self.rng.normal() * 1.5)
            .collect();
        (v, c as i64)
    }

    fn batch(&mut self, first_id: i64, n: usize) -> (RecordBatch, Vec<Vec<f32>>, Vec<i64>) {
        let mut values = Vec::with_capacity(n * DIM);
        let mut vectors = Vec::with_capacity(n);
        let mut clusters = Vec::with_capacity(n);
        for _ in 0..n {
            let (v, c) = self.point();
            values.extend_from_slice(&v);
            vectors.push(v);
            clusters.push(c);
        }
        let ids = Int64Array::from_iter_values(first_id..first_id + n as i64);
        let list = FixedSizeListArray::new(
            Arc::new(Field::new_list_field(DataType::Float32, true)),
            DIM as i32,
            Arc::new(Float32Array::from(values)),
            None,
        );
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(ids),
                Arc::new(Int64Array::from(clusters.clone())),
                Arc::new(list),
            ],
        )
        .expect("batch");
        (batch, vectors, clusters)
    }
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("cluster", DataType::Int64, false),
        Field::new("e", crate::vector::convert::vector_type(DIM), true),
    ]))
}

fn exact_top(all: &[Vec<f32>], ok: &dyn Fn(usize) -> bool, q: &[f32], k: usize) -> Vec<i64> {
    let mut d: Vec<(f64, usize)> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| ok(*i))
        .map(|(i, v)| {
            let s: f64 = v
                .iter()
                .zip(q)
                .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                .sum();
            (s, i)
        })
        .collect();
    d.sort_by(|a, b| a.0.total_cmp(&b.0));
    d.into_iter().take(k).map(|(_, i)| i as i64).collect()
}

async fn ids(engine: &Engine, sql: &str) -> Vec<i64> {
    match engine.run_cell(sql, &RunOptions::all_rows()).await {
        Ok(Some(Outcome::Rows(r))) => r
            .batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect(),
        other => panic!("{sql}: {other:?}"),
    }
}

async fn text(engine: &Engine, sql: &str) -> String {
    match engine.run_cell(sql, &RunOptions::all_rows()).await {
        Ok(Some(Outcome::Rows(r))) => {
            datafusion::arrow::util::pretty::pretty_format_batches(&r.batches)
                .expect("format")
                .to_string()
        }
        other => panic!("{sql}: {other:?}"),
    }
}

fn literal(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x}")).collect();
    format!("[{}]", parts.join(", "))
}

fn recall(engine_ids: &[i64], exact: &[i64]) -> f64 {
    let hit = exact.iter().filter(|i| engine_ids.contains(i)).count();
    hit as f64 / exact.len() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_knn_recall_on_clustered_data() {
    const N: usize = 20_000;
    const K: usize = 10;
    const QUERIES: usize = 100;
    let mut data = Data::new(40);
    let mut partitions = Vec::new();
    let mut all = Vec::new();
    let mut clusters = Vec::new();
    for start in (0..N).step_by(4096) {
        let (batch, vectors, c) = data.batch(start as i64, 4096.min(N - start));
        partitions.push(batch);
        all.extend(vectors);
        clusters.extend(c);
    }
    let engine = Engine::new();
    let table = MemTable::try_new(schema(), vec![partitions]).expect("table");
    engine
        .session()
        .register_table("pts", Arc::new(table))
        .expect("register");
    // The build reports its progress (the notebook shows "building index pts_e: n of N vectors").
    let progress = Arc::new(crate::Progress::default());
    engine
        .run_cell(
            "CREATE INDEX pts_e ON pts USING hnsw (e)",
            &RunOptions::all_rows().with_progress(progress.clone()),
        )
        .await
        .expect("create index");
    assert_eq!(
        progress.rows(),
        N as u64,
        "progress ends at every vector indexed"
    );
    assert_eq!(
        progress.detail(),
        None,
        "the progress line is cleared once the index exists"
    );
    let plan = text(
        &engine,
        &format!(
            "EXPLAIN SELECT id FROM pts WHERE KNN_MATCH(e, {}, 10)",
            literal(&all[0])
        ),
    )
    .await;
    assert!(plan.contains("search=hnsw index pts_e"), "{plan}");

    let queries: Vec<Vec<f32>> = (0..QUERIES).map(|_| data.point().0).collect();
    let mut total = 0.0;
    for q in &queries {
        let got = ids(
            &engine,
            &format!("SELECT id FROM pts WHERE KNN_MATCH(e, {}, {K})", literal(q)),
        )
        .await;
        assert_eq!(got.len(), K);
        total += recall(&got, &exact_top(&all, &|_| true, q, K));
    }
    let unfiltered = total / QUERIES as f64;
    assert!(unfiltered >= 0.95, "recall@10 {unfiltered:.3} < 0.95");

    // A filter that passes half the rows: always k rows, all passing, and the right ones.
    let mut total = 0.0;
    for q in queries.iter().take(30) {
        let got = ids(
            &engine,
            &format!(
                "SELECT id FROM pts WHERE KNN_MATCH(e, {}, {K}) AND cluster % 2 = 0",
                literal(q)
            ),
        )
        .await;
        assert_eq!(got.len(), K);
        assert!(got.iter().all(|&i| clusters[i as usize] % 2 == 0));
        total += recall(&got, &exact_top(&all, &|i| clusters[i] % 2 == 0, q, K));
    }
    let filtered = total / 30.0;
    assert!(filtered >= 0.95, "filtered recall@10 {filtered:.3} < 0.95");

    // A selective filter (one cluster of 40) is answered exactly.
    let q = &queries[0];
    let got = ids(
        &engine,
        &format!(
            "SELECT id FROM pts WHERE KNN_MATCH(e, {}, {K}) AND cluster = 7",
            literal(q)
        ),
    )
    .await;
    assert_eq!(got, exact_top(&all, &|i| clusters[i] == 7, q, K));

    // The same filters through the graph (over-fetching, retries, per-segment fallback): k distinct rows.
    let index = engine.indexes().index("pts_e").expect("index");
    index.set_exact_below(0);
    let mut total = 0.0;
    for (i, q) in queries.iter().take(30).enumerate() {
        // Alternate a half filter with one that passes a quarter of the rows.
        let (sql_filter, modulus) = if i % 2 == 0 {
            ("cluster % 2 = 0", 2)
        } else {
            ("cluster % 4 = 1", 4)
        };
        let got = ids(
            &engine,
            &format!(
                "SELECT id FROM pts WHERE KNN_MATCH(e, {}, {K}) AND {sql_filter}",
                literal(q)
            ),
        )
        .await;
        let mut distinct = got.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), K, "{got:?}");
        let want = |c: i64| if modulus == 2 { c % 2 == 0 } else { c % 4 == 1 };
        assert!(got.iter().all(|&i| want(clusters[i as usize])));
        total += recall(&got, &exact_top(&all, &|i| want(clusters[i]), q, K));
    }
    let graph_filtered = total / 30.0;
    assert!(
        graph_filtered >= 0.95,
        "filtered graph recall@10 {graph_filtered:.3} < 0.95"
    );
    index.set_exact_below(20_000);

    // Appended rows: found at once (exact tail), then folded into a second segment in the background.
    let (batch, vectors, c) = data.batch(N as i64, 6_000);
    engine
        .session()
        .register_batch("more", batch)
        .expect("register more");
    engine
        .run_cell(
            "INSERT INTO pts SELECT * FROM more",
            &RunOptions::all_rows(),
        )
        .await
        .expect("insert");
    all.extend(vectors);
    clusters.extend(c);
    let newest = &all[N + 5];
    let got = ids(
        &engine,
        &format!(
            "SELECT id FROM pts WHERE KNN_MATCH(e, {}, 1)",
            literal(newest)
        ),
    )
    .await;
    assert_eq!(got, vec![(N + 5) as i64]);
    let index = engine.indexes().index("pts_e").expect("index");
    assert!(
        index.wait_idle(Duration::from_secs(300)),
        "background build did not finish"
    );
    let stats = index.stats();
    assert_eq!(stats.rows_indexed, N + 6_000, "{stats:?}");
    assert_eq!(stats.segments, 2, "{stats:?}");
    let mut total = 0.0;
    for q in queries.iter().take(30) {
        let got = ids(
            &engine,
            &format!("SELECT id FROM pts WHERE KNN_MATCH(e, {}, {K})", literal(q)),
        )
        .await;
        total += recall(&got, &exact_top(&all, &|_| true, q, K));
    }
    let after = total / 30.0;
    assert!(after >= 0.95, "recall@10 after appends {after:.3} < 0.95");
    println!(
        "recall@10: {unfiltered:.3} unfiltered, {filtered:.3} filtered, {graph_filtered:.3} filtered \
         through the graph, {after:.3} after appends"
    );
}
