"""`seed --truncate` is atomic from the user's view: killed, interrupted or failing, it leaves the
previous rows as they were, says so truthfully, and leaves no file behind."""

import os
import signal
import subprocess
import time
from datetime import date

import pymysql
import pytest
from conftest import GENERATOR, connect, rows, scalar
from retailflow_generator import db as db_module
from retailflow_generator import seed as seed_module
from retailflow_generator.db import GeneratorError, MySQLTarget
from retailflow_generator.seed import SeedRequest, run_seed
from test_seed import ARGS, checksums, seed_in_process

pytestmark = pytest.mark.integration

#: big enough that the load is still running a second after it started
BIG = ["--customers", "3000", "--products", "300", "--orders", "250000", "--start", "2024-01-01",
       "--end", "2025-12-31", "--seed", "5", "--truncate"]


def tables(url):
    return sorted(r[0] for r in rows(url, "select table_name from information_schema.tables "
                                          "where table_schema = database()"))


def start_big_truncate(url, tmp_path):
    """Start a big `seed --truncate` (TMPDIR pointed at an empty folder) and return it once rows are
    flowing into its shadow tables."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([GENERATOR, "seed", *BIG, "--mysql-url", url], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    watcher = connect(url)
    try:
        with watcher.cursor() as cur:
            cur.execute("set session transaction isolation level read uncommitted")
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    cur.execute("select count(*) from orders__new")
                    if cur.fetchone()[0] > 0:
                        return proc
                except pymysql.err.ProgrammingError:  # not created yet
                    pass
                time.sleep(0.05)
    finally:
        watcher.close()
    proc.kill()
    pytest.fail(f"the shadow tables never filled (exit {proc.poll()}): {proc.communicate()[1]}")


def test_sigkill_during_truncate_leaves_the_previous_data_and_no_files(database, tmp_path):
    seed_in_process(database, *ARGS)
    before = checksums(database)
    proc = start_big_truncate(database, tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    # the server ends the killed session's transaction; the old tables were never touched
    assert checksums(database) == before
    assert list(tmp_path.iterdir()) == [], "no temporary file survives a SIGKILL"
    # the next seed clears the killed one's shadow tables and replaces the data
    seed_in_process(database, *ARGS[:-1], "12", "--truncate")
    assert checksums(database) != before
    assert tables(database) == ["customers", "order_items", "orders", "products"]


def test_ctrl_c_during_truncate_says_the_previous_data_is_unchanged(database, tmp_path):
    seed_in_process(database, *ARGS)
    before = checksums(database)
    proc = start_big_truncate(database, tmp_path)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "interrupted; the previous data is unchanged" in err and "Traceback" not in err
    assert out == ""
    assert checksums(database) == before
    assert tables(database) == ["customers", "order_items", "orders", "products"], "shadow tables dropped"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("failure", ["generating", "loading"])
def test_a_failed_truncate_keeps_the_previous_data(database, monkeypatch, failure):
    seed_in_process(database, *ARGS)
    before = checksums(database)
    if failure == "generating":
        def failing_products(*_args, **_kwargs):
            raise GeneratorError("simulated failure while generating")
            yield  # a generator, like the real one

        monkeypatch.setattr(seed_module, "product_text", failing_products)
        expected = "simulated failure"
    else:
        real_load, calls = db_module.load_file, []

        def failing_load(conn, sql, path, expected_rows):
            calls.append(sql)
            if len(calls) == 3:
                raise pymysql.err.OperationalError(2013, "Lost connection to server during query (simulated)")
            return real_load(conn, sql, path, expected_rows)

        monkeypatch.setattr(db_module, "load_file", failing_load)
        expected = "the previous data is unchanged"
    monkeypatch.setattr(seed_module, "ORDER_CHUNK", 500)
    request = SeedRequest(customers=300, products=40, orders=3000, start=date(2025, 1, 1), end=date(2025, 3, 31),
                          seed=1, truncate=True)
    with pytest.raises(GeneratorError, match=expected):
        run_seed(request, MySQLTarget.from_url(database))
    assert checksums(database) == before
    assert tables(database) == ["customers", "order_items", "orders", "products"]
    assert scalar(database, "select count(*) from orders") == 3000
