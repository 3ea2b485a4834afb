"""Launching the real web app for the benchmarks (benchmarks/app.py, benchmarks/soak.py): `python app.py` in its
own process on a free 127.0.0.1 port, as users meet it (clients here and the server there do not share a GIL),
waited for until it accepts connections, and stopped when the block ends; and the gradio_client clients that
talk to it (benchmarks and tests)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 300  # a cold start on the shared 2-core machine: imports + model + corpus tables


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_client(url: str, reuse_tls: bool = True):
    """A gradio_client Client. gradio_client makes a new httpx client for every request (the join POST, and the
    event stream when it is not open), and httpx builds a TLS context for each one even for a plain-http URL:
    50 ms of CPU per client here (httpx 0.28, certifi's bundle parsed each time, measured 2026-11-30). With
    reuse_tls one verifying context is built once and passed as `ssl_verify` (handed to httpx as `verify=`),
    which is what the README recommends to API users; reuse_tls=False is gradio_client's default."""
    from gradio_client import Client

    if not reuse_tls:
        return Client(url, verbose=False, analytics_enabled=False)
    import ssl

    return Client(url, verbose=False, analytics_enabled=False, ssl_verify=ssl.create_default_context())


@contextmanager
def running_app(model: str, corpus: str, env: dict | None = None, log: str | Path | None = None,
                args: tuple[str, ...] = ()) -> Iterator[tuple[subprocess.Popen, str]]:
    """(the server process, its URL); `log`: a file for the server's stdout and stderr (default: discarded);
    `args`: more app.py arguments (e.g. ("--threads", "1"))."""
    port = free_port()
    out = open(log, "ab") if log else subprocess.DEVNULL
    server = subprocess.Popen([sys.executable, "app.py", "--model", model, "--corpus", corpus, "--port", str(port),
                               *args],
                              cwd=ROOT, stdout=out, stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
                              env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the app did not start (exit code {server.poll()})"
                                     + (f"; see {log}" if log else ""))
                time.sleep(0.5)
        yield server, f"http://127.0.0.1:{port}/"
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        if log:
            out.close()
