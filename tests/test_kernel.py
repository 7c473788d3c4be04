"""End-to-end behaviour of the Kestrel kernel through a real jupyter_client."""

from __future__ import annotations

import re
import time
import uuid

import pyarrow.parquet as pq
import pytest
from conftest import execute


def test_statements_run_in_order_and_the_last_result_shows(kc):
    ex = execute(
        kc,
        """
        CREATE TABLE sessions (user_id BIGINT, page TEXT, duration DOUBLE, ts TIMESTAMP);
        INSERT INTO sessions VALUES
          (1, 'home', 12.5, now() - INTERVAL '1 day'),
          (1, 'search', 30.0, now() - INTERVAL '2 days'),
          (2, 'home', NULL, now() - INTERVAL '10 days'),
          (3, '', 4.0, now());
        SELECT user_id, AVG(duration) AS avg_session, COUNT(DISTINCT page) AS page_diversity
        FROM sessions GROUP BY user_id ORDER BY user_id
        """,
    )
    assert ex.status == "ok", ex.reply
    html = ex.result["text/html"]
    # column names with their types
    assert "avg_session<br>" in html and ">Float64</span>" in html
    assert "page_diversity<br>" in html and ">Int64</span>" in html
    # numbers right-aligned, NULL distinct
    assert '<td style="text-align:right">21.25</td>' in html
    assert 'class="kestrel-null"' in html
    # footer: row count and time
    assert "3 rows · " in html and " ms</div>" in html
    plain = ex.result["text/plain"]
    assert "| avg_session |" in plain and "NULL" in plain and plain.endswith("(3 rows)")


def test_ddl_and_dml_confirm_in_one_line(kc):
    ex = execute(kc, "CREATE TABLE confirm_me (x INT)")
    assert ex.result["text/plain"] == "Created table confirm_me"
    ex = execute(kc, "INSERT INTO confirm_me VALUES (1), (2), (3)")
    assert ex.result["text/plain"] == "Inserted 3 rows into confirm_me"


def test_seed_time_window_query(kc):
    ex = execute(kc, "SELECT count(*) AS recent FROM sessions WHERE ts BETWEEN NOW() - INTERVAL '7 days' AND NOW()")
    assert ex.status == "ok", ex.reply
    assert "| 3      |" in ex.result["text/plain"] or "|      3 |" in ex.result["text/plain"]


def test_show_describe_explain_set(kc):
    assert "sessions" in execute(kc, "SHOW TABLES").result["text/plain"]
    described = execute(kc, "DESCRIBE sessions").result["text/plain"]
    assert "duration" in described and "Float64" in described
    assert "physical_plan" in execute(kc, "EXPLAIN SELECT * FROM sessions").result["text/plain"]
    assert execute(kc, "SET datafusion.execution.batch_size = 4096").result["text/plain"].startswith("SET ")


def test_two_million_rows_show_a_preview_and_the_total(kc):
    started = time.monotonic()
    ex = execute(kc, "SELECT value AS n, value * 2 AS twice FROM generate_series(1, 2000000)")
    assert ex.status == "ok", ex.reply
    html, plain = ex.result["text/html"], ex.result["text/plain"]
    assert "showing 50 of 2,000,000 rows" in html
    assert plain.endswith("(showing 50 of 2,000,000 rows)")
    assert len(html) + len(plain) < 100_000  # well under 1 MB
    assert html.count("<tr>") == 51  # header + 50 rows
    # the first rows in the source's order, not from the middle of the result
    first, last = plain.splitlines()[3], plain.splitlines()[52]
    assert re.fullmatch(r"\|\s+1 \|\s+2 \|", first), first
    assert re.fullmatch(r"\|\s+50 \|\s+100 \|", last), last
    # the kernel is still responsive afterwards
    assert execute(kc, "SELECT 1").status == "ok"
    assert time.monotonic() - started < 60


def test_errors_are_one_message_naming_kind_and_cause(kc):
    ex = execute(kc, "SELECT * FROM no_such_table")
    assert ex.status == "error"
    err = ex.error
    assert err["ename"] == "PlanError"
    assert "no_such_table" in err["evalue"]
    assert ex.reply["content"]["ename"] == "PlanError"

    ex = execute(kc, "SELEC 1")
    assert ex.error["ename"] == "ParseError"
    assert "SELEC" in ex.error["evalue"]

    ex = execute(kc, "SELECT 1/0")
    assert ex.error["ename"] == "ExecutionError"
    assert "Divide by zero" in ex.error["evalue"]

    ex = execute(kc, "SELECT 1; SELECT * FROM missing_t; SELECT 3")
    assert "statement 2 of 3" in ex.error["evalue"]
    assert len(ex.outputs) == 1

    # after a %%sql line, error positions still count the cell's lines
    ex = execute(kc, "%%sql\nSELEC 1")
    assert "Line: 2, Column: 1" in ex.error["evalue"]

    ex = execute(kc, "%%nosuchmagic\nSELECT 1")
    assert ex.error["ename"] == "UsageError"
    # and the kernel lives on
    assert execute(kc, "SELECT 2").status == "ok"


def test_queued_cells_after_an_error_are_aborted(kc):
    # "Run All": cells sent together; the failing one stops those queued after it.
    # (the first cell is slow enough for the second to be queued when it fails)
    first = kc.execute("SELECT sum(value) / (sum(value) - sum(value)) FROM generate_series(1, 30000000)")
    second = kc.execute("CREATE TABLE should_not_exist (x INT)")
    replies = {}
    while len(replies) < 2:
        msg = kc.get_shell_msg(timeout=30)
        replies[msg["parent_header"]["msg_id"]] = msg["content"]["status"]
    assert replies == {first: "error", second: "aborted"}
    assert "should_not_exist" not in execute(kc, "SHOW TABLES").result["text/plain"]


def test_completion_of_keywords_functions_tables_and_columns(kc):
    execute(kc, "CREATE TABLE users (user_id BIGINT, name TEXT, signup_date DATE)")
    code = "SELECT sig FROM users"
    kc.complete(code, 10)
    reply = kc.get_shell_msg(timeout=10)["content"]
    assert reply["matches"][0] == "signup_date"
    assert (reply["cursor_start"], reply["cursor_end"]) == (7, 10)
    types = reply["metadata"]["_jupyter_types_experimental"]
    assert types[0]["type"] == "column" and types[0]["signature"] == "Date32"

    kc.complete("SELECT * FROM us", 16)
    assert kc.get_shell_msg(timeout=10)["content"]["matches"] == ["users"]

    kc.complete("SELECT u.na FROM users u", 11)
    reply = kc.get_shell_msg(timeout=10)["content"]
    assert reply["matches"] == ["name"] and reply["cursor_start"] == 9

    kc.complete("sel", 3)
    assert "select" in kc.get_shell_msg(timeout=10)["content"]["matches"]

    kc.complete("SELECT regexp_r", 15)
    assert "regexp_replace" in kc.get_shell_msg(timeout=10)["content"]["matches"]

    # cursor positions are in characters, not bytes
    code = "SELECT 'été', sig FROM users"
    kc.complete(code, code.index("sig") + 3)
    reply = kc.get_shell_msg(timeout=10)["content"]
    assert reply["cursor_start"] == code.index("sig") and reply["matches"][0] == "signup_date"


def test_inspection_of_tables_and_functions(kc):
    kc.inspect("SELECT * FROM users", 16)
    reply = kc.get_shell_msg(timeout=10)["content"]
    assert reply["found"]
    text = reply["data"]["text/plain"]
    assert text.startswith("table users (3 columns)")
    assert "signup_date" in text and "Date32" in text and "YES" in text

    kc.inspect("SELECT date_trunc(", 18)
    reply = kc.get_shell_msg(timeout=10)["content"]
    assert reply["found"]
    assert "date_trunc(precision, expression)" in reply["data"]["text/plain"]

    kc.inspect("SELECT nothing_here", 10)
    assert kc.get_shell_msg(timeout=10)["content"]["found"] is False


def test_is_complete(kc):
    for code, status in [("SELECT 1", "complete"), ("SELECT count(", "incomplete"), ("SELECT 'a", "incomplete"),
                         ("/* open", "incomplete"), ("SELECT 1)", "invalid")]:
        kc.is_complete(code)
        assert kc.get_shell_msg(timeout=10)["content"]["status"] == status, code


def test_history_tail_range_and_search(kc):
    marker = uuid.uuid4().hex
    execute(kc, f"SELECT 'history-{marker}-1'")
    execute(kc, f"SELECT 'history-{marker}-2'")
    kc.history(hist_access_type="tail", n=2, output=False, raw=True)
    tail = kc.get_shell_msg(timeout=10)["content"]["history"]
    assert [h[2] for h in tail] == [f"SELECT 'history-{marker}-1'", f"SELECT 'history-{marker}-2'"]
    session, line = tail[0][0], tail[0][1]
    kc.history(hist_access_type="range", session=session, start=line, stop=line + 1, output=False, raw=True)
    assert kc.get_shell_msg(timeout=10)["content"]["history"] == [tail[0]]
    kc.history(hist_access_type="search", pattern=f"*history-{marker}*", output=False, raw=True)
    assert len(kc.get_shell_msg(timeout=10)["content"]["history"]) == 2


def test_interrupt_cancels_a_running_query_and_keeps_tables(km, kc):
    execute(kc, "CREATE TABLE survivor AS SELECT 1 AS x")
    msg_id = kc.execute("SELECT sum(value) FROM generate_series(1, 100000000000)")
    time.sleep(2.2)
    # the control channel answers while the query runs
    kc.control_channel.send(kc.session.msg("kernel_info_request"))
    assert kc.control_channel.get_msg(timeout=2)["msg_type"] == "kernel_info_reply"
    interrupted_at = time.monotonic()
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=10)
    elapsed = time.monotonic() - interrupted_at
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "Interrupted"
    assert elapsed < 1.0, f"interrupt took {elapsed:.2f} s"
    # A cell running over a second shows a progress line, updated in place and cleared when the answer comes.
    shown = []
    while True:
        msg = kc.get_iopub_msg(timeout=10)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
        if msg["msg_type"] not in ("status", "execute_input"):
            shown.append(msg)
    kinds = [m["msg_type"] for m in shown]
    assert kinds[0] == "display_data", kinds
    assert shown[0]["content"]["data"]["text/plain"].startswith("running… 1.")
    display_id = shown[0]["content"]["transient"]["display_id"]
    assert "update_display_data" in kinds
    assert all(m["content"]["transient"]["display_id"] == display_id for m in shown if m["msg_type"] == "update_display_data")
    assert kinds[-2:] == ["clear_output", "error"], kinds
    assert shown[-2]["content"]["wait"] is True
    ex = execute(kc, "SELECT x FROM survivor")
    assert ex.status == "ok" and "| 1 |" in ex.result["text/plain"]


def test_embedding_a_column_shows_progress_and_stops_on_interrupt(km, kc):
    execute(kc, "CREATE TABLE many_texts AS SELECT 'ticket number ' || value || ' is about a leaking pump' AS t "
                "FROM generate_series(1, 40000)")
    # about five minutes of work on two cores: only the interrupt ends it in time
    msg_id = kc.execute("SELECT count(embed(t)) FROM many_texts")
    shown = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        msg = kc.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] not in ("display_data", "update_display_data"):
            continue
        shown.append(msg["content"]["data"]["text/plain"])
        if "embedding:" in shown[-1]:
            break
    assert shown and "embedding:" in shown[-1] and "texts (" in shown[-1], shown
    interrupted_at = time.monotonic()
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=30)
    elapsed = time.monotonic() - interrupted_at
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["ename"] == "Interrupted"
    # the synchronous embedding stops after its running sub-batch of 32 texts, not after 8,192
    assert elapsed < 3.0, f"interrupt took {elapsed:.2f} s"
    ex = execute(kc, "SELECT vector_dims(embed('still working')) AS d")
    assert ex.status == "ok" and "| 384 |" in ex.result["text/plain"], ex


def test_copy_exports_parquet_that_pyarrow_reads(kc, tmp_path):
    out = tmp_path / "features.parquet"
    ex = execute(
        kc,
        f"COPY (SELECT user_id, AVG(duration) AS avg_session FROM sessions GROUP BY user_id ORDER BY user_id) "
        f"TO '{out}' STORED AS PARQUET",
    )
    assert ex.result["text/plain"] == f"Copied 3 rows to '{out}'"
    table = pq.read_table(out)
    assert table.column_names == ["user_id", "avg_session"]
    assert table.column("user_id").to_pylist() == [1, 2, 3]
    assert table.column("avg_session").to_pylist() == [21.25, None, 4.0]

    csv_out = tmp_path / "features.csv"
    execute(kc, f"COPY (SELECT * FROM sessions) TO '{csv_out}' STORED AS CSV")
    assert csv_out.read_text().splitlines()[0] == "user_id,page,duration,ts"
    ex = execute(kc, f"CREATE EXTERNAL TABLE back STORED AS PARQUET LOCATION '{out}'; SELECT count(*) AS n FROM back")
    assert "| 3 |" in ex.result["text/plain"]


def test_silent_execution_publishes_nothing(kc):
    ex = execute(kc, "SELECT 1", silent=True)
    assert ex.status == "ok" and ex.outputs == []


def test_vectors_knn_and_index_through_the_kernel(kc):
    ex = execute(
        kc,
        """
        CREATE TABLE emb (id BIGINT, v FLOAT_VECTOR(16));
        INSERT INTO emb SELECT value, CAST(array_repeat(CAST(value AS DOUBLE), 16) AS FLOAT_VECTOR(16))
        FROM generate_series(1, 50);
        SELECT id, v, round(_score, 4) AS score FROM emb WHERE KNN_MATCH(v, array_repeat(3.0, 16), 3) ORDER BY _score DESC
        """,
    )
    assert ex.status == "ok", ex.reply
    plain = ex.result["text/plain"]
    # a 16-value vector shows its first values and its length, not all of them
    assert "[3.0, 3.0, 3.0, 3.0, 3.0, 3.0, … 16 values]" in plain
    assert re.search(r"\|\s+3 \|.*\|\s+1\.0 \|", plain), plain
    assert "FixedSizeList(16 x Float32)" in ex.result["text/html"]
    # an index: confirmation, then the same answer through it, and sys.indexes
    created = execute(kc, "CREATE INDEX emb_v ON emb USING hnsw (v) WITH (metric = 'euclidean')")
    assert created.result["text/plain"].startswith("Created index emb_v on emb (v): 50 vectors, euclidean, in ")
    again = execute(kc, "SELECT id FROM emb WHERE KNN_MATCH(v, array_repeat(3.0, 16), 1)")
    assert re.search(r"\|\s+3 \|", again.result["text/plain"])
    assert "emb_v" in execute(kc, "SELECT name FROM sys.indexes").result["text/plain"]
    # errors name the problem
    bad = execute(kc, "INSERT INTO emb VALUES (99, [1, 2])")
    assert bad.status == "error"
    assert bad.error["ename"] == "ExecutionError"
    assert "expected a vector of 16 values (FLOAT_VECTOR(16)), got 2 values" in bad.error["evalue"]
