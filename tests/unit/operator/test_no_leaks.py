"""No secret in a repr, an error message (which becomes a condition and an Event) or a command line."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from retailflow_operator.airflow_client import AirflowClient
from retailflow_operator.errors import PeerError
from retailflow_operator.trust import REDACTED, redact
from support.http_stand_ins import QuietHandler, redirect_and_record, serving

REPO = Path(__file__).resolve().parents[3]
PASSWORD = "hunter2-very-secret"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def echoing_airflow():
    """A stand-in for an Airflow API server whose errors echo the request body, as FastAPI's 422s do."""

    class Handler(QuietHandler):
        def do_POST(self):
            body = self.body().decode()
            if self.path == "/auth/token":
                self.answer(201, json.dumps({"access_token": "t"}).encode(), JSON)
            else:
                detail = {"detail": [{"msg": "invalid", "input": json.loads(body or "{}")}]}
                self.answer(422, json.dumps(detail).encode(), JSON)

        do_PATCH = do_POST

        def do_GET(self):
            self.answer(500, json.dumps({"detail": f"boom while reading {PASSWORD}"}).encode(), JSON)

    with serving(Handler) as url:
        yield url


def test_airflow_error_bodies_never_reach_the_message(echoing_airflow):
    client = AirflowClient(echoing_airflow, "admin", PASSWORD, 5)
    with pytest.raises(PeerError) as err:
        client.upsert_variables([{"key": "retailflow_mysql", "value": PASSWORD, "description": "d"}])
    assert "HTTP 422" in str(err.value) and PASSWORD not in str(err.value)
    with pytest.raises(PeerError) as err:
        client.list_variables("retailflow_")
    assert "HTTP 500" in str(err.value) and PASSWORD not in str(err.value)
    assert PASSWORD not in repr(client)


@pytest.fixture
def airflow_behind_a_proxy():
    """A stand-in for an Airflow reached through a proxy that answers its API with a 200 HTML page
    (a login or maintenance page), after a token answer that is fine."""

    class Handler(QuietHandler):
        def do_POST(self):
            self.body()
            if self.path == "/auth/token":
                self.answer(201, b'{"access_token": "t"}')
            else:
                self.do_GET()

        do_PATCH = do_POST

        def do_GET(self):
            self.answer(200, b"<html>sign in</html>")

    with serving(Handler) as url:
        yield url


def test_an_airflow_answer_that_is_not_json_is_refused_clearly(airflow_behind_a_proxy):
    """Like the Airbyte client's: a PeerError naming the call, not retried as transient (the pipeline is
    Failed with AirflowRejected and the drift timer tries again), rather than an unexpected error."""
    client = AirflowClient(airflow_behind_a_proxy, "admin", PASSWORD, 5)
    calls = [lambda: client.list_variables("retailflow_"), lambda: client.get_variable("retailflow_mysql"),
             lambda: client.upsert_variables([{"key": "retailflow_mysql", "value": "{}", "description": "d"}])]
    for call in calls:
        with pytest.raises(PeerError) as err:
            call()
        assert "the answer is not JSON" in str(err.value) and not err.value.transient, err.value
        assert PASSWORD not in str(err.value) and "sign in" not in str(err.value)


def test_the_airflow_client_sends_no_credentials_after_a_redirect():
    """An Airflow URL that redirects (a proxy, an http to https hop) would take the password, or the
    token, to a host the operator's allowed hosts never named: the client stops at the redirect."""
    with redirect_and_record() as (url, received):
        client = AirflowClient(url, "admin", PASSWORD, 5)
        with pytest.raises(PeerError) as err:
            client.list_variables("retailflow_")
        assert "HTTP 307" in str(err.value) and "redirect" in str(err.value) and not err.value.transient
    assert received == []


def test_redaction_replaces_every_secret_value_but_not_names():
    secrets = {"mysql": {"username": "retail", "password": PASSWORD}, "airbyte": {"client_id": "cid",
                                                                                  "client_secret": "s3cr3t-value"}}
    text = redact(f"Secret retail/mysql: {PASSWORD} and s3cr3t-value rejected", secrets)
    assert PASSWORD not in text and "s3cr3t-value" not in text and text.count(REDACTED) == 2
    assert "retail/mysql" in text


def test_services_script_puts_no_password_on_a_command_line():
    """`ps` shows every argument: passwords travel in the environment (MYSQL_PWD, PGPASSWORD) or on stdin."""
    script = (REPO / "hack" / "services.sh").read_text()
    code = [line for line in script.splitlines() if not line.lstrip().startswith("#")]
    offending = [line for line in code
                 if re.search(r"\s-p\"?\$\w*pw", line)  # mysql -p"$pw"
                 or re.search(r"-c\s+\"[^\"]*password '\$", line)]  # psql -c "... password '$pw'"
    assert offending == []
    assert any("MYSQL_PWD=" in line for line in code) and any("PGPASSWORD=" in line for line in code)


#: dataclass fields that hold a secret, or a database URL that may carry one
SECRET_FIELD = re.compile(r"password|secret_key$|client_secret$|access_key$|hmac_key$|(^|_)token$|"
                          r"(mysql|warehouse|database|db)_url$")


def _dataclass_fields(path: Path):
    """(class, field, repr hidden) for every annotated field of every ``@dataclass`` class in ``path``."""
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ClassDef):
            continue
        decorators = [d.func if isinstance(d, ast.Call) else d for d in node.decorator_list]
        if not any(getattr(d, "id", getattr(d, "attr", None)) == "dataclass" for d in decorators):
            continue
        for stmt in node.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                hidden = isinstance(stmt.value, ast.Call) and any(
                    k.arg == "repr" and isinstance(k.value, ast.Constant) and k.value.value is False
                    for k in stmt.value.keywords)
                own_repr = any(isinstance(n, ast.FunctionDef) and n.name == "__repr__" for n in node.body)
                yield node.name, stmt.target.id, hidden or own_repr


def test_no_dataclass_shows_a_secret_in_its_repr():
    """A dataclass's repr names every field: it lands in tracebacks, task logs and debuggers. Fields
    that hold a password, a key or a database URL are left out of it (``field(repr=False)``) in every
    package and in the benchmarks users run."""
    files = [p for base in ("dags", "generator", "operator", "tests/bench", "charts/retailflow/files")
             for p in (REPO / base).rglob("*.py") if ".venv" not in p.parts]
    fields = [(path.relative_to(REPO), cls, name, hidden) for path in files for cls, name, hidden in _dataclass_fields(path)]
    secret = [f for f in fields if SECRET_FIELD.search(f[2])]
    assert len(secret) >= 5, secret  # the scan sees the settings that hold them
    assert [f[:3] for f in secret if not f[3]] == []

