"""The path a user takes: JupyterLab's server lists the `kestrel` kernelspec, starts it, and runs a SQL cell over
its websocket, exactly as the browser does."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from tornado import ioloop, websocket

ROOT = Path(__file__).resolve().parent.parent
TOKEN = uuid.uuid4().hex


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(port: int, path: str, method: str = "GET", body: dict | None = None) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"{}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    port = free_port()
    args = [
        sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
        f"--IdentityProvider.token={TOKEN}", f"--notebook-dir={ROOT / 'tutorials'}",
    ]
    if os.geteuid() == 0:
        args.append("--allow-root")
    log = tmp_path_factory.mktemp("lab") / "lab.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        for _ in range(120):
            try:
                api(port, "/api/status")
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"JupyterLab did not start:\n{log.read_text()}")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_jupyterlab_offers_the_kernel(lab):
    specs = api(lab, "/api/kernelspecs")["kernelspecs"]
    assert "kestrel" in specs
    spec = specs["kestrel"]["spec"]
    assert spec["display_name"] == "Kestrel (SQL)"
    assert spec["language"] == "sql"


def test_a_notebook_session_runs_sql_over_the_websocket(lab):
    session = api(lab, "/api/sessions", "POST", {
        "path": "scratch.ipynb", "type": "notebook", "name": "scratch.ipynb", "kernel": {"name": "kestrel"},
    })
    kernel_id = session["kernel"]["id"]
    try:
        outputs = ioloop.IOLoop.current().run_sync(lambda: run_cell(lab, kernel_id, "SELECT 6 * 7 AS answer"), timeout=60)
        result = [m for m in outputs if m["msg_type"] == "execute_result"]
        assert len(result) == 1
        assert "|     42 |" in result[0]["content"]["data"]["text/plain"]
        assert ">Int64</span>" in result[0]["content"]["data"]["text/html"]
    finally:
        api(lab, f"/api/sessions/{session['id']}", "DELETE")


async def run_cell(port: int, kernel_id: str, code: str) -> list[dict]:
    url = f"ws://127.0.0.1:{port}/api/kernels/{kernel_id}/channels?token={TOKEN}"
    conn = await websocket.websocket_connect(url)
    msg_id = uuid.uuid4().hex
    conn.write_message(json.dumps({
        "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex, "msg_type": "execute_request",
                   "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }))
    outputs = []
    while True:
        raw = await conn.read_message()
        assert raw is not None, "websocket closed"
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            conn.close()
            return outputs
        outputs.append(msg)
