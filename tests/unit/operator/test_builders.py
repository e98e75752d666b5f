"""The pure desired-state builders: RetailPipeline spec -> Airbyte requests and Airflow variables."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import re
from pathlib import Path

import pytest
import yaml
from retailflow_operator import airbyte_desired, airflow_variables, catalog, hashing, naming, validation
from retailflow_operator.cron import quartz_cron
from retailflow_operator.errors import SpecError
from retailflow_operator.spec_model import DEFAULTS, parse

KEY = b"operator-held-key-of-32-bytes!!!"
#: the umbrella chart's values: the Services' ports, the Airflow connections it defines
CHART_VALUES = Path(__file__).resolve().parents[3] / "charts" / "retailflow" / "values.yaml"

#: stream -> primary key, as the catalog (generator/retailflow_generator/catalog.json) lists them
PROJECT_STREAMS = {name: pk for name, (pk, _cursor) in catalog.SOURCE_TABLES.items()}


def airbyte(example, secrets, **kw):
    return airbyte_desired.build_airbyte("retailflow", "retail", parse(example["spec"]), secrets, **kw)


class TestAirbyteRequests:
    def test_default_example_builds_two_sources_two_destinations_four_connections(self, example, secrets):
        state = airbyte(example, secrets)
        assert [a.config["sourceType"] for a in state.sources] == ["mysql", "s3"]
        assert [a.config["destinationType"] for a in state.destinations] == ["postgres", "s3"]
        assert sorted(c.role for c in state.connections) == [
            "mysql-to-lake",
            "mysql-to-warehouse",
            "store-locations-to-lake",
            "store-locations-to-warehouse",
        ]

    def test_warehouse_connection_carries_each_streams_mode_cursor_and_key(self, example, secrets):
        conn = next(c for c in airbyte(example, secrets).connections if c.role == "mysql-to-warehouse")
        streams = {s["name"]: s for s in airbyte_desired.dump(conn.create_request("ws", "src", "dst"))["configurations"]["streams"]}
        assert set(streams) == set(PROJECT_STREAMS)
        for name, pk in PROJECT_STREAMS.items():
            assert streams[name]["syncMode"] == "incremental_deduped_history"
            assert streams[name]["cursorField"] == ["updated_at"]
            assert streams[name]["primaryKey"] == [[pk]]

    def test_lake_connection_appends_because_s3_cannot_deduplicate(self, example, secrets):
        conn = next(c for c in airbyte(example, secrets).connections if c.role == "mysql-to-lake")
        modes = {s.name: s.sync_mode.value for s in conn.streams}
        assert set(modes.values()) == {"incremental_append"}

    def test_connection_request_points_at_given_actors_in_workspace(self, example, secrets):
        conn = airbyte(example, secrets).connections[0]
        body = airbyte_desired.dump(conn.create_request("ws-1", "src-1", "dst-1"))
        assert (body["sourceId"], body["destinationId"], body["name"]) == ("src-1", "dst-1", conn.name)
        assert body["schedule"] == {"scheduleType": "manual"}

    def test_airbyte_sync_trigger_gives_a_quartz_cron_schedule(self, example, secrets):
        example["spec"]["airbyte"]["syncTrigger"] = "airbyte"
        example["spec"]["schedule"] = "15 4 * * *"
        conn = airbyte(example, secrets).connections[0]
        assert airbyte_desired.dump(conn.schedule) == {"scheduleType": "cron", "cronExpression": "0 15 4 * * ?"}

    def test_destinations_carry_warehouse_schema_and_lake_location(self, example, secrets):
        state = airbyte(example, secrets)
        wh, lake = (a.config for a in state.destinations)
        assert (wh["host"], wh["port"], wh["database"], wh["schema"]) == (
            "retailflow-postgresql",
            5432,
            "warehouse",
            "raw",
        )
        assert lake["s3_endpoint"] == "http://retailflow-minio:9000"
        assert (lake["s3_bucket_name"], lake["s3_bucket_path"]) == ("retail-lake", "raw")
        assert lake["format"]["format_type"] == "Parquet"

    def test_store_locations_from_the_lake_uses_source_s3_with_the_minio_endpoint(self, example, secrets):
        store = airbyte(example, secrets).sources[1].config
        assert store["endpoint"] == "http://retailflow-minio:9000"
        assert store["streams"][0]["globs"] == ["store_locations/store_locations.csv"]
        assert store["streams"][0]["name"] == "store_locations"

    def test_store_locations_from_a_url_uses_source_file(self, example, secrets):
        example["spec"]["storeLocations"] = {"url": "https://example.com/stores.csv"}
        store = airbyte(example, secrets).sources[1].config
        assert store["sourceType"] == "file"
        assert store["url"] == "https://example.com/stores.csv"

    def test_without_store_locations_only_mysql_connections_exist(self, example, secrets):
        del example["spec"]["storeLocations"]
        assert sorted(c.role for c in airbyte(example, secrets).connections) == ["mysql-to-lake", "mysql-to-warehouse"]

    def test_direct_engine_owns_no_airbyte_resources(self, example, secrets):
        example["spec"]["engine"] = "direct"
        state = airbyte(example, secrets)
        assert not state.sources and not state.destinations and not state.connections

    def test_names_are_deterministic_and_cannot_collide_across_namespaces(self, example, secrets):
        a = naming.resource_name("rf", "a-b", "c", "mysql")
        c = naming.resource_name("rf", "a", "b-c", "mysql")
        assert a != c
        first = [x.name for x in airbyte(example, secrets).sources]
        assert first == [x.name for x in airbyte(example, secrets).sources]


def actor_secret_values(secrets) -> list[str]:
    """The secret values the Airbyte actors carry, listed by hand from the ``secrets`` fixture (not
    picked with hashing.is_secret_key, the rule under test, so a regression in it cannot empty the list)."""
    return [
        secrets["mysql"]["password"],
        secrets["warehouse"]["password"],
        secrets["lake"]["access_key_id"],
        secrets["lake"]["secret_access_key"],
    ]


class TestSecretsNeverCompared:
    def test_public_config_has_no_secret_values(self, example, secrets):
        state = airbyte(example, secrets)
        values = actor_secret_values(secrets)
        assert values == ["mysql-pw-1", "wh-pw-1", "lake-key", "lake-secret-1"]
        full = json.dumps([a.config for a in state.actors.values()])
        assert all(v in full for v in values)  # the actors do carry them, so their absence below means something
        public = json.dumps([a.public_config for a in state.actors.values()])
        leaked = [v for v in values if v in public]
        assert not leaked

    def test_secret_hash_follows_secret_content_not_public_fields(self, example, secrets):
        before = {a.name: a.secret_hash(KEY, "uid") for a in airbyte(example, secrets).actors.values()}
        secrets["warehouse"]["password"] = "wh-pw-2"
        after = {a.name: a.secret_hash(KEY, "uid") for a in airbyte(example, secrets).actors.values()}
        changed = {n for n in before if before[n] != after[n]}
        assert changed == {naming.resource_name("rf", "retailflow", "retail", "warehouse")}
        example["spec"]["warehouse"]["host"] = "elsewhere"
        moved = {a.name: a.secret_hash(KEY, "uid") for a in airbyte(example, secrets).actors.values()}
        assert moved == after

    def test_secret_hash_is_salted_per_pipeline(self, example, secrets):
        actor = airbyte(example, secrets).sources[0]
        assert actor.secret_hash(KEY, "uid-1") != actor.secret_hash(KEY, "uid-2")
        assert secrets["mysql"]["password"] not in actor.secret_hash(KEY, "uid-1")

    def test_secret_hash_cannot_be_checked_without_the_operator_key(self, example, secrets):
        """Everything but the key is readable (uid, name, the password candidates): an HMAC under a key
        only the operator holds cannot be recomputed from them, unlike a hash salted with the uid."""
        actor = airbyte(example, secrets).sources[0]
        status_hash = actor.secret_hash(KEY, "uid-1")
        material = hashing.canonical(hashing.secret_material(actor.config))
        public_guesses = {
            hashing.digest(hashing.secret_material(actor.config), salt="uid-1" + actor.name),  # the old scheme
            hashlib.sha256(material.encode()).hexdigest(),
            actor.secret_hash(b"", "uid-1"),
            actor.secret_hash(b"another-key-of-32-bytes-xxxxxxxx", "uid-1"),
        }
        assert status_hash not in public_guesses
        expected = hmac.new(KEY, f"uid-1/{actor.name}\n{material}".encode(), hashlib.sha256).hexdigest()
        assert status_hash == expected

    def test_actor_repr_shows_no_configuration(self, example, secrets):
        values = actor_secret_values(secrets)
        assert values
        actors = list(airbyte(example, secrets).actors.values())
        assert actors
        for actor in actors:
            text = repr(actor) + str(actor)
            assert actor.name in text
            assert not [v for v in values if v in text]
            assert "configuration" not in text

    @pytest.mark.parametrize("shape", ["present", "null", "absent"])
    def test_answers_match_whether_a_field_is_absent_or_null(self, example, secrets, shape):
        """The real server leaves out fields it has no value for (Jackson NON_ABSENT in airbyte-server's
        application.yml); the fake did answer null. Either way, a connection as answered matches what the
        operator wants (no patch on every resync), and liveness reads the same."""
        from retailflow_operator.airbyte_client import Resource
        from retailflow_operator.converge import Inventory, _streams_sorted

        for conn in airbyte(example, secrets).connections:
            answer = json.loads(json.dumps(conn.comparable()))
            for stream in answer["configurations"]["streams"]:
                if shape == "present":
                    stream.update(namespace="retail", mappers=[])
                elif shape == "null":
                    stream.update({k: None for k in ("namespace", "selectedFields", "mappers")})
            answer = {k: v for k, v in answer.items() if v is not None} if shape == "absent" else answer
            if shape == "null":
                answer.update(namespaceFormat=None, dataResidency=None)
            assert airbyte_desired.is_subset(_streams_sorted(conn.comparable()), _streams_sorted(airbyte_desired.answer_comparable(answer))), (
                conn.role, shape)
            assert Inventory._alive(Resource("connection", "c-1", conn.name, {
                **answer, **({"status": None} if shape == "null" else {})}))
        assert not Inventory._alive(Resource("source", "s-1", "x", {} if shape == "absent" else {"configuration": None}))

    def test_masked_answer_still_matches_desired_public_config(self, example, secrets):
        actor = airbyte(example, secrets).destinations[0]
        answer = dict(actor.config, password="**********", extra_default=True)
        assert airbyte_desired.is_subset(actor.public_config, answer)
        answer["schema"] = "public"
        assert not airbyte_desired.is_subset(actor.public_config, answer)


class TestSpecErrors:
    def test_unknown_stream_is_named_with_the_known_ones(self, example, secrets):
        example["spec"]["mysql"]["streams"].append({"name": "invoices"})
        with pytest.raises(SpecError, match=r"spec\.mysql\.streams: unknown stream 'invoices'.*order_items"):
            validation.validate(parse(example["spec"]))

    def test_both_store_location_sources_is_refused(self, example):
        example["spec"]["storeLocations"]["url"] = "https://example.com/s.csv"
        with pytest.raises(SpecError, match="exactly one of s3Key and url"):
            validation.validate(parse(example["spec"]))

    def test_region_airbyte_does_not_know_is_refused(self, example, secrets):
        example["spec"]["lake"]["region"] = "mars-1"
        with pytest.raises(SpecError, match=r"spec\.lake\.region"):
            airbyte(example, secrets)

    @pytest.mark.parametrize(
        ("cron", "quartz"),
        [
            ("0 2 * * *", "0 0 2 * * ?"),
            ("*/15 * * * *", "0 */15 * * * ?"),
            ("0 3 * * 1-5", "0 0 3 ? * 2-6"),
            ("0 3 * * 0", "0 0 3 ? * 1"),
            ("0 6 1 * *", "0 0 6 1 * ?"),
        ],
    )
    def test_unix_cron_becomes_quartz(self, cron, quartz):
        assert quartz_cron(cron) == quartz

    def test_cron_restricting_both_days_is_refused(self):
        with pytest.raises(SpecError, match="day-of-month and day-of-week"):
            quartz_cron("0 2 1 * 1")


class TestVariables:
    def test_default_example_variables(self, example):
        ids = {"connections": {"mysql-to-warehouse": "c1"}, "sources": {"mysql": "s1"}, "destinations": {}}
        out = airflow_variables.build_variables("retailflow", "retail", parse(example["spec"]), ids)
        assert sorted(out) == [f"retailflow_{n}" for n in sorted(catalog.VARIABLE_NAMES)]
        assert out["retailflow_airbyte"]["connections"] == {"mysql-to-warehouse": "c1"}
        assert out["retailflow_warehouse"]["engine"] == "postgres"
        assert out["retailflow_warehouse"]["schema"] == "raw"
        assert [s["primary_key"] for s in out["retailflow_mysql"]["streams"]] == list(PROJECT_STREAMS.values())
        assert out["retailflow_pipeline"] == {
            "namespace": "retailflow",
            "name": "retail",
            "engine": "airbyte",
            "schedule": "0 2 * * *",
            "sync_trigger": "airflow",
        }

    def test_prefix_is_applied_to_every_key(self, example):
        example["spec"]["airflow"]["variablePrefix"] = "shop2_"
        assert all(k.startswith("shop2_") for k in airflow_variables.build_variables("n", "p", parse(example["spec"])))

    def test_variables_hold_no_secret(self, example, secrets):
        text = json.dumps(airflow_variables.build_variables("n", "p", parse(example["spec"])))
        secret_values = [v for role in secrets.values() for k, v in role.items() if hashing.is_secret_key(k)]
        assert secret_values and not any(v in text for v in secret_values)

    def test_direct_engine_writes_no_airbyte_variable(self, example):
        example["spec"]["engine"] = "direct"
        out = airflow_variables.build_variables("n", "p", parse(example["spec"]))
        assert "retailflow_airbyte" not in out
        assert out["retailflow_pipeline"]["engine"] == "direct"

    def test_full_refresh_stream_has_no_cursor(self, example):
        example["spec"]["mysql"]["streams"] = [{"name": "products", "syncMode": "full_refresh_overwrite"}]
        (stream,) = airflow_variables.build_variables("n", "p", parse(example["spec"]))["retailflow_mysql"]["streams"]
        assert stream == {
            "name": "products",
            "sync_mode": "full_refresh_overwrite",
            "cursor_field": None,
            "primary_key": "product_id",
        }

    def test_owner_round_trips_through_the_description(self):
        assert airflow_variables.variable_owner(airflow_variables.variable_description("ns", "p")) == "ns/p"
        assert airflow_variables.variable_owner("set by hand") is None


def _flat(value, out=None):
    """Every leaf value of a parsed model (dataclasses, tuples), as a list."""
    out = [] if out is None else out
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            if f.name != "public_hash":
                _flat(getattr(value, f.name), out)
    elif isinstance(value, (tuple, list)):
        for item in value:
            _flat(item, out)
    else:
        out.append(value)
    return out


def test_parse_applies_every_default_of_the_crd():
    """The operator applies the CRD's defaults itself (the emulated API server does not): each default
    the CRD declares is read by ``parse`` from that path, whatever is added to the CRD later."""
    assert DEFAULTS, "no default read from the CRD"
    minimal = {"engine": "airbyte", "mysql": {"streams": [{"name": "orders"}]}, "warehouse": {}, "lake": {},
               "airbyte": {}, "airflow": {"connectionIds": {}}, "storeLocations": {"url": "https://x/s.csv"}}
    base = _flat(parse(minimal))
    for path, default in DEFAULTS.items():
        sentinel = (not default) if isinstance(default, bool) else default + 1 if isinstance(default, int) else "zz9"
        spec = json.loads(json.dumps(minimal))
        node = spec
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            node = node[0] if isinstance(node, list) else node
        node[leaf] = sentinel
        changed = _flat(parse(spec))
        assert base.count(default) > changed.count(default) and sentinel in changed, path


def test_left_out_ports_and_airflow_names_are_the_ones_the_chart_serves(example):
    """A RetailPipeline that leaves them out reaches MySQL on 3306 and PostgreSQL on 5432 (the ports of
    the chart's Services, global.retailflow.*.port), writes variables prefixed ``retailflow_`` (the
    prefix the chart's own RetailPipeline uses) and names the connections the chart's Airflow defines
    (``AIRFLOW_CONN_<ID>`` in airflow.extraEnv)."""
    spec = example["spec"]
    for section in ("mysql", "warehouse"):
        spec[section].pop("port", None)
    spec["airflow"].pop("variablePrefix", None)
    spec["airflow"].pop("connectionIds", None)
    model = parse(spec)
    chart = yaml.safe_load(CHART_VALUES.read_text())
    served = chart["global"]["retailflow"]
    assert (model.mysql.port, model.warehouse.port) == (3306, 5432)
    assert (served["mysql"]["port"], served["postgresql"]["port"]) == (3306, 5432)
    assert model.airflow.variable_prefix == "retailflow_" == chart["pipeline"]["spec"]["airflow"]["variablePrefix"]
    ids = dataclasses.asdict(model.airflow.connection_ids)
    assert ids == {"mysql": "retailflow_mysql", "warehouse": "retailflow_warehouse", "lake": "retailflow_lake",
                   "airbyte": "retailflow_airbyte"}
    defined = {name.lower() for name in re.findall(r"- name: AIRFLOW_CONN_(\w+)", chart["airflow"]["extraEnv"])}
    assert set(ids.values()) <= defined, defined


def test_variable_prefix_airflow_would_mask_is_refused(example):
    example["spec"]["airflow"]["variablePrefix"] = "shop_secret_"
    with pytest.raises(SpecError, match=r"spec\.airflow\.variablePrefix: .*'secret'"):
        validation.validate(parse(example["spec"]))
