"""Every notebook in tutorials/ and notebooks/ runs top to bottom on the Kestrel kernel, and its key outputs are
what the text around them promises."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pyarrow.parquet as pq
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted([*ROOT.glob("tutorials/*.ipynb"), *ROOT.glob("notebooks/*.ipynb")])

# For each notebook: (a snippet of a cell's source, a snippet its output must contain).
EXPECTED: dict[str, list[tuple[str, str]]] = {
    "01-first-queries.ipynb": [
        ("'Hello, Kestrel'", "| Hello, Kestrel |     42 |"),
        ("CREATE TABLE sessions", "Inserted 6 rows into sessions"),
        ("AVG(duration)        AS avg_session", "|       1 | 16.666666666666668 |              2 |"),
        ("WHERE user_id = 2 ORDER BY page", "|       2 | checkout |     NULL |"),
        ("AS sessions_last_7_days", "(3 rows)"),
        ("SHOW TABLES", "sessions"),
        ("DESCRIBE sessions", "Timestamp(ns)"),
        ("ORDER BY visits DESC", "| product  |     75 |         35.5 |"),
        ("TO 'output/user_features.parquet'", "Copied 25 rows to 'output/user_features.parquet'"),
        ("AS mean_avg_session", "|    25 |             36.4 |"),
        ("generate_series(1, 2000000)", "(showing 50 of 2,000,000 rows)"),
        ("FROM sesions", "table 'datafusion.public.sesions' not found"),
    ],
    "02-vector-search.ipynb": [
        ('CREATE TABLE points', 'Inserted 4 rows into points'),
        ('l2_distance(v, [1.0, 0.0, 0.0])', '2.236'),
        ('[10.2, 10.3]', '0.006134969'),
        ('AS dot_of_units', '0.96'),
        ("'too short'", 'expected a vector of 3 values'),
        ('CREATE TABLE articles AS', 'Created table articles'),
        ('DESCRIBE articles', 'FixedSizeList(384 x Float32)'),
        ('AS since', '(8 rows)'),
        ('WHERE id = 286', '384'),
        ("LOCATION 'data/questions.parquet'", 'how do plants make food from sunlight?'),
        ("'how do plants make food from sunlight?'", 'Chlorophyll in leaves'),
        ("ILIKE '%plant%'", 'Duplantis'),
        ("WHERE KNN_MATCH(embedding, (SELECT embedding FROM questions WHERE question = 'why did ancient Rome fall apart')", 'FTX'),
        ("WHERE category = 'history'", 'Overexpansion'),
        ('AND year >= 2023', 'Federal Reserve'),
        ('AND _score > 0.5', '(3 rows)'),
        ('q.embedding) > 0.45', '(4 rows)'),
        ('AND id <> 134', "Spain won the men's European Championship"),
        ('EXPLAIN SELECT id, _score', 'search=exact'),
        ('CREATE INDEX articles_embedding', '481 vectors, cosine'),
        ('SELECT * FROM sys.indexes', 'articles_embedding'),
        ('EXPLAIN SELECT id, category, _score', 'search=hnsw index articles_embedding'),
        ('SELECT id, category, text, round(_score, 3) AS cosine', 'Maldives'),
        ('SELECT 1001 AS id', 'Inserted 1 row into articles'),
        ('SELECT name, rows_indexed, rows_pending FROM sys.indexes', '481 |            1 |'),
        ('SELECT id, year, text, round(_score, 3) AS cosine', '1001'),
        ("TO 'output/breakfast_ideas.parquet'", "Copied 10 rows to 'output/breakfast_ideas.parquet'"),
        ('AS hits FROM breakfast_ideas', '| cooking  |    6 |'),
    ],
    "churn-features-export.ipynb": [
        ("AS customers, MIN", "| 200000 |      5000 | 2026-05-01T00:00:00 |"),
        ("sanity checks", "| 5000 |      5000 |             0 |      0.143 |"),
        ("TO 'output/churn_training_set.parquet'", "Copied 5,000 rows to 'output/churn_training_set.parquet'"),
    ],
}


def output_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out["output_type"] in ("execute_result", "display_data"):
            parts.append(out["data"].get("text/plain", ""))
        elif out["output_type"] == "error":
            parts.append(f"{out['ename']}: {out['evalue']}")
        elif out["output_type"] == "stream":
            parts.append(out["text"])
    return "\n".join(parts)


def test_every_notebook_has_expectations():
    assert NOTEBOOKS, "no notebooks found"
    missing = [nb.name for nb in NOTEBOOKS if nb.name not in EXPECTED]
    assert not missing, f"notebooks without asserted outputs: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_and_shows_what_it_promises(path: Path):
    shutil.rmtree(path.parent / "output", ignore_errors=True)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="kestrel", resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    for source_snippet, expected in EXPECTED.get(path.name, []):
        cells = [c for c in nb.cells if c.cell_type == "code" and source_snippet in c.source]
        assert len(cells) == 1, f"{path.name}: {len(cells)} cells contain {source_snippet!r}"
        text = output_text(cells[0])
        assert expected in text, f"{path.name}: cell with {source_snippet!r} printed:\n{text}"
    # exports are readable by pyarrow, as a training job would read them
    for parquet in (path.parent / "output").glob("*.parquet"):
        assert pq.read_table(parquet).num_rows > 0
