"""Small HTTP servers on loopback for the clients' edge cases (a peer that echoes, answers HTML or
redirects), each a ``BaseHTTPRequestHandler`` served in a thread for the length of a ``with``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    """A handler that logs nothing and answers with ``answer(status, body)``."""

    def log_message(self, *args):  # quiet
        pass

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def answer(self, status: int, raw: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` served on a free loopback port; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def redirect_and_record() -> Iterator[tuple[str, list[bytes]]]:
    """A server that answers every POST and GET with a 307 to a second server, which records the bodies
    it receives (and answers ``{}``): yields the first one's URL and the second one's list."""
    received: list[bytes] = []

    class Elsewhere(QuietHandler):
        def do_POST(self):
            received.append(self.body())
            self.answer(200, b"{}")

        do_GET = do_POST

    with serving(Elsewhere) as elsewhere:

        class Redirecting(QuietHandler):
            def do_POST(self):
                self.body()
                self.answer(307, headers={"Location": f"{elsewhere}{self.path}"})

            do_GET = do_POST

        with serving(Redirecting) as url:
            yield url, received
