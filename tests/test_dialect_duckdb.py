"""Column names and UUID/JSON behaviour, differential against DuckDB on the same statements (where DuckDB defines
them): a result column without an alias is named as DuckDB names it."""

from __future__ import annotations

import json
import subprocess

import pytest
import duckdb  # pinned in requirements.txt: the comparison must run, never skip

SETUP = "CREATE TABLE t (x INT, ts TIMESTAMP, page TEXT, user_id INT); " \
        "INSERT INTO t VALUES (1, TIMESTAMP '2026-11-02 10:01:00', 'a', 7);"

EXPRESSIONS = [
    "x", "t.x", "avg(x)", "AVG(x)", "count(*)", "count(DISTINCT page)", "x + 1", "(x + 1) * 2", "x * 2 + 1",
    "time_bucket(INTERVAL '5 minutes', ts)", "time_bucket('5 minutes', ts)", "CAST(x AS DOUBLE)", "x::bigint",
    "now() - INTERVAL '1 hour'", "coalesce(x, 0)", "x IS NULL", "x BETWEEN 1 AND 2", "x IN (1, 2)",
    "date_trunc('hour', ts)", "-x", "NOT (x > 1)", "x > 1 AND x < 3", "1", "'a'", "1.5", "min(ts)", "count(x)",
    "sum(x) OVER (PARTITION BY user_id)", "gen_random_uuid()",
]


def kestrel(kestrel_bin: str, sql: str) -> list[dict]:
    out = subprocess.run([kestrel_bin, "sql", "-c", sql, "--format", "json"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_column_names_match_duckdb(kestrel_bin, expr):
    group = " GROUP BY ALL" if any(a in expr.lower() for a in ("avg(", "count(", "min(")) else ""
    query = f"SELECT {expr} FROM t{group}"
    con = duckdb.connect()
    con.execute(SETUP)
    want = [d[0] for d in con.execute(query).description]
    if group:
        query = f"SELECT {expr} FROM t"
    rows = kestrel(kestrel_bin, SETUP + query)
    assert list(rows[0].keys()) == want


def test_uuid_and_json_behave_as_in_duckdb(kestrel_bin):
    sql = ("CREATE TABLE u (id UUID, doc JSON); "
           "INSERT INTO u VALUES ('A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '{\"a\": {\"b\": 2}}'); ")
    # a UUID compared with text, in the SELECT list and in WHERE, reads the text as a UUID in both
    query = ("SELECT CAST(id AS TEXT) AS id_text, id = 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11' AS same, "
             "doc->'a'->>'b' AS b FROM u WHERE id = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'")
    con = duckdb.connect()
    con.execute(sql)
    want = con.execute(query).fetchall()[0]
    got = kestrel(kestrel_bin, sql + query)[0]
    assert (got["id_text"], got["same"], got["b"]) == (want[0], want[1], want[2])
    # both refuse text that is no UUID
    with pytest.raises(duckdb.Error):
        con.execute("SELECT CAST('nope' AS UUID)")
    out = subprocess.run([kestrel_bin, "sql", "-c", "SELECT CAST('nope' AS UUID)"], capture_output=True, text=True)
    assert out.returncode != 0 and 'invalid input syntax for type uuid: "nope"' in out.stderr
