"""The SQL of the mission's two source documents (tests/data/seed_sql/, a copy of shared/seed_sql), pasted into
the kernel block by block as a user would: each block runs with its results asserted, and the one non-trivial
PL/pgSQL function (a trigger with a loop) is refused with an error naming Kestrel's way to do it."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import execute

SEEDS = Path(__file__).resolve().parent / "data" / "seed_sql"


def blocks(name: str) -> dict[int, str]:
    text = (SEEDS / name).read_text()
    parts = re.split(r"^-- block (\d+)\s*$", text, flags=re.M)
    return {int(parts[i]): parts[i + 1].strip() for i in range(1, len(parts), 2)}


def ok(kc, code: str):
    ex = execute(kc, code)
    assert ex.status == "ok", ex.outputs
    return ex


def plain(ex) -> str:
    return ex.result["text/plain"]


def test_crate_ai_integration(kc):
    b = blocks("crate-ai-integration.sql")
    # the tables the blocks read but never create
    ok(kc, """
        CREATE TABLE sessions (user_id INT, duration DOUBLE, page TEXT) AS VALUES
          (1, 10.0, 'home'), (1, 20.0, 'docs'), (1, 30.0, 'docs'), (2, 5.0, 'home');
        CREATE TABLE telemetry (ts TIMESTAMPTZ, temperature DOUBLE, error_code TEXT);
        INSERT INTO telemetry VALUES (now() - INTERVAL '1 day', 85, 'E1'), (now() - INTERVAL '1 day', 90, NULL),
          (now() - INTERVAL '30 days', 95, 'E2'), (now() - INTERVAL '2 hours', 70, 'E3');
        CREATE TABLE user_features (user_id INT, last_active TIMESTAMPTZ);
        INSERT INTO user_features VALUES (1, now() - INTERVAL '2 hours'), (2, now() - INTERVAL '3 days')""")
    out = plain(ok(kc, b[1].rstrip(";") + " ORDER BY user_id"))
    assert "avg_session" in out and "page_diversity" in out
    assert re.search(r"\|\s+1 \|\s+20\.0 \|\s+2 \|", out), out
    assert re.search(r"\|\s+1 \|", plain(ok(kc, f"SELECT count(*) AS n FROM ({b[2].rstrip(';')})")))
    ok(kc, b[3])
    ok(kc, "INSERT INTO article_embeddings VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'hi', "
           "[" + ", ".join(["0.1"] * 384) + "])")
    html = ok(kc, "SELECT id FROM article_embeddings").result["text/html"]
    assert "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11" in html and ">uuid<" in html
    assert re.search(r"\|\s+1 \|", plain(ok(kc, b[4].rstrip(";").replace("SELECT *", "SELECT user_id"))))


def test_streaming_patterns(kc):
    b = blocks("streaming-patterns.sql")
    ex = execute(kc, b[1])
    # the table, the view and the refresh function are made; the trigger is refused with the Kestrel way
    assert ex.status == "error"
    err = ex.error
    assert "kafka_to_features" in err["evalue"] and "STORED AS KAFKA" in err["evalue"], err
    assert "continuous" in err["evalue"] and "INSERT INTO ... SELECT" in err["evalue"], err
    tables = plain(ok(kc, "SELECT name FROM sys.views"))
    assert "feature_aggregates" in tables
    ok(kc, """INSERT INTO real_time_features (feature_id, entity_id, feature_name, feature_value, timestamp)
              VALUES (gen_random_uuid(), 'u1', 'clicks', 3, now() - INTERVAL '1 minute'),
                     (gen_random_uuid(), 'u1', 'clicks', 5, now() - INTERVAL '2 minutes'),
                     (gen_random_uuid(), 'u2', 'clicks', 7, now() - INTERVAL '3 hours')""")
    ok(kc, "SELECT refresh_feature_aggregates()")
    out = plain(ok(kc, "SELECT entity_id, avg_value, count FROM feature_aggregates"))
    assert "u1" in out and "u2" not in out, out
    ok(kc, b[2])
    out = plain(ok(kc, "SELECT * FROM calculate_real_time_features() ORDER BY window_end"))
    assert "rolling_avg_5min" in out and "4.0000000000" in out, out
    ok(kc, b[3])
    ok(kc, """INSERT INTO sensor_readings VALUES ('2026-11-02 10:00:00+00', 's1', 20, '{"site": 1}'),
              ('2026-11-02 10:01:00+00', 's1', 22, NULL)""")
    out = plain(ok(kc, "SELECT bucket, sensor_id, count FROM sensor_stats_5min"))
    assert "2026-11-02T10:00:00Z" in out and re.search(r"\|\s+2 \|", out), out
    bad = execute(kc, "INSERT INTO sensor_readings VALUES (now(), 's1', 1, '{oops')")
    assert bad.status == "error" and "invalid JSON for column metadata" in bad.error["evalue"]
