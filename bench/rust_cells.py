"""Rust cell latency: Kestrel's %%rust next to evcxr on its own (evcxr_jupyter 0.22, the same evcxr), one run.

For each kernel: the first cell right after start-up (cold), the first cell of a new kernel after --uptime seconds
(Kestrel warms evcxr in the background meanwhile; evcxr_jupyter has nothing to warm), and warm cells (median of
--cells). A cell is timed from execute_request to its idle status.

evcxr_jupyter is built once with `cargo install --locked evcxr_jupyter@0.22.0` into ~/.cache/kestrel/peers.

    .venv/bin/python bench/rust_cells.py [--uptime 60] [--cells 20] [--record]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from jupyter_client import KernelManager

PEERS = Path.home() / ".cache" / "kestrel" / "peers"


def evcxr_jupyter() -> Path:
    binary = PEERS / "bin" / "evcxr_jupyter"
    if not binary.exists():
        subprocess.run(["cargo", "install", "--locked", "evcxr_jupyter@0.22.0", "--root", str(PEERS)], check=True)
    return binary


def start(kernel_name: str, env=None):
    km = KernelManager(kernel_name=kernel_name)
    km.start_kernel(env=env)
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=120)
    return km, kc


def run(kc, code: str, timeout: float = 1800) -> float:
    t0 = time.perf_counter()
    msg_id = kc.execute(code)
    error = None
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "error":
            error = msg["content"]
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    elapsed = time.perf_counter() - t0
    if error:
        raise RuntimeError(f"{code!r}: {error}")
    return elapsed


def measure(kernel_name: str, prefix: str, uptime: float, cells: int, env, setup=()):
    out = {}
    t0 = time.perf_counter()
    km, kc = start(kernel_name, env)
    out["kernel start-up (to kernel_info)"] = time.perf_counter() - t0
    for code in setup:
        run(kc, code)
    out["first cell, cold start"] = run(kc, prefix + "40 + 2")
    kc.stop_channels()
    km.shutdown_kernel(now=True)

    km, kc = start(kernel_name, env)
    for code in setup:
        run(kc, code)
    time.sleep(uptime)
    out[f"first cell after {uptime:.0f} s uptime"] = run(kc, prefix + "40 + 2")
    for i in range(3):
        run(kc, prefix + f"let w{i} = {i}; w{i} + 1")
    warm = [run(kc, prefix + f"let a{i} = {i}; a{i} * 2") for i in range(cells)]
    out["warm cell (median)"] = statistics.median(warm)
    kc.stop_channels()
    km.shutdown_kernel(now=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--uptime", type=float, default=60)
    ap.add_argument("--cells", type=int, default=20)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()

    binary = evcxr_jupyter()
    spec_dir = Path(tempfile.mkdtemp()) / "kernels" / "evcxr_bench"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [str(binary), "--control_file", "{connection_file}"],
        "display_name": "Rust (evcxr)", "language": "rust", "interrupt_mode": "message"}))
    os.environ["JUPYTER_PATH"] = str(spec_dir.parent.parent) + os.pathsep + os.environ.get("JUPYTER_PATH", "")

    env = dict(os.environ, KESTREL_RUST_WARMUP="1")
    kestrel = measure("kestrel", "%%rust\n", args.uptime, args.cells, env)
    evcxr = measure("evcxr_bench", "", args.uptime, args.cells, dict(os.environ))
    # evcxr with the crates Kestrel's cells load (kestrel and arrow), added before the cells are timed
    cell_crate = Path.home() / ".cache" / "kestrel" / "cell"
    deps = [":cache 4096", f':dep kestrel = {{ path = "{cell_crate}" }}',
            ':dep arrow = { version = "=59.3.2", default-features = false, features = ["ipc", "prettyprint"] }']
    evcxr_deps = measure("evcxr_bench", "", args.uptime, args.cells, dict(os.environ), setup=deps)
    shutil.rmtree(spec_dir.parent.parent, ignore_errors=True)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [
        f"### Rust cells: %%rust next to evcxr_jupyter — {datetime.date.today()}",
        "",
        f"`.venv/bin/python bench/rust_cells.py --uptime {args.uptime:.0f} --cells {args.cells}` on commit {commit}, "
        f"{platform.machine()}, 2 cores; seconds from execute_request to idle. Both use evcxr 0.22; Kestrel's first "
        "cell also loads the `kestrel` crate and arrow (from evcxr's build cache once built). In the third column the "
        "`:dep` cells run before the timed cells (their time is not counted).",
        "",
        "| cell | Kestrel `%%rust` (s) | evcxr_jupyter (s) | evcxr_jupyter with `:dep kestrel`, `:dep arrow` first (s) |",
        "|---|---:|---:|---:|",
    ]
    for key in kestrel:
        lines.append(f"| {key} | {kestrel[key]:.2f} | {evcxr[key]:.2f} | {evcxr_deps[key]:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.record:
        with open(Path(__file__).parent / "RESULTS.md", "a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
