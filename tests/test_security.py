"""Every incoming message must carry a valid HMAC signature; anything else is dropped, never executed."""

from __future__ import annotations

import queue

import pytest
from conftest import execute
from jupyter_client.manager import start_new_kernel


@pytest.fixture(scope="module")
def signed_kernel():
    km, kc = start_new_kernel(kernel_name="kestrel", startup_timeout=60)
    yield km, kc
    kc.stop_channels()
    km.shutdown_kernel(now=False)


@pytest.mark.parametrize("key", [b"not-the-key", b""], ids=["wrong-key", "unsigned"])
def test_badly_signed_messages_are_dropped(signed_kernel, key):
    km, kc = signed_kernel
    assert km.session.key, "the kernel must have been given a key"
    intruder = km.client()
    intruder.session.key = key
    intruder.start_channels()
    try:
        intruder.execute(f"CREATE TABLE hacked_{len(key)} (x INT)")
        intruder.kernel_info()
        with pytest.raises(queue.Empty):
            intruder.get_shell_msg(timeout=2)
    finally:
        intruder.stop_channels()
    # the kernel is alive, and nothing was executed
    tables = execute(kc, "SHOW TABLES").result["text/plain"]
    assert "hacked" not in tables
