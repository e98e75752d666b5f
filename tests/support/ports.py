"""Loopback TCP ports for the servers the tests and benchmarks start, kept from the pick to the bind.

A port picked free (bound to port 0, read back, closed) is free at that moment only: a server that binds
it seconds or minutes later (after its migrations, a docs build, a pod's init containers) may find that
another program took it meanwhile, another suite's server among them (`make test` runs suites side by
side). So:

- a server that can take over a listening socket gets one bound here and held from the pick on
  (``listening_socket``): uvicorn's ``--fd``, gunicorn's systemd socket activation
  (``socket_activation``); no other program can bind the port in between;
- a server that reads its port back can bind port 0 itself (moto's ``-p 0``);
- a peer that must be down gets ``refusing_port``: bound, never listening, held for the test;
- a server that only binds the port it is given is started through ``start_on_free_port``, which starts
  it again on a fresh port when the start raises ``PortTaken``: only when the server's own words say
  that it could not bind that port (``bind_refused``, or a script's message); any other failure is not
  tried again.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
LOOPBACK = "127.0.0.1"


class PortTaken(Exception):
    """A server could not bind the port it was given: another program had taken it since the pick."""

    def __init__(self, port: int, what: str) -> None:
        super().__init__(f"{what}: port {port} was taken by another program before it could bind it")
        self.port = port


def free_port() -> int:
    """A loopback port no program listens on now (for a server that binds it itself: see the module)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def listening_socket() -> socket.socket:
    """A socket bound to a free loopback port and listening: the port is held from now on. Hand it to the
    server (its ``fileno()`` in ``pass_fds``), then close this copy."""
    sock = socket.socket()
    try:
        sock.bind((LOOPBACK, 0))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def socket_activation(argv: list[str], sock: socket.socket) -> list[str]:
    """``argv`` run with ``sock`` as its listening socket the systemd way: fd 3, ``LISTEN_FDS=1`` and
    ``LISTEN_PID`` its own pid (bash sets it, then execs the program in the same process; bash, as dash
    takes no file descriptor above 9 in a redirection). gunicorn then
    serves on it instead of binding ``--bind`` (gunicorn/systemd.py ``listen_fds``, arbiter.py ``start``)
    and removes both variables from its environment. Start the result with ``pass_fds=(sock.fileno(),)``;
    any wrapper in ``argv`` must exec the program too, keeping the pid."""
    fd = sock.fileno()
    moved = "" if fd == 3 else f" 3<&{fd} {fd}<&-"
    return ["bash", "-c", f'LISTEN_PID=$$ LISTEN_FDS=1; export LISTEN_PID LISTEN_FDS; exec "$@"{moved}', "bash", *argv]


def bind_refused(output: str, port: int, host: str = LOOPBACK) -> bool:
    """Whether an asyncio server's output (uvicorn's, aiohttp's: the Airflow API server, kopf's liveness
    endpoint) says it could not bind ``host:port`` because it is in use. CPython's asyncio words it so
    in ``BaseEventLoop.create_server`` (``error while attempting to bind on address %r: %s``)."""
    return f"error while attempting to bind on address ('{host}', {port}): address already in use" in output


def start_on_free_port(start: Callable[[int], T], *, attempts: int = 3) -> T:
    """``start(port)`` on a port picked free; when it raises ``PortTaken`` for that port (another program
    took it before the server bound it), again on a fresh one, up to ``attempts`` starts in all. Any other
    failure, or the last ``PortTaken``, is raised."""
    for attempt in range(attempts):
        port = free_port()
        try:
            return start(port)
        except PortTaken as taken:
            if taken.port != port or attempt == attempts - 1:
                raise
    raise AssertionError("attempts must be at least 1")


@contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port where nothing answers, for the ``with`` block: a socket bound to it and never
    listening. A connection to it is refused (Linux answers a SYN for a port nobody listens on with a
    reset: ECONNREFUSED), and no other program can bind the port while it is held: the socket sets
    neither SO_REUSEADDR nor SO_REUSEPORT, so Linux refuses any other bind of it (EADDRINUSE), listening
    or not. Unlike ``free_port``'s, whose port is anyone's once it returns: a test that wants a peer that is
    down can get one that answers when another suite's server binds that port meanwhile."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        yield sock.getsockname()[1]
