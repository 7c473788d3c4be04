//! embed() on a tiny random BERT written by the test (the real model's golden check is in
//! tests/slt/embed/embed.slt): batching, NULLs, progress, interrupts, and embeddings kept current by a
//! materialized view over a Kafka live table, with indexes on the view.
//!
//! The network is all-MiniLM-L6-v2's shape cut down to one layer (384 wide, as embed() returns 384 values) with
//! seeded random weights: its vectors mean nothing, but a text's vector is the same however it is batched, and
//! a text is its own nearest neighbour.

use crate::embed::{embed_array, Meter, DIMS};
use crate::{Engine, Outcome, Progress, RunOptions};
use candle_core::{Device, Tensor};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringArray};
use datafusion::arrow::datatypes::Float32Type;
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const VOCAB_WORDS: [&str; 12] = [
    "the",
    "pump",
    "is",
    "leaking",
    "oil",
    "water",
    "dripping",
    "from",
    "ceiling",
    "sensor",
    "reports",
    "temperature",
];

/// Writes the tiny model once per test process and points `KESTREL_MODELS` at it (before anything loads a
/// model: every test that embeds calls this first).
pub(crate) fn use_tiny_model() {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("kestrel-tiny-bert-{}", std::process::id()));
        write_tiny_model(&dir).expect("writing the tiny model");
        std::env::set_var("KESTREL_MODELS", &dir);
        dir
    });
}

fn write_tiny_model(dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    // vocabulary: specials, whole words, letters and digits, and their continuations, so every word tokenizes
    let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    vocab.extend(VOCAB_WORDS.iter().map(|s| s.to_string()));
    let symbols: Vec<char> = ('a'..='z').chain('0'..='9').collect();
    vocab.extend(symbols.iter().map(|c| c.to_string()));
    vocab.extend(symbols.iter().map(|c| format!("##{c}")));
    vocab.extend([".", ",", "?", "!", "'", "-"].iter().map(|s| s.to_string()));
    let ids: serde_json::Map<String, serde_json::Value> = vocab
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    let special = |id: usize, token: &str| {
        json!({"id": id, "content": token, "single_word": false, "lstrip": false, "rstrip": false,
               "normalized": false, "special": true})
    };
    let tokenizer = json!({
        "version": "1.0",
        // as the shipped MiniLM tokenizer says (the loader overrides both)
        "truncation": {"direction": "Right", "max_length": 128, "strategy": "LongestFirst", "stride": 0},
        "padding": {"strategy": {"Fixed": 128}, "direction": "Right", "pad_to_multiple_of": null, "pad_id": 0,
                    "pad_type_id": 0, "pad_token": "[PAD]"},
        "added_tokens": [special(0, "[PAD]"), special(1, "[UNK]"), special(2, "[CLS]"), special(3, "[SEP]"),
                         special(4, "[MASK]")],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                       "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}
            }
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": ids}
    });
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string())?;
    let (hidden, intermediate, positions) = (DIMS, 64, 512);
    let config = json!({
        "vocab_size": vocab.len(), "hidden_size": hidden, "num_hidden_layers": 1, "num_attention_heads": 4,
        "intermediate_size": intermediate, "max_position_embeddings": positions, "type_vocab_size": 2,
        "layer_norm_eps": 1e-12, "hidden_act": "gelu"
    });
    std::fs::write(dir.join("config.json"), config.to_string())?;
    std::fs::write(
        dir.join("sentence_bert_config.json"),
        json!({"max_seq_length": 256, "do_lower_case": false}).to_string(),
    )?;

    // seeded weights (a linear congruential generator: no rand crate needed)
    let mut state: u64 = 0x5eed;
    let mut random = |shape: &[usize]| -> candle_core::Result<Tensor> {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
            })
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu)
    };
    let ones = |n: usize| Tensor::ones(n, candle_core::DType::F32, &Device::Cpu);
    let zeros = |n: usize| Tensor::zeros(n, candle_core::DType::F32, &Device::Cpu);
    let mut w: HashMap<String, Tensor> = HashMap::new();
    w.insert(
        "embeddings.word_embeddings.weight".into(),
        random(&[vocab.len(), hidden])?,
    );
    w.insert(
        "embeddings.position_embeddings.weight".into(),
        random(&[positions, hidden])?,
    );
    w.insert(
        "embeddings.token_type_embeddings.weight".into(),
        random(&[2, hidden])?,
    );
    w.insert("embeddings.LayerNorm.weight".into(), ones(hidden)?);
    w.insert("embeddings.LayerNorm.bias".into(), zeros(hidden)?);
    let l = "encoder.layer.0";
    for part in [
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
    ] {
        w.insert(format!("{l}.{part}.weight"), random(&[hidden, hidden])?);
        w.insert(format!("{l}.{part}.bias"), random(&[hidden])?);
    }
    w.insert(
        format!("{l}.intermediate.dense.weight"),
        random(&[intermediate, hidden])?,
    );
    w.insert(
        format!("{l}.intermediate.dense.bias"),
        random(&[intermediate])?,
    );
    w.insert(
        format!("{l}.output.dense.weight"),
        random(&[hidden, intermediate])?,
    );
    w.insert(format!("{l}.output.dense.bias"), random(&[hidden])?);
    for norm in ["attention.output.LayerNorm", "output.LayerNorm"] {
        w.insert(format!("{l}.{norm}.weight"), ones(hidden)?);
        w.insert(format!("{l}.{norm}.bias"), zeros(hidden)?);
    }
    candle_core::safetensors::save(&w, dir.join("model.safetensors"))?;
    Ok(())
}

fn vectors(array: &ArrayRef) -> Vec<Option<Vec<f32>>> {
    let list = array.as_fixed_size_list();
    (0..list.len())
        .map(|i| {
            list.is_valid(i).then(|| {
                list.value(i)
                    .as_primitive::<Float32Type>()
                    .values()
                    .to_vec()
            })
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

fn texts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            // lengths from 1 to 40 words, so batches pad
            let words = 1 + (i * 7) % 40;
            (0..words)
                .map(|w| VOCAB_WORDS[(i + w * 3) % VOCAB_WORDS.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[test]
fn a_column_embeds_as_each_text_alone_and_null_stays_null() {
    use_tiny_model();
    let meter = Meter::default();
    let mut all: Vec<Option<String>> = texts(70).into_iter().map(Some).collect();
    all[5] = None;
    all[40] = None;
    let column: ArrayRef = Arc::new(StringArray::from(all.clone()));
    let together = vectors(&embed_array(&column, &meter).expect("embed"));
    assert_eq!(together.len(), 70);
    assert_eq!(meter.embedded(), 68, "NULL texts are not embedded");
    for (i, text) in all.iter().enumerate() {
        let Some(text) = text else {
            assert!(together[i].is_none(), "row {i}: NULL text, NULL vector");
            continue;
        };
        let v = together[i].as_ref().expect("a vector");
        assert_eq!(v.len(), DIMS);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(
            (norm - 1.0).abs() < 1e-5,
            "row {i}: unit length, got {norm}"
        );
        // alone: no padding at all; in the column: padded to the longest text of its sub-batch
        let alone: ArrayRef = Arc::new(StringArray::from(vec![text.as_str()]));
        let alone = vectors(&embed_array(&alone, &meter).expect("embed one"));
        let c = cosine(v, alone[0].as_ref().expect("a vector"));
        assert!(
            c >= 0.9999,
            "row {i} ({text:?}): cosine {c} between batched and alone"
        );
    }
}

#[test]
fn an_interrupt_stops_a_column_within_a_sub_batch() {
    use_tiny_model();
    let meter = Arc::new(Meter::default());
    let column: ArrayRef = Arc::new(StringArray::from(texts(20_000)));
    let worker = std::thread::spawn({
        let meter = meter.clone();
        move || embed_array(&column, &meter)
    });
    // interrupt once the first sub-batch is done
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while meter.embedded() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    meter.interrupt();
    let result = worker.join().expect("the worker does not panic");
    let error = result.expect_err("an interrupted column fails").to_string();
    assert!(error.contains("interrupted after"), "{error}");
    assert!(
        meter.embedded() < 20_000,
        "stopped early: {}",
        meter.embedded()
    );
    // the next call is not affected by the old interrupt
    let one: ArrayRef = Arc::new(StringArray::from(vec!["the pump"]));
    assert!(embed_array(&one, &meter).is_ok());
}

async fn run(engine: &Engine, sql: &str) -> Option<Outcome> {
    match engine.run_cell(sql, &RunOptions::all_rows()).await {
        Ok(o) => o,
        Err(e) => panic!("{sql}: {e}"),
    }
}

async fn rows(engine: &Engine, sql: &str) -> Vec<RecordBatch> {
    match run(engine, sql).await {
        Some(Outcome::Rows(r)) => r.batches,
        other => panic!("{sql}: not rows: {other:?}"),
    }
}

async fn ints(engine: &Engine, sql: &str) -> Vec<i64> {
    rows(engine, sql)
        .await
        .iter()
        .flat_map(|b| {
            let c = datafusion::arrow::compute::cast(
                b.column(0),
                &datafusion::arrow::datatypes::DataType::Int64,
            )
            .expect("an integer column");
            c.as_any()
                .downcast_ref::<Int64Array>()
                .expect("int64")
                .iter()
                .flatten()
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_progress_line_counts_texts_embedded() {
    use_tiny_model();
    let engine = Engine::new();
    let progress = Arc::new(Progress::default());
    let opts = RunOptions::all_rows().with_progress(progress.clone());
    let values: Vec<String> = texts(300).iter().map(|t| format!("('{t}')")).collect();
    engine
        .run_cell(
            &format!(
                "CREATE TABLE raw (text TEXT); INSERT INTO raw VALUES {}",
                values.join(", ")
            ),
            &opts,
        )
        .await
        .expect("load");
    engine
        .run_cell(
            "CREATE TABLE docs AS SELECT text, embed(text) AS e FROM raw",
            &opts,
        )
        .await
        .expect("embed a column");
    let detail = progress.detail().unwrap_or_default();
    assert!(detail.starts_with("embedding: 300 texts ("), "{detail}");
    // a statement that embeds nothing shows no embedding line
    engine
        .run_cell("SELECT count(*) FROM docs", &opts)
        .await
        .expect("count");
    assert_eq!(progress.detail(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_over_a_live_table_keeps_embeddings_and_their_indexes_current() {
    use_tiny_model();
    let engine = Engine::new();
    run(&engine, "SELECT topic FROM kafka_demo('emb_tickets', 0)").await;
    run(
        &engine,
        "CREATE EXTERNAL TABLE tickets (id INT, body TEXT) STORED AS KAFKA \
         LOCATION 'kafka://demo/emb_tickets' OPTIONS ('format' 'json', 'start' 'earliest')",
    )
    .await;
    run(
        &engine,
        "INSERT INTO tickets VALUES (1, 'the pump is leaking oil'), (2, 'sensor reports temperature'); \
         SELECT * FROM kafka_wait('tickets')",
    )
    .await;
    run(
        &engine,
        "CREATE MATERIALIZED VIEW ticket_vecs AS SELECT id, body, embed(body) AS e FROM tickets",
    )
    .await;
    let maintained = rows(
        &engine,
        "SELECT maintained FROM sys.views WHERE name = 'ticket_vecs'",
    )
    .await;
    let maintained = maintained[0]
        .column(0)
        .as_string::<i32>()
        .value(0)
        .to_string();
    assert!(maintained.starts_with("incrementally"), "{maintained}");
    run(
        &engine,
        "CREATE INDEX ticket_vecs_e ON ticket_vecs USING hnsw (e)",
    )
    .await;
    run(
        &engine,
        "CREATE INDEX ticket_vecs_ft ON ticket_vecs USING fulltext (body) WITH (analyzer = 'english')",
    )
    .await;
    let nearest =
        |q: &str| format!("SELECT id FROM ticket_vecs WHERE KNN_MATCH(e, embed('{q}'), 1)");
    assert_eq!(
        ints(&engine, &nearest("the pump is leaking oil")).await,
        vec![1]
    );

    // a new message: embedded by the view's maintainer, found by both indexes at the next query
    run(
        &engine,
        "INSERT INTO tickets VALUES (3, 'water dripping from the ceiling'); SELECT * FROM kafka_wait('tickets')",
    )
    .await;
    assert_eq!(
        ints(&engine, "SELECT count(*) FROM ticket_vecs").await,
        vec![3]
    );
    assert_eq!(
        ints(&engine, &nearest("water dripping from the ceiling")).await,
        vec![3]
    );
    assert_eq!(
        ints(
            &engine,
            "SELECT id FROM ticket_vecs WHERE MATCH(ticket_vecs_ft, 'drip')"
        )
        .await,
        vec![3]
    );
    let plan = rows(&engine, &format!("EXPLAIN {}", nearest("water"))).await;
    let plan = datafusion::arrow::util::pretty::pretty_format_batches(&plan)
        .expect("plan")
        .to_string();
    assert!(plan.contains("hnsw index ticket_vecs_e"), "{plan}");
    assert_eq!(
        ints(
            &engine,
            "SELECT rows_indexed + rows_pending FROM sys.indexes WHERE \"table\" = 'ticket_vecs' ORDER BY name"
        )
        .await,
        vec![3, 3]
    );

    // REFRESH rewrites the view's rows: the indexes follow
    run(&engine, "REFRESH MATERIALIZED VIEW ticket_vecs").await;
    assert_eq!(
        ints(&engine, &nearest("sensor reports temperature")).await,
        vec![2]
    );
    assert_eq!(
        ints(
            &engine,
            "SELECT id FROM ticket_vecs WHERE MATCH(ticket_vecs_ft, 'leak') ORDER BY id"
        )
        .await,
        vec![1]
    );

    // dropping the view drops its indexes
    run(&engine, "DROP MATERIALIZED VIEW ticket_vecs").await;
    assert_eq!(
        ints(
            &engine,
            "SELECT count(*) FROM sys.indexes WHERE \"table\" = 'ticket_vecs'"
        )
        .await,
        vec![0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_view_is_indexed_and_refresh_brings_new_rows() {
    use_tiny_model();
    let engine = Engine::new();
    run(
        &engine,
        "CREATE TABLE notes (id INT, body TEXT); \
         INSERT INTO notes VALUES (1, 'the pump is leaking oil'), (2, 'sensor reports temperature'); \
         CREATE MATERIALIZED VIEW note_vecs AS SELECT id, body, embed(body) AS e FROM notes; \
         CREATE INDEX note_vecs_e ON note_vecs USING hnsw (e)",
    )
    .await;
    run(
        &engine,
        "INSERT INTO notes VALUES (3, 'water dripping from the ceiling')",
    )
    .await;
    let q =
        "SELECT id FROM note_vecs WHERE KNN_MATCH(e, embed('water dripping from the ceiling'), 1)";
    // a snapshot until REFRESH
    assert_ne!(ints(&engine, q).await, vec![3]);
    run(&engine, "REFRESH MATERIALIZED VIEW note_vecs").await;
    assert_eq!(ints(&engine, q).await, vec![3]);
}
