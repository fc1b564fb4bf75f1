"""The retrain trigger's app (``marlops webhook serve``'s) under uvicorn in a thread, for the tests that
post to it over real HTTP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(app: Any, timeout_s: float = 20.0) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` while ``app`` (from :func:`marlops.monitoring.receiver.create_app`) is
    served; on exit its retraining threads are joined, the server stopped and the trigger state closed."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        assert time.monotonic() < deadline, "receiver did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        for t in app.state.threads:
            t.join(5)
        server.should_exit = True
        thread.join(10)
        app.state.trigger_state.close()
