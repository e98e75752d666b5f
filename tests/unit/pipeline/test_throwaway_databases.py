"""The names the tests and benchmarks give their throwaway databases (``support.databases``) are the
ones `make clean-tests` finds after a killed run: its pattern, read from hack/clean-tests.sh itself,
matches every one, since a tag always holds the hexadecimal letter that pattern asks for; and their drop
raises for a test, warns for a benchmark, when autovacuum holds the database to the end. No server."""

from __future__ import annotations

import ast
import re
import uuid
from pathlib import Path

import pytest

from support import databases
from support.databases import KINDS, SERVICES, throwaway_name, throwaway_tag, throwaway_user

REPO = Path(__file__).resolve().parents[3]
#: the kinds with labels the suites and benchmarks use (bench_ingest.py, bench_dbt.py's scales,
#: bench_scale.py's sizes, bench_peers.py), beside the bare KINDS
LABELLED = ["test_bench", "test_bench_10k", "test_bench_1m", "test_peers",
            *(f"test_scale_{size}" for size in ("10k", "100k", "1m", "3m", "10m"))]


def assigned(source: str, *names: str) -> dict:
    """The values of the top-level assignments to ``names``, and of the functions named so, in a Python
    source, evaluated in order (with ``re`` and ``uuid`` at hand), without importing the rest of it."""
    found: dict = {"re": re, "uuid": uuid}
    for node in ast.parse(source).body:
        if (isinstance(node, ast.Assign) and any(getattr(t, "id", None) in names for t in node.targets)
                or isinstance(node, ast.FunctionDef) and node.name in names):
            exec(compile(ast.Module([node], []), "<pattern>", "exec"), found)
    return {name: found[name] for name in names}


def clean_tests_pattern(name: str = "THROWAWAY") -> re.Pattern:
    """THROWAWAY (built on SERVICES) or TEST_USER from the Python that hack/clean-tests.sh runs in its
    here-document."""
    script = (REPO / "hack" / "clean-tests.sh").read_text()
    python = script.split("<<'PY'\n", 1)[1].split("\nPY\n", 1)[0]
    return assigned(python, "SERVICES", name)[name]


@pytest.mark.parametrize("width", [8, 10])
def test_every_name_the_helpers_give_is_one_clean_tests_finds(width):
    throwaway = clean_tests_pattern()
    names = [throwaway_name(service, kind, throwaway_tag(width))
             for service in SERVICES for kind in (*KINDS, *LABELLED) for _ in range(50)]
    missed = [name for name in names if not throwaway.match(name)]
    assert not missed, f"clean-tests would not find {missed[:5]}"


def test_the_workloads_suites_users_are_the_ones_clean_tests_finds_with_their_databases():
    """A killed workloads run leaves its user (a PostgreSQL role, a MariaDB user) and the databases that
    user owns: clean-tests knows the user by its name, and the databases by that name's tag."""
    test_user = clean_tests_pattern("TEST_USER")
    for _ in range(200):
        tag = throwaway_tag(8)
        found = test_user.match(throwaway_user(tag))
        assert found, f"clean-tests would not find {throwaway_user(tag)}"
        assert all(throwaway_name(service, "wl", tag).endswith("_" + found.group(1)) for service in SERVICES)
    assert not test_user.match("rf_wl_12345678")  # all digits: not a tag


def test_generator_shape_names_its_database_as_clean_tests_finds_it(monkeypatch):
    """`make generator-shape` (generator/shape_docs.py, another project's environment) names its database
    without the helper: its ``database_name``, taken from the source, even when uuid4 draws only digits."""
    database_name = assigned((REPO / "generator" / "shape_docs.py").read_text(), "database_name")["database_name"]
    draws = iter([uuid.UUID("12345678" + "0" * 24), uuid.UUID("0123abcd" + "0" * 24)])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(draws))
    name = database_name()
    assert name == "retail_shape_0123abcd"
    assert clean_tests_pattern().match(name)


def test_benchmark_names_are_the_ones_test_benchmarks_looks_for():
    """test_benchmarks.py's leftover check finds benchlib's and bench_ingest.py's databases (a name it did
    not match would pass that check unseen)."""
    source = (REPO / "tests" / "integration" / "dags" / "test_benchmarks.py").read_text()
    bench_database = assigned(source, "BENCH_DATABASE")["BENCH_DATABASE"]
    for service in ("retail", "warehouse", "airflow"):
        for kind in ("test_bench", "test_scale_10k", "test_scale_1m"):
            assert bench_database.match(throwaway_name(service, kind, throwaway_tag(8))), (service, kind)


def test_a_name_clean_tests_would_not_know_is_refused():
    with pytest.raises(ValueError):
        throwaway_name("retail", "mine", throwaway_tag())
    with pytest.raises(ValueError):
        throwaway_name("shop", "test", throwaway_tag())


@pytest.mark.parametrize("width", [8, 10])
def test_a_tag_holds_a_letter_even_when_the_random_digits_are_all_digits(monkeypatch, width):
    digits = uuid.UUID("01234567-8901-4234-8567-890123456789")  # hex[:10] and hex[:8] all digits
    lettered = uuid.UUID("0123456a-8901-4234-8567-890123456789")
    drawn = iter([digits, digits, lettered])
    monkeypatch.setattr(databases.uuid, "uuid4", lambda: next(drawn))
    tag = throwaway_tag(width)
    assert tag == lettered.hex[:width] and re.fullmatch(r"[0-9]*[a-f][0-9a-f]*", tag)


def test_tags_are_hexadecimal_of_the_width_asked():
    tags = {throwaway_tag(width) for width in (8, 10) for _ in range(500)}
    assert all(re.fullmatch(r"[0-9a-f]{8}|[0-9a-f]{10}", t) and not t.isdigit() for t in tags)


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
@pytest.mark.parametrize("strict", [True, False])
def test_a_drop_held_to_the_end_raises_for_a_test_and_warns_for_a_benchmark(monkeypatch, capsys, strict, driver):
    """With psycopg, or psycopg2 alone (Superset's environment, where the dashboards suite drops its
    databases with the same helper)."""
    import importlib
    import sys

    module = importlib.import_module(driver)
    if driver == "psycopg2":
        monkeypatch.setitem(sys.modules, "psycopg", None)  # as where it is not installed
    tries, slept = [], []

    def held(*args, **kwargs):
        tries.append(args)
        raise module.errors.InsufficientPrivilege("permission denied to terminate process")

    monkeypatch.setattr(module, "connect", held)
    monkeypatch.setattr(databases.time, "sleep", slept.append)
    if strict:
        with pytest.raises(module.errors.InsufficientPrivilege):
            databases.drop_pg_database("postgresql://x/y", "warehouse_test_0a1b2c3d4e", pauses=(1, 2))
    else:
        databases.drop_pg_database("postgresql://x/y", "warehouse_test_0a1b2c3d4e", pauses=(1, 2), strict=False)
        assert "warning: could not drop database warehouse_test_0a1b2c3d4e" in capsys.readouterr().err
    assert len(tries) == 3 and slept == [1, 2]
