"""Shared fixtures: a running Kestrel kernel and helpers to talk to it through jupyter_client."""

from __future__ import annotations

import os
import queue
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import start_new_kernel

KERNEL_NAME = "kestrel"
TIMEOUT = 60

# Kernels of SQL tests do not start evcxr in the background (tests/test_rust.py asks for it); a %%rust cell still
# works, starting evcxr when it runs.
os.environ.setdefault("KESTREL_RUST_WARMUP", "0")


@dataclass
class Execution:
    reply: dict[str, Any]
    outputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.reply["content"]["status"]

    def of_type(self, msg_type: str) -> list[dict[str, Any]]:
        return [m for m in self.outputs if m["msg_type"] == msg_type]

    @property
    def result(self) -> dict[str, Any]:
        results = self.of_type("execute_result")
        assert len(results) == 1, f"expected one execute_result, got {self.outputs}"
        return results[0]["content"]["data"]

    @property
    def error(self) -> dict[str, Any]:
        errors = self.of_type("error")
        assert len(errors) == 1, f"expected exactly one error message, got {self.outputs}"
        return errors[0]["content"]


def execute(kc, code: str, timeout: float = TIMEOUT, **kwargs: Any) -> Execution:
    """Runs a cell and collects its IOPub messages up to its idle status."""
    msg_id = kc.execute(code, **kwargs)
    reply = kc.get_shell_msg(timeout=timeout)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=timeout)
    outputs = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status":
            if msg["content"]["execution_state"] == "idle":
                break
            continue
        if msg["msg_type"] != "execute_input":
            outputs.append(msg)
    return Execution(reply, outputs)


@pytest.fixture(scope="module")
def kernel(request):
    """One kernel per test module; a module's KERNEL_ENV (a dict) adds to the kernel's environment."""
    env = dict(os.environ, **getattr(request.module, "KERNEL_ENV", {}))
    km, kc = start_new_kernel(kernel_name=KERNEL_NAME, startup_timeout=TIMEOUT, env=env)
    yield km, kc
    kc.stop_channels()
    km.shutdown_kernel(now=False)


@pytest.fixture(scope="module")
def kc(kernel):
    return kernel[1]


@pytest.fixture(scope="module")
def km(kernel):
    return kernel[0]


@pytest.fixture
def kestrel_bin() -> str:
    """The binary under test: $KESTREL_BIN (test.sh sets it), else the one install.sh put in .venv/bin."""
    default = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "kestrel"
    return os.environ.get("KESTREL_BIN", str(default))
