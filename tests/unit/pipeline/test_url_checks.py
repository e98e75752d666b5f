"""One URL check words every bad database URL: the ingestion engine and the task package (audit, report)
share ``retailflow_ingest.errors.url_problem``, and the generator, a package of its own, has its twin.
The same bad URL gets the same one-line message from each of them, naming the fault and never the
password: these tests fail as soon as one wording drifts from the others."""

from __future__ import annotations

import pytest

from retailflow_generator import cli as generator_cli
from retailflow_ingest import cli as ingest_cli
from retailflow_ingest.errors import IngestError
from retailflow_ingest.source import MySQLSource
from retailflow_pipeline import audit, report

SECRET = "s3cr3t-Pw"
WAREHOUSE = f"postgresql://warehouse:{SECRET}@127.0.0.1:1/warehouse"
PORT = "is malformed (its port is not a number from 1 to 65535)"
#: a / ? # or @ in the user or password, unencoded: named as such, not as the port or host it turned into
ENCODE = ("is malformed (its user or password holds a /, #, ? or @, which must be percent-encoded: / as %2F,"
          " # as %23, ? as %3F, @ as %40; a : in the user as %3A; an @ in the database or a parameter is written"
          " %40)")
#: the same on a command line, whose shape has no password
ENCODE_USER = ("is malformed (its user holds a /, #, ?, @ or :, which must be percent-encoded: / as %2F,"
               " # as %23, ? as %3F, @ as %40, : as %3A; an @ in the database or a parameter is written %40)")
SCHEME = "does not start with mysql://, mysql+pymysql:// or mariadb://"
#: a % not starting a percent-encoding: libpq refuses it, quoting the whole value (password and all)
PERCENT = ("is malformed (a % in it is not followed by two hexadecimal digits: a % must start a percent-encoding"
           " such as %25 for % itself)")

#: a bad MySQL URL in the environment -> the fault its message names
BAD_MYSQL_URLS = {
    f"mysql://retail:{SECRET}@127.0.0.1:0/retail": PORT,
    f"mysql://retail:{SECRET}@127.0.0.1:70000/retail": PORT,
    f"mysql://retail:{SECRET}@127.0.0.1:port/retail": PORT,
    f"mysql://retail:{SECRET}@127.0.0.1:-1/retail": PORT,
    # a "/", "#" or "?" in the password ends the host part: the "port" is the password's start
    f"mysql://retail:{SECRET}/x@127.0.0.1/retail": ENCODE,
    f"mysql://retail:{SECRET}#x@127.0.0.1:3306/retail": ENCODE,
    f"mysql://retail:{SECRET}?x@127.0.0.1:3306/retail": ENCODE,
    f"mysql://retail:{SECRET}?x=y@127.0.0.1:3306/retail": ENCODE,
    # ... or, when the password starts with digits, a valid port: taken before, as host "retail"
    f"mysql://retail:1234/{SECRET}@127.0.0.1:3306/retail": ENCODE,
    # the same in the user, which then became the host
    "mysql://ret/ail@127.0.0.1:3306/retail": ENCODE,
    # a second "@": urllib split at the last, libpq at the first (the rest of the password its host)
    f"mysql://retail:{SECRET}@x@127.0.0.1:3306/retail": ENCODE,
    # a password starting with digits, then a / or ?, then what reads as a parameter: the @ after the
    # host part is refused wherever it stands (taken before, with the password's rest in the log)
    f"mysql://retail:4711/{SECRET}?k=v@127.0.0.1:3306/retail": ENCODE,
    f"mysql://retail:4711?k={SECRET}@127.0.0.1:3306/retail": ENCODE,
    "mysql://retail@127.0.0.1:3306/retail?user=a@b": ENCODE,
    f"mysql://retail:{SECRET}@:3306/retail": "names no host",
    "mysql:///retail": "names no host",
    f"mysql://retail:{SECRET}@db host:3306/retail": "is malformed (a space or control character in its host)",
    f"mysql://retail:{SECRET}@[::1/retail": "is malformed (an unbalanced [ or ] in its host)",
    f"mysql://retail:{SECRET}@[db]:3306/retail": "is malformed (its host in [ ] is not an IP address)",
    f"postgresql://retail:{SECRET}@127.0.0.1:3306/retail": SCHEME,
    f"retail:{SECRET}@127.0.0.1:3306/retail": SCHEME,
    f"mysql://retail:{SECRET}@127.0.0.1:3306/": "names no database",
    # a raw % in the password, the user or the database, also as its last or next-to-last character
    f"mysql://retail:S3C%zz{SECRET}@127.0.0.1:3306/retail": PERCENT,
    f"mysql://retail:{SECRET}%@127.0.0.1:3306/retail": PERCENT,
    f"mysql://retail:{SECRET}%4@127.0.0.1:3306/retail": PERCENT,
    f"mysql://re%tail:{SECRET}@127.0.0.1:3306/retail": PERCENT,
    f"mysql://retail:{SECRET}@127.0.0.1:3306/re%tail": PERCENT,
}


def engine_says(url: str) -> str:
    with pytest.raises(IngestError) as refused:
        MySQLSource(url)
    return str(refused.value)


def audit_says(url: str) -> str:
    """What the DAG's audit task fails with (``check`` -> ``compare``), before it connects anywhere."""
    with pytest.raises(audit.AuditError) as refused:
        audit.check(url, WAREHOUSE)
    return str(refused.value)


def generator_says(argv: list[str], capsys) -> str:
    assert generator_cli.main(argv) == 2
    out, err = capsys.readouterr()
    prefix = f"retailflow-generator {argv[0]}: error: "
    assert out == "" and err.startswith(prefix) and err.count("\n") == 1, err
    return err.removeprefix(prefix).rstrip("\n")


def ingest_cli_says(argv: list[str], capsys) -> str:
    assert ingest_cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("retailflow-ingest: ") and err.count("\n") == 1, err
    return err.removeprefix("retailflow-ingest: ").rstrip("\n")


@pytest.mark.parametrize("url", BAD_MYSQL_URLS)
def test_a_bad_mysql_url_gets_the_same_message_from_the_engine_the_audit_and_the_generator(url, monkeypatch, capsys):
    monkeypatch.setenv("RETAILFLOW_MYSQL_URL", url)
    said = {"engine": engine_says(url), "audit": audit_says(url),
            "generator": generator_says(["live", "--iterations", "1"], capsys)}
    assert len(set(said.values())) == 1, said
    assert said["engine"].startswith(f"the MySQL URL {BAD_MYSQL_URLS[url]}: it must look like"
                                     " mysql://USER:PASSWORD@HOST:PORT/DATABASE"), said
    assert SECRET not in said["engine"]


@pytest.mark.parametrize(("url", "fault"), [
    (f"mysql://retail:{SECRET}@127.0.0.1:3306/retail", "--mysql-url carries a password, which every user can read"
                                                       " in the process list; set $RETAILFLOW_MYSQL_URL instead"),
    ("mysql://retail@127.0.0.1:0/retail", f"--mysql-url {PORT}: it must look like mysql://USER@HOST:PORT/DATABASE"),
    ("mysql://retail@:3306/retail", "--mysql-url names no host: it must look like mysql://USER@HOST:PORT/DATABASE"),
    ("mysql://ret/ail@127.0.0.1:3306/retail",
     f"--mysql-url {ENCODE_USER}: it must look like mysql://USER@HOST:PORT/DATABASE"),
    # a password cut short by its "/" is still a password, which the environment must carry
    (f"mysql://retail:{SECRET}/x@127.0.0.1/retail", "--mysql-url carries a password, which every user can read"
                                                     " in the process list; set $RETAILFLOW_MYSQL_URL instead"),
    ("mysql://re%tail@127.0.0.1:3306/retail",
     f"--mysql-url {PERCENT}: it must look like mysql://USER@HOST:PORT/DATABASE"),
    # the password is the first fault: it must leave the command line, whatever it holds
    (f"mysql://retail:{SECRET}%@127.0.0.1:3306/retail", "--mysql-url carries a password, which every user can"
                                                        " read in the process list; set $RETAILFLOW_MYSQL_URL instead"),
    (f"mysql://retail@127.0.0.1:3306/retail?password={SECRET}", "--mysql-url carries a password, which every user"
                                                               " can read in the process list; set"
                                                               " $RETAILFLOW_MYSQL_URL instead"),
])
def test_a_bad_mysql_url_argument_gets_the_same_message_from_both_command_lines(url, fault, monkeypatch, capsys):
    """retailflow-ingest and retailflow-generator refuse the same ``--mysql-url`` alike, before they do anything."""
    monkeypatch.setenv("RETAILFLOW_MYSQL_URL", "mysql://nobody:x@127.0.0.1:1/none")
    monkeypatch.setenv("RETAILFLOW_WAREHOUSE_URL", WAREHOUSE)
    ingest = ingest_cli_says(["--mysql-url", url], capsys)
    generator = generator_says(["shape", "--mysql-url", url], capsys)
    assert ingest == generator == fault


@pytest.mark.parametrize(("url", "fault"), [
    (f"postgresql://warehouse:{SECRET}@127.0.0.1:5432/warehouse",
     "--warehouse-url carries a password, which every user can read in the process list;"
     " set $RETAILFLOW_WAREHOUSE_URL instead"),
    ("postgresql://warehouse@127.0.0.1:70000/warehouse",
     f"--warehouse-url {PORT}: it must look like postgresql://USER@HOST:PORT/DATABASE"),
    ("mysql://warehouse@127.0.0.1:5432/warehouse", "--warehouse-url does not start with postgresql:// or postgres://:"
                                                   " it must look like postgresql://USER@HOST:PORT/DATABASE"),
    (f"postgresql://warehouse:{SECRET}#x@127.0.0.1:5432/warehouse",
     "--warehouse-url carries a password, which every user can read in the process list;"
     " set $RETAILFLOW_WAREHOUSE_URL instead"),
    # libpq reads user warehouse, password 4711?k=<secret> (it looks for the @ up to the first /, past
    # the ?); urllib a host, a port and a parameter: taken before, the secret on the command line
    (f"postgresql://warehouse:4711?k={SECRET}@127.0.0.1:5432/warehouse",
     "--warehouse-url carries a password, which every user can read in the process list;"
     " set $RETAILFLOW_WAREHOUSE_URL instead"),
    # libpq's password parameter, however its name is written
    (f"postgresql://warehouse@127.0.0.1:5432/warehouse?sslmode=prefer&password={SECRET}",
     "--warehouse-url carries a password, which every user can read in the process list;"
     " set $RETAILFLOW_WAREHOUSE_URL instead"),
    (f"postgresql://warehouse@127.0.0.1:5432/warehouse?pass%77ord={SECRET}",
     "--warehouse-url carries a password, which every user can read in the process list;"
     " set $RETAILFLOW_WAREHOUSE_URL instead"),
])
def test_a_bad_warehouse_url_argument_gets_the_same_message_from_the_engine_and_the_report(url, fault, monkeypatch,
                                                                                            capsys):
    monkeypatch.setenv("RETAILFLOW_MYSQL_URL", "mysql://nobody:x@127.0.0.1:1/none")
    monkeypatch.setenv("RETAILFLOW_WAREHOUSE_URL", WAREHOUSE)
    monkeypatch.setattr(report, "fetch", lambda *a, **k: pytest.fail("read the warehouse"))
    ingest = ingest_cli_says(["--warehouse-url", url], capsys)
    with pytest.raises(SystemExit) as done:
        report.main(["--warehouse-url", url])
    assert done.value.code == 2
    assert capsys.readouterr().err == f"report: {fault} (see --help)\n"
    assert ingest == fault


@pytest.mark.parametrize("port", ["", ":1", ":65535"])
def test_every_port_from_1_to_65535_is_taken_by_all_three(port, monkeypatch):
    from retailflow_generator.db import MySQLTarget

    url = f"mysql://retail:{SECRET}@db.shop{port}/retail"
    assert MySQLSource(url).describe() == MySQLTarget.from_url(url).describe() == \
        f"mysql://retail@db.shop:{port.lstrip(':') or 3306}/retail"
    audit.check_urls(url, WAREHOUSE, "the MySQL URL", "the warehouse URL")  # raises for a URL it refuses


def test_a_user_and_password_with_every_reserved_character_percent_encoded_are_taken_by_all_three():
    """What the message asks for works: the engine and the generator decode the same user and password,
    and an ``@`` in a query parameter's value written %40 (libpq's ``?user=a%40b``) is no fault."""
    from retailflow_generator.db import MySQLTarget
    from retailflow_ingest.warehouse import Warehouse

    url = "mysql://re%3Atail:a%2Fb%23c%3Fd%40e@db.shop:3306/retail"
    engine, generator = MySQLSource(url), MySQLTarget.from_url(url)
    assert (engine.user, engine.password) == (generator.user, generator.password) == ("re:tail", "a/b#c?d@e")
    warehouse = "postgresql://127.0.0.1:1/warehouse?user=warehouse%40shop"
    assert Warehouse(warehouse).describe() == "postgresql://@127.0.0.1:1/warehouse"
    audit.check_urls(url, warehouse, "the MySQL URL", "the warehouse URL")  # raises for a URL it refuses


@pytest.mark.parametrize("url", [
    f"postgresql://warehouse:S3C%zz{SECRET}@127.0.0.1:1/warehouse",
    f"postgresql://ware%house:{SECRET}@127.0.0.1:1/warehouse",
    f"postgresql://warehouse:{SECRET}@127.0.0.1:1/ware%house",
])
def test_a_raw_percent_in_the_warehouse_url_is_named_by_the_engine_and_the_audit(url):
    """libpq quoted the password it could not decode (``invalid percent-encoded token: "S3C%zz..."``) in the
    engine's message; now the URL check names the fault before anything connects."""
    from retailflow_ingest.warehouse import Warehouse

    fault = f"the warehouse URL {PERCENT}: it must look like postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
    with pytest.raises(IngestError) as refused:
        Warehouse(url)
    with pytest.raises(audit.AuditError) as audited:
        audit.check_urls("mysql://retail:x@127.0.0.1:3306/retail", url, "the MySQL URL", "the warehouse URL")
    assert str(refused.value) == str(audited.value) == fault


def test_a_percent_written_as_25_is_taken_by_all_three():
    from retailflow_generator.db import MySQLTarget
    from retailflow_ingest.warehouse import Warehouse

    url = "mysql://retail:50%25off@db.shop:3306/re%25tail"
    engine, generator = MySQLSource(url), MySQLTarget.from_url(url)
    assert (engine.password, engine.database) == (generator.password, generator.database) == ("50%off", "re%tail")
    warehouse = "postgresql://warehouse:50%25off@127.0.0.1:1/warehouse"
    Warehouse(warehouse)  # raises for a URL it refuses
    audit.check_urls(url, warehouse, "the MySQL URL", "the warehouse URL")


#: passwords the URL check takes but libpq cannot decode: it quotes them whole in its message
UNDECODABLE = "S3C%00RETpw-7f3a"


@pytest.mark.parametrize("url", [
    f"postgresql://warehouse:{UNDECODABLE}@127.0.0.1:1/warehouse",
    f"postgresql://warehouse@127.0.0.1:1/warehouse?password={UNDECODABLE}",
])
def test_the_engine_never_shows_the_warehouse_password_libpq_quotes(url):
    """``forbidden value %00 in percent-encoded value: "<password>"``: the engine's message keeps libpq's
    reason and drops the password, and so does its traceback (an Airflow task's log)."""
    import traceback

    from retailflow_ingest.warehouse import Warehouse

    with pytest.raises(IngestError) as refused:
        Warehouse(url).connect()
    message = str(refused.value)
    assert message == ("cannot connect to the warehouse postgresql://warehouse@127.0.0.1:1/warehouse:"
                       ' forbidden value %00 in percent-encoded value: "***"')
    logged = "".join(traceback.format_exception(refused.value))
    assert "RETpw" not in logged and "S3C" not in logged


def test_a_drivers_text_loses_the_password_as_written_and_decoded():
    from retailflow_ingest.errors import without_password

    url = "postgresql://warehouse:p%2Fw0rd%23x@127.0.0.1:1/warehouse?sslmode=prefer&password=other%20one"
    text = 'bad "p%2Fw0rd%23x" and\n"p/w0rd#x", "other%20one" or "other one" for user "warehouse"'
    assert without_password(text, url) == 'bad "***" and "***", "***" or "***" for user "warehouse"'
