"""files/scripts/wait_for.py, run as the chart's init containers run it, against loopback servers:
a TCP listener, a PostgreSQL that is still starting up (SQLSTATE 57P03) and one that takes sessions,
and an HTTP server answering 503 and then 404."""

from __future__ import annotations

import http.server
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from support.helm_render import UMBRELLA
from support.ports import refusing_port

SCRIPT = UMBRELLA / "files" / "scripts" / "wait_for.py"


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


class FakePostgres:
    """A loopback stand-in for PostgreSQL's startup handshake only (protocol 3.0), written from
    postgres/postgres `src/backend/tcop/backend_startup.c` at 9d9b9d46f3c5: while the postmaster is
    in CAC_STARTUP, `BackendInitialize` reads the startup packet, then reports FATAL with
    ERRCODE_CANNOT_CONNECT_NOW (SQLSTATE 57P03, "the database system is starting up") before any
    authentication. Like that, it answers with that ErrorResponse until `ready` is set, then with
    AuthenticationMD5Password ('R')."""

    def __init__(self) -> None:
        self.ready = False
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                length = struct.unpack("!i", conn.recv(4))[0]
                conn.recv(length - 4)
                if self.ready:
                    conn.sendall(b"R" + struct.pack("!ii", 12, 5) + b"salt")
                else:
                    fields = b"SFATAL\0C57P03\0Mthe database system is starting up\0\0"
                    conn.sendall(b"E" + struct.pack("!i", 4 + len(fields)) + fields)

    def close(self) -> None:
        self.server.close()


def test_a_closed_port_fails_at_the_deadline_with_one_line_naming_it():
    with refusing_port() as port:  # held: no other program can start listening there meanwhile
        started = time.monotonic()
        result = run("--timeout", "2", "--interval", "0.2", f"lake=tcp://127.0.0.1:{port}")
    assert result.returncode == 1
    assert 2 <= time.monotonic() - started < 15
    (last,) = result.stderr.strip().splitlines()
    assert last.startswith(f"wait-for: gave up after 2 s waiting for lake at tcp://127.0.0.1:{port} (")


def test_a_listening_port_answers_at_once():
    with socket.create_server(("127.0.0.1", 0)) as server:
        result = run("--timeout", "5", f"mysql=tcp://127.0.0.1:{server.getsockname()[1]}")
    assert result.returncode == 0, result.stderr
    assert "wait-for: mysql answers" in result.stdout


def test_postgresql_starting_up_is_not_ready_until_it_takes_sessions():
    pg = FakePostgres()
    try:
        waiting = run("--timeout", "1.5", "--interval", "0.2", f"pg=pg://127.0.0.1:{pg.port}")
        assert waiting.returncode == 1 and "the database system is starting up" in waiting.stderr
        later = subprocess.Popen([sys.executable, str(SCRIPT), "--timeout", "20", "--interval", "0.2",
                                  f"pg=pg://127.0.0.1:{pg.port}"], stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        assert later.poll() is None  # still waiting
        pg.ready = True
        assert later.wait(timeout=10) == 0
        assert "wait-for: pg answers" in later.stdout.read()
    finally:
        pg.close()


@pytest.fixture
def http_server():
    state = {"code": 503}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the standard library's name)
            self.send_response(state["code"])
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], state
    server.shutdown()


def test_http_5xx_is_not_ready_and_any_other_answer_is(http_server):
    port, state = http_server
    failing = run("--timeout", "1", "--interval", "0.2", f"superset=http://127.0.0.1:{port}/health")
    assert failing.returncode == 1 and "(HTTP 503)" in failing.stderr
    state["code"] = 404
    assert run("--timeout", "5", f"superset=http://127.0.0.1:{port}/health").returncode == 0


def test_a_malformed_target_is_refused_with_the_expected_form():
    result = run("lake=s3://bucket")
    assert result.returncode == 2 and "expected name=scheme://host:port" in result.stderr
