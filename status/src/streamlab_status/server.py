"""The HTTP side: the static page, its JSON data API, and /healthz; GET only.

Why the standard library's server: three files and one JSON document need no framework, and
every dependency is one more thing to pin and patch. The page and its script come from this
package (``static/``), never from a CDN, so it works offline. The data API carries counts,
states and one-line reasons; settings and credentials stay in this process (the poller masks
logins and passwords in the reasons).
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from streamlab_status.poller import Poller

STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
SECURITY_HEADERS = {
    # Only this origin's own files; no inline script, no framing, no referrer.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def load_static() -> dict[str, tuple[bytes, str]]:
    """The page's files, read once at start from the installed package."""
    folder = resources.files("streamlab_status") / "static"
    return {path: ((folder / name).read_bytes(), kind) for path, (name, kind) in STATIC.items()}


class StatusServer:
    """Serves the page from a thread of its own; ``port`` is the bound one (0 picks a free one)."""

    def __init__(self, host: str, port: int, poller: Poller) -> None:
        self._server = ThreadingHTTPServer((host, port), _handler(poller, load_static()))
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> StatusServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(poller: Poller, files: dict[str, tuple[bytes, str]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "streamlab-status/1"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/api/status":
                self._json(HTTPStatus.OK, poller.snapshot())
            elif path == "/healthz":
                self._json(HTTPStatus.OK, {"status": "ok"})
            elif path in files:
                body, kind = files[path]
                self._send(HTTPStatus.OK, kind, body)
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no such path: {path}"})

        def _refuse(self) -> None:
            """Read-only: nothing on this server changes anything."""
            self._json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "read-only: GET only"})

        do_POST = do_PUT = do_DELETE = do_PATCH = _refuse  # noqa: N815

        def _json(self, status: HTTPStatus, body: Any) -> None:
            self._send(status, "application/json", json.dumps(body).encode())

        def _send(self, status: HTTPStatus, kind: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            if status == HTTPStatus.METHOD_NOT_ALLOWED:
                self.send_header("Allow", "GET")
            for name, value in SECURITY_HEADERS.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """A request every 2 s per open tab would drown the log."""

    return Handler
