"""``support.ports``: a port held from the pick reaches the server that takes over a socket; a server
that binds its port itself is started again on a fresh port only when it says another program took it."""

from __future__ import annotations

import asyncio
import errno
import socket
import subprocess
import sys

import pytest

from support import ports
from support.ports import PortTaken, bind_refused, listening_socket, socket_activation, start_on_free_port

#: a stand-in for gunicorn's side of systemd socket activation (gunicorn/systemd.py ``listen_fds``): the
#: socket at fd 3 when LISTEN_PID is its own pid and LISTEN_FDS 1; it answers one connection
ACTIVATED = """
import os, socket, sys
moved = int(sys.argv[1])
assert os.environ["LISTEN_PID"] == str(os.getpid()) and os.environ["LISTEN_FDS"] == "1", dict(os.environ)
if moved != 3:
    try:
        os.fstat(moved)
        sys.exit(f"fd {moved} is still open")
    except OSError:
        pass
server = socket.socket(fileno=3)
conn, _ = server.accept()
conn.sendall(b"served on the handed-over socket")
conn.close()
"""


def test_a_program_started_by_socket_activation_serves_on_the_held_socket():
    sock = listening_socket()
    port = sock.getsockname()[1]
    with socket.socket() as other:
        with pytest.raises(OSError) as refused:
            other.bind((ports.LOOPBACK, port))
    assert refused.value.errno == errno.EADDRINUSE
    proc = subprocess.Popen(socket_activation([sys.executable, "-c", ACTIVATED, str(sock.fileno())], sock),
                            pass_fds=(sock.fileno(),), stderr=subprocess.PIPE, text=True)
    sock.close()
    try:
        with socket.create_connection((ports.LOOPBACK, port), timeout=30) as client:
            client.settimeout(30)
            answer = client.recv(100)
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
        assert answer == b"served on the handed-over socket"
    finally:
        proc.kill()
        proc.wait()


def test_bind_refused_reads_asyncios_own_words_for_that_port_only():
    """The words uvicorn and aiohttp log come from CPython's asyncio: checked against a real refusal."""
    held = listening_socket()
    port = held.getsockname()[1]

    async def bind() -> None:
        await asyncio.get_running_loop().create_server(asyncio.Protocol, host=ports.LOOPBACK, port=port)

    try:
        with pytest.raises(OSError) as refused:
            asyncio.run(bind())
    finally:
        held.close()
    said = f"ERROR:    {refused.value}"  # as uvicorn logs it
    assert bind_refused(said, port)
    assert not bind_refused(said, port + 1)
    assert not bind_refused("ERROR:    [Errno 13] error while attempting to bind on address "
                            f"('{ports.LOOPBACK}', {port}): permission denied", port)


def test_a_start_refused_for_its_port_is_made_again_on_a_fresh_one(monkeypatch):
    picks = iter([41001, 41002, 41003])
    monkeypatch.setattr(ports, "free_port", lambda: next(picks))
    tried = []

    def start(port: int) -> str:
        tried.append(port)
        if port == 41001:
            raise PortTaken(port, "a server")
        return f"up on {port}"

    assert start_on_free_port(start) == "up on 41002"
    assert tried == [41001, 41002]


def test_any_other_failure_and_the_last_refusal_are_raised_at_once(monkeypatch):
    picks = iter(range(42001, 42100))
    monkeypatch.setattr(ports, "free_port", lambda: next(picks))
    tried = []

    def broken(port: int) -> None:
        tried.append(port)
        raise RuntimeError("the server exited: not a port")

    with pytest.raises(RuntimeError):
        start_on_free_port(broken)
    assert tried == [42001]

    def always_taken(port: int) -> None:
        tried.append(port)
        raise PortTaken(port, "a server")

    tried.clear()
    with pytest.raises(PortTaken):
        start_on_free_port(always_taken, attempts=3)
    assert tried == [42002, 42003, 42004]

    def another_port(port: int) -> None:  # a refusal for a port it was not given is not this start's
        tried.append(port)
        raise PortTaken(port + 1, "a server")

    tried.clear()
    with pytest.raises(PortTaken):
        start_on_free_port(another_port)
    assert tried == [42005]


def test_a_refusing_port_refuses_connections_and_no_server_can_take_it_while_held():
    with ports.refusing_port() as port:
        with socket.socket() as client, pytest.raises(ConnectionRefusedError):
            client.connect((ports.LOOPBACK, port))
        # another suite's server binding the port (asyncio's start_server sets SO_REUSEADDR) is refused
        with pytest.raises(OSError) as taken:
            asyncio.run(asyncio.start_server(lambda *_: None, ports.LOOPBACK, port))
        assert taken.value.errno == errno.EADDRINUSE
    # released at the end of the block: the port is anyone's again
    with socket.socket() as again:
        again.bind((ports.LOOPBACK, port))
