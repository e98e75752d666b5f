"""The audit's command line (``python -m retailflow_pipeline.audit``) on bad input: one line, exit 2, no
password, and nothing compared (no database: every case is refused before one is read)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from retailflow_pipeline import audit

SECRET = "s3cr3t-Pw"
GOOD = {"RETAILFLOW_MYSQL_URL": f"mysql://retail:{SECRET}@127.0.0.1:1/retail",
        "RETAILFLOW_WAREHOUSE_URL": f"postgresql://warehouse:{SECRET}@127.0.0.1:1/warehouse"}


def run(argv: list[str], monkeypatch, capsys, **env: str) -> tuple[int, str, str]:
    for name, value in {**GOOD, **env}.items():
        monkeypatch.setenv(name, value)
    try:
        code = audit.main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("value", ["inf", "1e300", "1e12", "604801", "nan", "-1"])
def test_the_settle_window_is_bounded_when_read(value, monkeypatch, capsys):
    monkeypatch.setattr(audit, "compare", lambda *a, **k: pytest.fail("compared with a bad settle window"))
    code, out, err = run(["--settle-seconds", value], monkeypatch, capsys)
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert f"argument --settle-seconds: {value} is not between 0 and 604800 s (a week)" in err, err


def test_a_week_is_accepted(monkeypatch, capsys):
    seen = {}

    def compare(*_args, settle, **_kwargs):
        seen["settle"] = settle
        return audit.AuditReport()

    monkeypatch.setattr(audit, "compare", compare)
    code, _out, err = run(["--settle-seconds", "604800"], monkeypatch, capsys)
    assert code == 0 and seen["settle"] == timedelta(days=7), err


def test_the_dags_settle_window_is_bounded_too():
    """The DAG's task reads $RETAILFLOW_AUDIT_SETTLE_SECONDS itself and calls check(): a clear error,
    raised before anything connects (where 1e12 s overflowed the dates mid-way)."""
    with pytest.raises(audit.AuditError, match="settle window must be 0 to 604800 s"):
        audit.check(GOOD["RETAILFLOW_MYSQL_URL"], GOOD["RETAILFLOW_WAREHOUSE_URL"], settle=timedelta(seconds=1e12))


@pytest.mark.parametrize(("name", "url", "message"), [
    ("RETAILFLOW_WAREHOUSE_URL", f"warehouse:{SECRET}@127.0.0.1:5432/x",
     "RETAILFLOW_WAREHOUSE_URL does not start with postgresql:// or postgres://: it must look like"
     " postgresql://USER:PASSWORD@HOST:PORT/DATABASE"),
    ("RETAILFLOW_WAREHOUSE_URL", f"postgresql://warehouse:{SECRET}@[::1/x",
     "RETAILFLOW_WAREHOUSE_URL is malformed (an unbalanced [ or ] in its host)"),
    ("RETAILFLOW_WAREHOUSE_URL", f"postgresql://warehouse:{SECRET}@127.0.0.1:abc/x",
     "RETAILFLOW_WAREHOUSE_URL is malformed (its port is not a number from 1 to 65535)"),
    # a password holding a "/" splits where the port is looked for: named as such, and not quoted either
    ("RETAILFLOW_WAREHOUSE_URL", f"postgresql://warehouse:{SECRET}/x@127.0.0.1/x",
     "RETAILFLOW_WAREHOUSE_URL is malformed (its user or password holds a /, #, ? or @, which must be"
     " percent-encoded: / as %2F, # as %23, ? as %3F, @ as %40; a : in the user as %3A; an @ in the database or a"
     " parameter is written %40)"),
    ("RETAILFLOW_MYSQL_URL", f"retail:{SECRET}@127.0.0.1:3306/retail",
     "RETAILFLOW_MYSQL_URL does not start with mysql://, mysql+pymysql:// or mariadb://: it must look like"
     " mysql://USER:PASSWORD@HOST:PORT/DATABASE"),
    # libpq parses it, and quotes the password in its error: shown as ***
    ("RETAILFLOW_WAREHOUSE_URL", f"postgresql://warehouse:{SECRET} x@127.0.0.1:1/x",
     'audit: cannot connect to the warehouse postgresql://warehouse@127.0.0.1:1/x: unexpected spaces found in "***"'),
])
def test_a_bad_url_is_one_line_without_the_password(name, url, message, monkeypatch, capsys):
    code, out, err = run([], monkeypatch, capsys, **{name: url})
    assert (code, out) == (2, "") and err.count("\n") == 1, err
    assert message in err and SECRET not in err, err
