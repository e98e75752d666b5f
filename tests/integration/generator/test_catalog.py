"""The catalog (`catalog.json`) and `schema.sql` sit side by side in the generator's package: every
reader of the catalog (generator, ingestion engine, operator, CRD) trusts that its tables, keys and
cursors are those the schema creates. Checked on a real MariaDB holding the schema."""

import json
from importlib.resources import files

import pytest
from conftest import rows
from retailflow_generator.db import MySQLTarget, connect, ensure_schema

pytestmark = pytest.mark.integration

CATALOG = json.loads(files("retailflow_generator").joinpath("catalog.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def schema_url(make_module_database) -> str:
    url = make_module_database()
    conn = connect(MySQLTarget.from_url(url))
    try:
        ensure_schema(conn)
    finally:
        conn.close()
    return url


def _index_columns(url: str) -> dict[str, dict[str, list[str]]]:
    """table -> index name -> its columns in order, as the server holds them."""
    found: dict[str, dict[str, list[str]]] = {}
    for table, index, column in rows(url, "select table_name, index_name, column_name from information_schema.statistics"
                                          " where table_schema = database() order by table_name, index_name, seq_in_index"):
        found.setdefault(table, {}).setdefault(index, []).append(column)
    return found


def test_the_catalogs_tables_are_the_schemas_in_an_order_that_creates_parents_first(schema_url):
    names = [t["name"] for t in CATALOG["source_tables"]]
    created = rows(schema_url, "select table_name from information_schema.tables"
                               " where table_schema = database() and table_type = 'BASE TABLE'")
    assert sorted(names) == sorted(r[0] for r in created)
    # the generator drops tables in the catalog's reverse order, so a table's parents come before it
    for child, parent in rows(schema_url, "select table_name, referenced_table_name from information_schema.key_column_usage"
                                          " where table_schema = database() and referenced_table_name is not null"):
        assert names.index(parent) < names.index(child), f"{child} references {parent}, listed after it"


def test_each_tables_primary_key_and_cursor_are_the_schemas(schema_url):
    indexes = _index_columns(schema_url)
    columns = {}
    for table, column in rows(schema_url, "select table_name, column_name from information_schema.columns"
                                          " where table_schema = database()"):
        columns.setdefault(table, set()).add(column)
    for table in CATALOG["source_tables"]:
        name, key, cursor = table["name"], table["primary_key"], table["cursor"]
        assert indexes[name]["PRIMARY"] == [key], f"{name}: primary key"
        assert cursor in columns[name], f"{name}: no cursor column {cursor}"
        # incremental readers page by (cursor, primary key): the schema has an index for exactly that
        assert [cursor, key] in indexes[name].values(), f"{name}: no index on ({cursor}, {key})"
