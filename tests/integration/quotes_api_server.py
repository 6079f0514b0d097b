"""The offline quotes API as a real server on a free loopback port, for any test that needs it.

The server binds port 0 and prints the address it got on its first line, so tests never race for
a port; reading that line is bounded in time, and the server is always stopped afterwards.
"""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "quotes-api" / "app.py"
STARTUP_TIMEOUT_S = 15.0


def read_line(process: subprocess.Popen[str], deadline: float) -> str:
    """First stdout line of the server, or fail once the deadline passes (no blocking read)."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not selector.select(timeout=remaining):
            raise AssertionError(f"quotes-api printed nothing within {STARTUP_TIMEOUT_S} s")
    return process.stdout.readline()


@contextmanager
def serve(*args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """Start app.py on a free loopback port; yield its base URL; always stop it."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith("QUOTES_")}
    environ.update(env or {})
    with tempfile.TemporaryFile(mode="w+") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(APP), "--host", "127.0.0.1", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=environ,
        )
        try:
            line = read_line(process, time.monotonic() + STARTUP_TIMEOUT_S)
            match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            if match is None:
                stderr.seek(0)
                raise AssertionError(f"unexpected start line {line!r}; stderr: {stderr.read()}")
            yield match.group(1)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            assert process.stdout is not None
            process.stdout.close()
