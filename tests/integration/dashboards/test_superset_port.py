"""The stack's Superset keeps its port from the pick to gunicorn's start (``conftest.Gunicorn``): the
pick comes first, then a minute or more of Superset's migrations, then gunicorn. No server of
Superset's is needed: gunicorn serves a probe app through the same start."""

from __future__ import annotations

import errno
import os
import signal
import socket
import time

import requests
from conftest import Gunicorn

PROBE_APP = '''def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"served by the probe app"]
'''


def test_a_program_binding_the_port_before_gunicorn_starts_is_refused_and_gunicorn_serves_on_it(tmp_path):
    (tmp_path / "probe_app.py").write_text(PROBE_APP)
    log = tmp_path / "gunicorn.log"
    server = Gunicorn()
    squatter = socket.socket()
    process = None
    try:
        try:  # another program, while the migrations would run
            squatter.bind(("127.0.0.1", server.port))
            squatter.listen()
            attempt = 0
        except OSError as exc:
            attempt = exc.errno
        process = server.start("probe_app:app", workers=2, env=dict(os.environ), cwd=tmp_path, log=log)
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                answer = requests.get(f"http://127.0.0.1:{server.port}/", timeout=3)
                break
            except requests.RequestException:  # refused, or a program that took the port and never answers
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
        assert answer.status_code == 200 and answer.text == "served by the probe app"
        assert attempt == errno.EADDRINUSE
    finally:
        squatter.close()
        if process is not None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
