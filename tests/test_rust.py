"""%%rust cells through jupyter_client: values, streamed output, compile errors, panics, interrupt, completion,
:dep, and the SQL session shared through kestrel::sql / kestrel::register."""

from __future__ import annotations

import os
import queue
import time

import pytest
from jupyter_client.manager import start_new_kernel

from conftest import KERNEL_NAME, execute

# The first cell waits for evcxr to start and, on a machine that never built them, for arrow and the kestrel
# crate to compile into evcxr's cache.
FIRST = 1200
CELL = 180


# The kernel (conftest's fixture) warms evcxr up in the background, as a user's would.
KERNEL_ENV = {"KESTREL_RUST_WARMUP": "1"}


@pytest.fixture(scope="module", autouse=True)
def first_cell(kc):
    ex = execute(kc, "%%rust\n40 + 2", timeout=FIRST)
    assert ex.status == "ok", ex.outputs


def rust(kc, code: str, timeout: float = CELL):
    return execute(kc, "%%rust\n" + code, timeout=timeout)


def stream(ex, name: str) -> str:
    return "".join(m["content"]["text"] for m in ex.of_type("stream") if m["content"]["name"] == name)


def test_a_value_displays_as_text(kc):
    ex = rust(kc, "let x = 6 * 7;\nx")
    assert ex.status == "ok"
    assert ex.result["text/plain"] == "42"
    ex = rust(kc, 'format!("{}-{}", "a", x)')
    assert ex.result["text/plain"] == '"a-42"'


def test_println_streams_while_the_cell_runs(kc):
    msg_id = kc.execute('%%rust\nprintln!("first");\neprintln!("to stderr");\n'
                        "std::thread::sleep(std::time::Duration::from_secs(3));\nprintln!(\"second\");")
    first = None
    while first is None:
        msg = kc.get_iopub_msg(timeout=CELL)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
            first = msg["content"]
    assert first == {"name": "stdout", "text": "first\n"}
    # the cell is still running when its first line arrives
    with pytest.raises(queue.Empty):
        kc.get_shell_msg(timeout=0.5)
    reply = kc.get_shell_msg(timeout=CELL)
    assert reply["content"]["status"] == "ok"
    rest = []
    while True:
        msg = kc.get_iopub_msg(timeout=10)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
        if msg["msg_type"] == "stream":
            rest.append((msg["content"]["name"], msg["content"]["text"]))
    assert ("stderr", "to stderr\n") in rest and ("stdout", "second\n") in rest, rest


def test_a_compile_error_shows_rustc_message_and_span(kc):
    ex = rust(kc, 'let ok = 1;\nlet n: i32 = "text";')
    assert ex.status == "error"
    err = ex.error
    assert err["ename"] == "CompileError"
    assert "mismatched types" in err["evalue"]
    tb = "\n".join(err["traceback"])
    assert "cell line 3" in tb, tb  # line 1 is the %%rust line
    assert 'let n: i32 = "text";' in tb and "^" in tb
    # nothing was lost: the kernel and earlier Rust state live on
    assert rust(kc, "1 + 1").result["text/plain"] == "2"


def test_a_panic_is_an_error_and_the_kernel_lives(kc):
    rust(kc, "let kept = 5;")
    ex = rust(kc, 'let v: Vec<i32> = Vec::new();\nlet i = 3;\nif i > 2 { panic!("boom {}", i); }')
    assert ex.status == "error", ex.outputs
    everything = ex.error["evalue"] + stream(ex, "stderr") + "\n".join(ex.error["traceback"])
    assert "boom 3" in everything, everything
    assert rust(kc, "2 + 3").result["text/plain"] == "5"
    assert execute(kc, "SELECT 1 AS one").status == "ok"


def test_rust_cells_share_the_sql_session(kc):
    assert execute(kc, "CREATE TABLE nums AS SELECT * FROM (VALUES (1, 2.5), (2, 3.5), (3, 4.5)) AS t(id, v)").status == "ok"
    code = """
use arrow::array::{Array, Float64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use std::sync::Arc;
let batches = kestrel::sql("SELECT id, v FROM nums ORDER BY id").unwrap();
let doubled: Vec<RecordBatch> = batches.iter().map(|b| {
    let v = b.column(1).as_any().downcast_ref::<Float64Array>().unwrap();
    let d: Float64Array = v.iter().map(|x| x.map(|x| x * 2.0)).collect();
    let schema = Schema::new(vec![b.schema().field(0).clone(), Field::new("v2", DataType::Float64, true)]);
    RecordBatch::try_new(Arc::new(schema), vec![b.column(0).clone(), Arc::new(d)]).unwrap()
}).collect();
kestrel::register("Doubled", &doubled).unwrap();
batches.iter().map(|b| b.num_rows()).sum::<usize>()
"""
    ex = rust(kc, code)
    assert ex.status == "ok", ex.outputs
    assert ex.result["text/plain"] == "3"
    ex = execute(kc, "SELECT sum(v2) AS s, count(*) AS n FROM doubled")
    assert "21" in ex.result["text/plain"] and "3" in ex.result["text/plain"]
    # SQL errors come back as Err with the engine's message
    ex = rust(kc, 'match kestrel::sql("SELECT * FROM no_such_table") { Err(e) => e.to_string(), Ok(_) => "ok".into() }')
    assert "no_such_table" in ex.result["text/plain"] and "not found" in ex.result["text/plain"]
    # a live table or view cannot be overwritten by register
    ex = rust(kc, 'kestrel::sql("CREATE VIEW v_nums AS SELECT * FROM nums").unwrap();\n'
                  'kestrel::register("v_nums", &kestrel::sql("SELECT 1 AS x").unwrap()).unwrap_err().to_string()')
    assert "not an in-memory table" in ex.result["text/plain"]
    # kestrel::show displays rows as a table
    ex = rust(kc, 'kestrel::show(&kestrel::sql("SELECT id, v2 FROM doubled ORDER BY id").unwrap())')
    assert "<table" in ex.result["text/html"] and "<td style=\"text-align:right\">9.0</td>" in ex.result["text/html"]
    assert "3 rows" in ex.result["text/plain"]


def test_interrupt_stops_a_looping_cell(km, kc):
    assert execute(kc, "CREATE TABLE survivor AS SELECT 7 AS x").status == "ok"
    msg_id = kc.execute('%%rust\nprintln!("looping");\nloop { std::thread::sleep(std::time::Duration::from_millis(5)); }')
    while True:
        msg = kc.get_iopub_msg(timeout=CELL)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
            assert "looping" in msg["content"]["text"]
            break
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "error"
    # Rust runs again (in a new process, where a panic is still an error) and SQL tables are untouched
    assert rust(kc, "10 + 1").result["text/plain"] == "11"
    ex = rust(kc, 'panic!("after the restart")')
    assert ex.status == "error" and ex.error["ename"] == "RustPanic" and ex.error["evalue"] == "after the restart"
    assert "7" in execute(kc, "SELECT x FROM survivor").result["text/plain"]


def test_completion_uses_evcxr(kc):
    code = "%%rust\nlet word = String::from(\"abc\");\nword.le"
    kc.complete(code, len(code))
    reply = kc.get_shell_msg(timeout=60)
    content = reply["content"]
    assert reply["msg_type"] == "complete_reply" and content["status"] == "ok"
    assert "len()" in content["matches"], content["matches"][:20]
    assert code[content["cursor_start"]:content["cursor_end"]] == "le"


def test_dep_adds_a_crate(kc):
    ex = rust(kc, ':dep itoa = "1"\nlet mut b = itoa::Buffer::new();\nb.format(12345).to_string()', timeout=600)
    assert ex.status == "ok", ex.outputs
    assert ex.result["text/plain"] == '"12345"'


def test_evcxr_builds_are_removed_with_the_kernel():
    """evcxr keeps a copy of every compiled dependency in its build directory (hundreds of MB): a kernel that shuts
    down removes its own, and a kernel that starts removes those of kernels that were killed."""
    import tempfile
    from pathlib import Path

    def started():
        km, kc = start_new_kernel(kernel_name=KERNEL_NAME, startup_timeout=60, env=dict(os.environ, KESTREL_RUST_WARMUP="0"))
        assert execute(kc, "%%rust\n1 + 1", timeout=FIRST).result["text/plain"] == "2"
        return km, kc, Path(tempfile.gettempdir()) / f"kestrel-{km.provisioner.pid}"

    km, kc, killed_dir = started()
    assert (killed_dir / "evcxr").is_dir() and (killed_dir / "bridge.sock").exists()
    kc.stop_channels()
    km.shutdown_kernel(now=True)  # SIGKILL: nothing cleans up
    assert killed_dir.exists()

    km, kc, own_dir = started()
    assert not killed_dir.exists(), "a new kernel removes the directory of a killed one"
    kc.stop_channels()
    km.shutdown_kernel(now=False)
    deadline = time.monotonic() + 30
    while own_dir.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not own_dir.exists(), "a kernel removes its directory when it shuts down"
