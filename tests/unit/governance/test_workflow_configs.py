"""The OpenMetadata workflow templates, checked offline by openmetadata-ingestion's own parser.

`governance.check` loads each template exactly as `metadata ingest` does (environment variables
expanded by OpenMetadata's `load_config_file`) and parses it with `parse_workflow_config_gracefully`,
in OpenMetadata's own environment (.tools/openmetadata). No server is needed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from retailflow_pipeline import governance

REPO = Path(__file__).resolve().parents[3]
TEMPLATES = REPO / "charts" / "retailflow" / "files" / "openmetadata"
METADATA_BIN = REPO / ".tools" / "openmetadata" / "bin" / "metadata"
VARIABLE = re.compile(r"\$\{?([A-Z][A-Z0-9_]*)\}?")


#: (case, workflow, text in the template, replacement, what the error must name)
BROKEN = [
    ("misspelt-source-key", "mysql", "includeTables:", "includeTabels:", "includeTabels"),
    ("misspelt-connection-key", "postgres", "hostPort:", "hostPrt:", "hostPrt"),
    ("misspelt-dbt-key", "dbt", "dbtUpdateDescriptions:", "dbtUpdateDescription:", "dbtUpdateDescription"),
    ("wrong-value-type", "mysql", "includeViews: true", "includeViews: sometimes", "includeViews"),
]


@pytest.fixture(scope="module")
def parsed(tmp_path_factory) -> dict[str, str]:
    """Every template and every broken copy, parsed in one run of OpenMetadata's environment
    (each run imports the whole ingestion framework: tens of seconds on a loaded machine)."""
    if not METADATA_BIN.exists():
        pytest.fail(f"{METADATA_BIN} is missing: run `make openmetadata-env`")
    paths = {p.stem: p for p in TEMPLATES.glob("*.yaml")}
    for case, workflow, old, new, _ in BROKEN:
        text = paths[workflow].read_text()
        assert old in text, f"{old!r} is not in {workflow}.yaml"
        broken = tmp_path_factory.mktemp(case) / f"{workflow}.yaml"
        broken.write_text(text.replace(old, new, 1))
        paths[case] = broken
    results = governance.check_files(list(paths.values()), {"RETAILFLOW_OPENMETADATA_METADATA_BIN": str(METADATA_BIN)})
    return {name: results[str(path)] for name, path in paths.items()}


class TestWorkflowTemplates:
    def test_there_is_one_template_per_workflow(self):
        assert sorted(p.stem for p in TEMPLATES.glob("*.yaml")) == sorted(governance.ORDER)

    def test_every_template_parses_with_openmetadatas_parser(self, parsed):
        assert {name: parsed[name] for name in governance.ORDER} == {name: "ok" for name in governance.ORDER}

    @pytest.mark.parametrize(("case", "named"), [(case, named) for case, *_, named in BROKEN])
    def test_a_broken_template_is_rejected_and_the_key_named(self, parsed, case, named):
        assert parsed[case].startswith("ParsingConfigurationError"), parsed[case]
        assert named in parsed[case], parsed[case]

    def test_no_secret_is_written_in_a_template(self):
        for template in TEMPLATES.glob("*.yaml"):
            for line in template.read_text().splitlines():
                key, _, value = line.strip().partition(":")
                if re.search(r"(?i)(password|token|secret)$", key) and value.strip():
                    assert VARIABLE.fullmatch(value.strip()), f"{template.name}: {line.strip()}"

    def test_every_variable_a_template_reads_is_set_by_governance(self):
        env = governance.CHECK_SAMPLE | {"RETAILFLOW_DBT_TARGET_DIR": "/dbt/target"}
        provided = set(governance.workflow_env(env))
        for template in TEMPLATES.glob("*.yaml"):
            settings = "\n".join(line for line in template.read_text().splitlines() if not line.lstrip().startswith("#"))
            used = set(VARIABLE.findall(settings))
            assert used <= provided, f"{template.name} reads {sorted(used - provided)}"


class TestWorkflowEnvironment:
    def test_without_a_server_url_nothing_is_configured(self):
        with pytest.raises(governance.NotConfigured, match="RETAILFLOW_OPENMETADATA_URL"):
            governance.run({"RETAILFLOW_MYSQL_URL": "mysql://u:p@h:3306/retail"})

    def test_a_server_without_any_credentials_is_not_configured(self):
        # the DAG's task then skips, saying why (a cluster without OpenMetadata has no Secret to read)
        with pytest.raises(governance.NotConfigured, match="RETAILFLOW_OPENMETADATA_TOKEN"):
            governance.run({"RETAILFLOW_OPENMETADATA_URL": "http://om:8585"})

    def test_workflows_to_run_can_be_named_in_the_environment(self, tmp_path):
        base = {"RETAILFLOW_OPENMETADATA_URL": "http://om", "RETAILFLOW_DBT_TARGET_DIR": str(tmp_path),
                "RETAILFLOW_AIRFLOW_URL": "http://af"}
        chosen = governance.selected(base | {"RETAILFLOW_OPENMETADATA_RUN_WORKFLOWS": "airflow, dbt,postgres"})
        assert [w.name for w in chosen] == ["postgres", "dbt", "airflow"]
        with pytest.raises(ValueError, match="unknown workflow"):
            governance.selected(base | {"RETAILFLOW_OPENMETADATA_RUN_WORKFLOWS": "postgres,dbtt"})

    def test_database_urls_become_the_templates_settings(self):
        env = governance.workflow_env({
            "RETAILFLOW_OPENMETADATA_URL": "http://om:8585/", "RETAILFLOW_OPENMETADATA_TOKEN": "t",
            "RETAILFLOW_MYSQL_URL": "mysql://retail:p%40ss@db:3307/retail",
            "RETAILFLOW_WAREHOUSE_URL": "postgresql://warehouse:pw@pg/warehouse",
        })
        assert env["OPENMETADATA_HOST_PORT"] == "http://om:8585/api"
        assert (env["MYSQL_HOST"], env["MYSQL_PORT"], env["MYSQL_USER"], env["MYSQL_PASSWORD"], env["MYSQL_DATABASE"]) \
            == ("db", "3307", "retail", "p@ss", "retail")
        assert (env["WAREHOUSE_HOST"], env["WAREHOUSE_PORT"], env["WAREHOUSE_DATABASE"]) == ("pg", "5432", "warehouse")

    @pytest.mark.parametrize(("name", "url", "fault"), [
        # a "/" in the password: urllib's error quoted the password's start as the port
        ("RETAILFLOW_MYSQL_URL", "mysql://retail:s3cr3t-Pw/x@db:3307/retail",
         "is malformed (its user or password holds a /, #, ? or @, which must be percent-encoded: / as %2F,"
         " # as %23, ? as %3F, @ as %40; a : in the user as %3A; an @ in the database or a parameter is written"
         " %40): it must look like"
         " mysql://USER:PASSWORD@HOST:PORT/DATABASE"),
        # ... whose start is a number: taken as the port, the user as the host, the rest as the database
        ("RETAILFLOW_WAREHOUSE_URL", "postgresql://warehouse:1234/s3cr3t-Pw@pg/warehouse",
         "is malformed (its user or password holds a /, #, ? or @, which must be percent-encoded: / as %2F,"
         " # as %23, ? as %3F, @ as %40; a : in the user as %3A; an @ in the database or a parameter is written"
         " %40): it must look like"
         " postgresql://USER:PASSWORD@HOST:PORT/DATABASE"),
        ("RETAILFLOW_MYSQL_URL", "mysql://db:3307/retail",
         "names no user: it must look like mysql://USER:PASSWORD@HOST:PORT/DATABASE"),
    ])
    def test_a_malformed_database_url_is_named_without_its_password(self, name, url, fault):
        """The engine's check (``url_problem``), and its words: the workflows would connect elsewhere."""
        with pytest.raises(ValueError) as refused:
            governance.workflow_env({"RETAILFLOW_OPENMETADATA_URL": "http://om:8585",
                                     "RETAILFLOW_OPENMETADATA_TOKEN": "t", name: url})
        assert str(refused.value) == f"{name} {fault}"

    def test_workflows_run_in_dependency_order_and_only_for_configured_peers(self, tmp_path):
        base = {"RETAILFLOW_OPENMETADATA_URL": "http://om", "RETAILFLOW_DBT_TARGET_DIR": str(tmp_path)}
        assert [w.name for w in governance.selected(base)] == ["mysql", "postgres"]
        (tmp_path / "manifest.json").write_text("{}")
        assert [w.name for w in governance.selected(base | {"RETAILFLOW_SUPERSET_URL": "http://ss"})] \
            == ["mysql", "postgres", "dbt", "superset"]
        assert [w.name for w in governance.selected(base, ["dbt", "mysql"])] == ["mysql", "dbt"]
        with pytest.raises(ValueError, match="unknown workflow"):
            governance.selected(base, ["mysq"])

    def test_run_results_of_docs_generate_are_called_out(self, tmp_path):
        # `make dbt-build` ends with `dbt docs generate`, which overwrites run_results.json
        said: list[str] = []
        (tmp_path / "run_results.json").write_text('{"args": {"which": "generate"}, "results": []}')
        governance._warn_on_docs_run_results(tmp_path / "run_results.json", said.append)
        assert len(said) == 1 and "dbt docs generate" in said[0] and "RETAILFLOW_DBT_RUN_RESULTS" in said[0]
        (tmp_path / "run_results.json").write_text('{"args": {"which": "build"}, "results": []}')
        governance._warn_on_docs_run_results(tmp_path / "run_results.json", said.append)
        assert len(said) == 1
