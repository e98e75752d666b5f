"""``python -m retailflow_pipeline.governance`` (``make governance``, ``make governance-check``) on bad
input: argparse's --help, exit 2 and one line for bad arguments or settings, and a server that does
not answer found with one request, in one line, before any workflow runs."""

from __future__ import annotations

import time

import pytest

from retailflow_pipeline import governance
from support.openmetadata_standin import OpenMetadataStandIn

SECRET = "s3cr3t-Tok"


def run(argv: list[str], monkeypatch, capsys, **env: str) -> tuple[int, str, str]:
    for name in ("RETAILFLOW_OPENMETADATA_URL", "RETAILFLOW_OPENMETADATA_TOKEN", "RETAILFLOW_OPENMETADATA_ADMIN_PASSWORD",
                 "RETAILFLOW_OPENMETADATA_RUN_WORKFLOWS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        code = governance.main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv", [["--help"], ["--check", "--help"], ["mysql", "--help"]])
def test_help_is_help(argv, monkeypatch, capsys):
    code, out, err = run(argv, monkeypatch, capsys)
    assert (code, err) == (0, ""), err
    assert out.startswith("usage: python -m retailflow_pipeline.governance [-h] [--check] [WORKFLOW ...]"), out
    assert "RETAILFLOW_OPENMETADATA_URL" in out and "postgres-profiler" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["--bogus"], "governance: unrecognized arguments: --bogus"),
    (["mysq"], "governance: unknown workflow(s) mysq; known: mysql, postgres, dbt"),
    (["--check", "mysql", "dbtt"], "governance: unknown workflow(s) dbtt; known:"),
])
def test_bad_arguments_are_exit_2(argv, message, monkeypatch, capsys):
    monkeypatch.setattr(governance, "run", lambda *a, **k: pytest.fail("ran"))
    monkeypatch.setattr(governance, "check", lambda *a, **k: pytest.fail("checked"))
    code, out, err = run(argv, monkeypatch, capsys, RETAILFLOW_OPENMETADATA_URL="http://om:8585",
                         RETAILFLOW_OPENMETADATA_TOKEN=SECRET)
    assert (code, out) == (2, "") and err.startswith(message) and err.count("\n") == 1, err


def test_unknown_workflows_in_the_environment_are_exit_2(monkeypatch, capsys):
    code, out, err = run([], monkeypatch, capsys, RETAILFLOW_OPENMETADATA_URL="http://127.0.0.1:9",
                         RETAILFLOW_OPENMETADATA_TOKEN=SECRET, RETAILFLOW_OPENMETADATA_RUN_WORKFLOWS="postgres,dbtt")
    assert (code, out) == (2, "") and "unknown workflow(s) dbtt" in err, err


@pytest.mark.parametrize(("url", "problem"), [
    ("openmetadata:8585", "does not start with http:// or https://"),
    (f"http://admin:{SECRET}@om:8585",
     "carries a user or password (the credentials are RETAILFLOW_OPENMETADATA_TOKEN's)"),
    (f"http://om:8585/x?token={SECRET}", "has more than a host and port (only /api may follow)"),
    ("http://[::1:8585", "is malformed (an unbalanced [ or ] in its host)"),
    ("http://om:99999", "is malformed (its port is not a number from 1 to 65535)"),
    ("http://:8585", "names no host"),
])
def test_a_server_url_of_another_shape_is_refused_up_front(url, problem, monkeypatch, capsys):
    code, out, err = run([], monkeypatch, capsys, RETAILFLOW_OPENMETADATA_URL=url, RETAILFLOW_OPENMETADATA_TOKEN="t")
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert f"governance: RETAILFLOW_OPENMETADATA_URL {problem}: it must look like http(s)://HOST[:PORT]" in err, err
    assert SECRET not in err


def test_a_server_that_does_not_answer_is_one_line_at_once(monkeypatch, capsys):
    monkeypatch.setattr(governance, "_run_each", lambda *a, **k: pytest.fail("ran a workflow"))
    started = time.monotonic()
    code, out, err = run([], monkeypatch, capsys, RETAILFLOW_OPENMETADATA_URL="http://127.0.0.1:1",
                         RETAILFLOW_OPENMETADATA_TOKEN=SECRET)
    assert time.monotonic() - started < 3
    assert (code, out) == (1, "") and err.count("\n") == 1, err
    assert err.startswith("governance: OpenMetadata at http://127.0.0.1:1/api does not answer: ") and SECRET not in err


def test_the_reachability_check_is_one_request_that_needs_no_login():
    with OpenMetadataStandIn() as standin:
        governance.check_server(standin.url if standin.url.endswith("/api") else f"{standin.url}/api")
        assert [(r.method, r.path, r.status) for r in standin.requests] == [("GET", "/api/v1/system/version", 200)]
