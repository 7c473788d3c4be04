"""Write tutorials/06-text-and-hybrid-search.ipynb, the text search tutorial, without outputs.

The notebook is committed; run this script only after editing the cells below, then run the notebook test
(tests/test_notebooks.py), which executes it and checks its key outputs. It embeds the tutorial articles with
embed() (the all-MiniLM-L6-v2 weights that ./install.sh puts in the venv) and streams through the kernel's
built-in demo broker, so it needs no Kafka and no Python.

How to run (from the repository root; needs nbformat, as in the project's .venv):

    .venv/bin/python tutorials/data/make_text_tutorial.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nbwrite import md, sql, write  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parent.parent / "06-text-and-hybrid-search.ipynb"

CELLS = [
    md("""
    # 6. Text in, answers out: embeddings, full-text search and hybrid search

    Everything here happens in SQL, inside the kernel: sentences become vectors with `embed()`, words are found
    with a full-text index and `MATCH` (BM25 scoring, CrateDB's syntax), and the two are fused by
    `hybrid_search`. At the end, messages arriving on a Kafka topic are searchable the moment they land.

    The corpus is the 481 short articles of tutorial 2 (`data/articles.parquet`).
    """),
    sql("""
    CREATE EXTERNAL TABLE raw_articles STORED AS PARQUET LOCATION 'data/articles.parquet';
    CREATE TABLE articles AS SELECT id, category, year, text, embed(text) AS e FROM raw_articles
    """),
    md("""
    ## Semantic search from a typed question

    `embed(text)` returns a `FLOAT_VECTOR(384)`. A constant argument is embedded once, so the question below is one
    embedding, compared with every article's.
    """),
    sql("""
    SELECT id, category, substr(text, 1, 70) AS text, round(_score, 3) AS cosine
    FROM articles
    WHERE KNN_MATCH(e, embed('which animals live in the ocean?'), 5)
    """),
    md("""
    ## A full-text index and MATCH

    `CREATE INDEX ... USING fulltext` indexes a text column with an analyzer (here `english`: lower case, English
    stop words dropped, words stemmed, so *plants* finds *plant*). `MATCH(index, 'words')` in the WHERE clause is
    true for the rows holding the words, and `_score` is their BM25 score. `highlight()` shows where they are.
    """),
    sql("""
    CREATE INDEX articles_ft ON articles USING fulltext (text) WITH (analyzer = 'english')
    """),
    sql("""
    SELECT id, category, round(_score, 3) AS bm25, highlight(text, 'plants leaves sunlight', 'english', 90) AS snippet
    FROM articles
    WHERE MATCH(articles_ft, 'plants leaves sunlight')
    ORDER BY _score DESC
    LIMIT 5
    """),
    md("""
    Other conditions filter *before* ranking: the best matches among the rows that pass, never fewer because
    better-scoring rows were filtered out. Match types and options are CrateDB's: `USING phrase` for words in
    order, `WITH (operator = 'and')` for all words, `fuzziness` for typos.
    """),
    sql("""
    SELECT id, year, substr(text, 1, 80) AS text
    FROM articles
    WHERE MATCH(articles_ft, 'world cup') USING phrase AND year >= 2010
    ORDER BY _score DESC
    LIMIT 5
    """),
    sql("""
    SELECT id, substr(text, 1, 80) AS text
    FROM articles
    WHERE MATCH(articles_ft, 'vulcano') USING best_fields WITH (fuzziness = 1)
    ORDER BY _score DESC
    LIMIT 3
    """),
    md("""
    ## Hybrid search

    Words and meaning find different things: BM25 needs the words, the embedding finds paraphrases.
    `hybrid_search(table, text_index, vector_column, 'question', k)` runs both on the same rows and fuses the two
    rankings by reciprocal rank fusion (`1/(60 + rank)` per side). A row found by only one side keeps its one term,
    so nothing either side found is lost; `text_rank` and `vector_rank` say who found what.
    """),
    sql("""
    SELECT id, category, round(_score, 4) AS rrf, text_rank, vector_rank, substr(text, 1, 60) AS text
    FROM hybrid_search('articles', 'articles_ft', 'e', 'which animals live in the ocean?', 8)
    """),
    md("""
    The same fusion written by hand, as CrateDB's documentation does it: two ranked CTEs. A FULL OUTER JOIN keeps
    one-sided hits (CrateDB's recipe joins the two and drops them).
    """),
    sql("""
    WITH bm25 AS (
      SELECT id, RANK() OVER (ORDER BY _score DESC) AS rank
      FROM articles WHERE MATCH(articles_ft, 'which animals live in the ocean?')
      ORDER BY _score DESC LIMIT 100
    ), knn AS (
      SELECT id, RANK() OVER (ORDER BY _score DESC) AS rank
      FROM articles WHERE KNN_MATCH(e, embed('which animals live in the ocean?'), 100)
    )
    SELECT COALESCE(bm25.id, knn.id) AS id,
           round(COALESCE(1.0 / (60 + bm25.rank), 0) + COALESCE(1.0 / (60 + knn.rank), 0), 4) AS rrf,
           bm25.rank AS text_rank, knn.rank AS vector_rank
    FROM bm25 FULL OUTER JOIN knn ON bm25.id = knn.id
    ORDER BY rrf DESC, id
    LIMIT 8
    """),
    md("""
    ## Live text: searchable as it arrives

    A full-text index on a Kafka live table takes new messages in at the next query. Here the built-in demo broker
    carries a `tickets` topic; `INSERT INTO` a Kafka table publishes messages to it.
    """),
    sql("""
    SELECT topic FROM kafka_demo('tickets', 0);
    CREATE EXTERNAL TABLE tickets (id INT, body TEXT)
    STORED AS KAFKA LOCATION 'kafka://demo/tickets'
    OPTIONS ('format' 'json', 'start' 'earliest');
    CREATE INDEX tickets_ft ON tickets USING fulltext (body) WITH (analyzer = 'english');
    INSERT INTO tickets VALUES (1, 'The pump in hall 3 is leaking oil'), (2, 'Sensor 17 reports a high temperature');
    SELECT table_name, rows FROM kafka_wait('tickets')
    """),
    sql("""
    SELECT id, highlight(body, 'leak') AS snippet FROM tickets WHERE MATCH(tickets_ft, 'leak') ORDER BY id
    """),
    sql("""
    INSERT INTO tickets VALUES (3, 'Another leak near valve 7');
    SELECT table_name, rows FROM kafka_wait('tickets')
    """),
    sql("""
    SELECT id, highlight(body, 'leaks') AS snippet FROM tickets WHERE MATCH(tickets_ft, 'leaks') ORDER BY id
    """),
    md("""
    `sys.indexes` lists full-text indexes beside vector ones: rows indexed, rows not yet taken in, the analyzer.
    """),
    sql("""
    SELECT name, "table", "column", using, analyzer, rows_indexed, rows_pending FROM sys.indexes ORDER BY name
    """),
    md("""
    ## Mistakes

    A MATCH on something that has no index says what exists, and how to make one.
    """),
    sql("""
    SELECT id FROM articles WHERE MATCH(body_ft, 'ocean')
    """),
    md("""
    ## What you used

    * `embed(text)`: sentence vectors in SQL; `KNN_MATCH(e, embed('question'), k)`.
    * `CREATE INDEX name ON t USING fulltext (columns) WITH (analyzer = 'english')`, or `INDEX name USING FULLTEXT
      (columns)` in CREATE TABLE; `CREATE ANALYZER` for your own.
    * `MATCH(index, 'words') [USING best_fields | most_fields | phrase | phrase_prefix | query_string] [WITH (...)]`
      with `_score` (BM25) and `highlight(text, 'words')`.
    * `hybrid_search(table, text_index, vector_column, 'question', k [, 'rrf_k=60, candidates=100, fusion=convex,
      alpha=0.5'])`.
    """),
]

if __name__ == "__main__":
    write(CELLS, NOTEBOOK)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "MATCH(body_ft" in cell.source:
            cell.metadata["tags"] = ["raises-exception"]
    nbformat.write(nb, NOTEBOOK)
