"""Wait, bounded, until the servers a workload needs answer; then exit 0.

The chart's Jobs and init containers run this before they talk to a server, so that no step of the
install depends on the order in which Helm creates things (see the chart README's install order):

    python wait_for.py --timeout 900 warehouse=pg://db.example:5432 \
        dashboards=http://bi.example:8088/health lake=tcp://s3.example:9000

Each target is ``name=scheme://host:port[/path]``:

- ``tcp://``: a TCP connection is accepted (MySQL and MinIO listen only once they serve).
- ``pg://``: PostgreSQL accepts a session. It listens before it serves ("the database system is
  starting up", SQLSTATE 57P03: postgres/postgres src/backend/tcop/backend_startup.c, CAC_STARTUP),
  so this sends a protocol 3.0 startup packet and reads the answer:
  an authentication request, or any error other than 57P03, means the server is up.
- ``http://`` / ``https://``: an HTTP answer below 500.

Every 15 s it prints what it still waits for; at the deadline it exits 1 with one line naming each
server that never answered and its last error. Standard library only: it runs in every Python image
of the release.
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

SCHEMES = ("tcp", "pg", "http", "https")


def parse_target(text: str) -> tuple[str, urllib.parse.SplitResult]:
    name, sep, url = text.partition("=")
    parts = urllib.parse.urlsplit(url)
    if not sep or not name or parts.scheme not in SCHEMES or not parts.hostname or not parts.port:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected name=scheme://host:port with a scheme among {', '.join(SCHEMES)}"
        )
    return name, parts


def _tcp(url: urllib.parse.SplitResult, timeout: float) -> None:
    socket.create_connection((url.hostname, url.port), timeout=timeout).close()


def _pg(url: urllib.parse.SplitResult, timeout: float) -> None:
    params = b"user\0retailflow-wait-for\0database\0postgres\0\0"
    packet = struct.pack("!ii", 8 + len(params), 196608) + params  # protocol 3.0
    with socket.create_connection((url.hostname, url.port), timeout=timeout) as conn:
        conn.sendall(packet)
        kind = conn.recv(1)
        if kind == b"R":  # an authentication request: the server takes sessions
            return
        if kind != b"E":
            raise ConnectionError(f"unexpected PostgreSQL answer {kind!r}")
        body = conn.recv(4096)
        fields = dict(
            (item[:1].decode(), item[1:].decode(errors="replace")) for item in body[4:].split(b"\0") if item
        )
        if fields.get("C") == "57P03":
            raise ConnectionError(fields.get("M", "the database system is starting up"))
        # any other error (no such role, no pg_hba entry, ...) is an answer from a running server


def _http(url: urllib.parse.SplitResult, timeout: float) -> None:
    try:
        with urllib.request.urlopen(url.geturl(), timeout=timeout):  # noqa: S310 (the chart's own URLs)
            return
    except urllib.error.HTTPError as answer:
        if answer.code >= 500:
            raise ConnectionError(f"HTTP {answer.code}") from None


PROBES = {"tcp": _tcp, "pg": _pg, "http": _http, "https": _http}


def wait(targets: list[tuple[str, urllib.parse.SplitResult]], timeout: float, interval: float) -> int:
    deadline = time.monotonic() + timeout
    pending = dict(targets)
    errors: dict[str, str] = {}
    next_report = time.monotonic()
    while True:
        for name, url in list(pending.items()):
            try:
                PROBES[url.scheme](url, min(5.0, max(0.5, interval)))
            except (OSError, ConnectionError) as error:
                errors[name] = str(error) or type(error).__name__
            else:
                print(f"wait-for: {name} answers at {url.geturl()}", flush=True)
                del pending[name]
        if not pending:
            return 0
        now = time.monotonic()
        if now >= deadline:
            missing = "; ".join(f"{name} at {pending[name].geturl()} ({errors[name]})" for name in pending)
            print(f"wait-for: gave up after {timeout:g} s waiting for {missing}", file=sys.stderr, flush=True)
            return 1
        if now >= next_report:
            names = ", ".join(f"{name} ({pending[name].netloc})" for name in pending)
            print(f"wait-for: waiting for {names}, {deadline - now:.0f} s left", flush=True)
            next_report = now + 15
        time.sleep(min(interval, max(0.0, deadline - now)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=900, help="seconds before giving up (default 900)")
    parser.add_argument("--interval", type=float, default=3, help="seconds between attempts (default 3)")
    parser.add_argument("targets", nargs="+", type=parse_target, metavar="name=scheme://host:port")
    args = parser.parse_args(argv)
    return wait(args.targets, args.timeout, args.interval)


if __name__ == "__main__":
    sys.exit(main())
