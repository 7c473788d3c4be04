"""`kestrel sql` runs the same engine from a shell, for pipelines."""

from __future__ import annotations

import json
import subprocess


def run(kestrel_bin, *args, input=None):
    return subprocess.run([kestrel_bin, "sql", *args], capture_output=True, text=True, input=input, timeout=120)


def test_command_prints_a_table(kestrel_bin):
    p = run(kestrel_bin, "-c", "SELECT 1 AS one, 'a' AS letter, NULL AS nothing")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "+-----+--------+---------+",
        "| one | letter | nothing |",
        "+-----+--------+---------+",
        "|   1 | a      | NULL    |",
        "+-----+--------+---------+",
    ]


def test_file_with_several_statements_as_csv(kestrel_bin, tmp_path):
    sql = tmp_path / "features.sql"
    sql.write_text(
        "CREATE TABLE s (user_id INT, duration DOUBLE);\n"
        "INSERT INTO s VALUES (1, 2.0), (1, 4.0), (2, 5.0);\n"
        "SELECT user_id, avg(duration) AS avg_session FROM s GROUP BY user_id ORDER BY user_id;\n"
    )
    p = run(kestrel_bin, str(sql), "--format", "csv")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["user_id,avg_session", "1,3.0", "2,5.0"]
    # confirmations go to stderr, keeping stdout pure data
    assert "Created table s" in p.stderr and "Inserted 3 rows into s" in p.stderr


def test_json_lines_from_stdin(kestrel_bin):
    p = run(kestrel_bin, "-", "--format", "json", input="SELECT * FROM (VALUES (1, 'x'), (2, NULL)) AS t(id, name)")
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert rows == [{"id": 1, "name": "x"}, {"id": 2, "name": None}]


def test_errors_exit_non_zero_and_name_the_problem(kestrel_bin):
    p = run(kestrel_bin, "-c", "SELECT * FROM nowhere")
    assert p.returncode == 1
    assert "PlanError" in p.stderr and "nowhere" in p.stderr
    p = run(kestrel_bin, "/no/such/file.sql")
    assert p.returncode == 1 and "/no/such/file.sql" in p.stderr
