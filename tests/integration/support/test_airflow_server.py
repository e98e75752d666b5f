"""The Airflow fixture: a real Airflow API server whose variable helpers the operator tests rely on,
on a port no other program can take while it starts."""

import errno
import os
import socket
import time
from pathlib import Path

import pytest
import requests

from support import ports
from support.airflow_server import DEFAULT_AIRFLOW_BIN, AirflowServer

pytestmark = pytest.mark.integration
needs_airflow = pytest.mark.skipif(not DEFAULT_AIRFLOW_BIN.exists(),
                                   reason=f"{DEFAULT_AIRFLOW_BIN} is missing: run `uv sync --project dags` to get Airflow")


@needs_airflow
def test_variable_helpers_against_a_real_api_server() -> None:
    began = time.monotonic()
    with AirflowServer() as af:
        print(f"airflow api-server ready in {af.start_seconds:.1f} s")
        assert af.url.startswith("http://127.0.0.1:") and not af.url.endswith("/api/v2")
        assert af.get_variable("retailflow_missing") is None
        af.set_variable("retailflow_schedule", "@hourly")
        af.set_variable("retailflow_schedule", "@daily")  # overwrite, not 409
        af.set_variable("retailflow_tables", '["orders", "customers"]')
        assert af.get_variable("retailflow_schedule") == "@daily"
        assert af.variables() == {"retailflow_schedule": "@daily", "retailflow_tables": '["orders", "customers"]'}
        af.delete_variable("retailflow_schedule")
        af.delete_variable("retailflow_schedule")  # deleting a missing variable is not an error
        assert af.variables() == {"retailflow_tables": '["orders", "customers"]'}

        # The REST API itself: bearer tokens from the fixed credentials, nothing without one.
        headers = {"Authorization": f"Bearer {af.token()}"}
        listed = requests.get(f"{af.url}/api/v2/variables", headers=headers, timeout=10).json()
        assert listed["total_entries"] == 1
        assert requests.get(f"{af.url}/api/v2/variables", timeout=10).status_code == 401
        bad = requests.post(f"{af.url}/auth/token", json={"username": af.username, "password": "wrong"}, timeout=10)
        assert bad.status_code == 401
        pgid = af._proc.pid if af._proc else None
    print(f"airflow fixture start+stop in {time.monotonic() - began:.1f} s")

    # The whole process group (server and uvicorn workers) is gone.
    assert pgid is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)


def test_a_failed_start_leaves_nothing_behind(tmp_path: Path) -> None:
    server = AirflowServer(airflow_bin=tmp_path / "no-airflow")
    with pytest.raises(FileNotFoundError):
        server.start()
    assert server.home is None


@needs_airflow
def test_a_program_binding_the_port_while_the_server_prepares_is_refused_and_the_server_starts(monkeypatch) -> None:
    """Between the pick and the server's start the metadata database is prepared (seconds, a migration
    when nothing is cached): a program that binds the port then would leave the server nothing to bind.
    The port is held from the pick, so that program is refused, and the server answers on it."""
    attempts: list[int] = []
    squatter = socket.socket()
    prepare = AirflowServer._prepare_database

    def prepare_while_another_program_binds_the_port(self, env):
        try:
            squatter.bind(("127.0.0.1", self.port))
            squatter.listen()
            attempts.append(0)
        except OSError as exc:
            attempts.append(exc.errno)
        prepare(self, env)

    monkeypatch.setattr(AirflowServer, "_prepare_database", prepare_while_another_program_binds_the_port)
    try:
        with AirflowServer() as af:
            assert attempts == [errno.EADDRINUSE]
            af.set_variable("retailflow_schedule", "@daily")
            assert af.get_variable("retailflow_schedule") == "@daily"
    finally:
        squatter.close()


@needs_airflow
def test_through_the_cli_a_port_taken_before_the_bind_is_left_for_a_fresh_one(monkeypatch) -> None:
    """``airflow api-server`` binds its ``--port`` itself: when another program took the picked port, its
    start fails saying so, and the server is started again on a fresh port."""
    taken = ports.listening_socket()
    picks = [taken.getsockname()[1]]
    free_port = ports.free_port
    monkeypatch.setattr(ports, "free_port", lambda: picks.pop(0) if picks else free_port())
    monkeypatch.setenv("RETAILFLOW_AIRFLOW_SERVER_MODE", "cli")
    try:
        with AirflowServer() as af:
            assert not picks and af.port != taken.getsockname()[1]
            assert ports.bind_refused(af.log_tail(100_000), taken.getsockname()[1])  # the first start's words
            af.set_variable("retailflow_schedule", "@daily")
            assert af.get_variable("retailflow_schedule") == "@daily"
    finally:
        taken.close()
