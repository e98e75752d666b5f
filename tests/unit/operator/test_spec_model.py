"""The typed spec model: parsed once at the handler's door, carrying the CRD's defaults, passed down as is."""

from __future__ import annotations

from typing import Any

import kopf
import pytest
from retailflow_operator import airflow_variables, handlers, hashing, passes, secret_refs, spec_model, validation
from retailflow_operator.converge import Result
from retailflow_operator.spec_model import AirbyteSpec, AirflowSpec, PipelineSpec, parse

# CRD default path -> where the parsed model holds it.
MODEL_AT = {
    "engine": lambda m: m.engine,
    "mysql.port": lambda m: m.mysql.port,
    "mysql.credentialsSecretRef.usernameKey": lambda m: dict(m.mysql.credentials.keys)["username"],
    "mysql.credentialsSecretRef.passwordKey": lambda m: dict(m.mysql.credentials.keys)["password"],
    "mysql.streams.syncMode": lambda m: m.mysql.streams[0].sync_mode,
    "warehouse.port": lambda m: m.warehouse.port,
    "warehouse.schema": lambda m: m.warehouse.schema,
    "warehouse.sslMode": lambda m: m.warehouse.ssl_mode,
    "warehouse.credentialsSecretRef.usernameKey": lambda m: dict(m.warehouse.credentials.keys)["username"],
    "warehouse.credentialsSecretRef.passwordKey": lambda m: dict(m.warehouse.credentials.keys)["password"],
    "lake.prefix": lambda m: m.lake.prefix,
    "lake.format": lambda m: m.lake.format,
    "lake.region": lambda m: m.lake.region,
    "lake.credentialsSecretRef.accessKeyIdKey": lambda m: dict(m.lake.credentials.keys)["access_key_id"],
    "lake.credentialsSecretRef.secretAccessKeyKey": lambda m: dict(m.lake.credentials.keys)["secret_access_key"],
    "airbyte.syncTrigger": lambda m: m.airbyte.sync_trigger,
    "airbyte.credentialsSecretRef.clientIdKey": lambda m: dict(m.airbyte.credentials.keys)["client_id"],
    "airbyte.credentialsSecretRef.clientSecretKey": lambda m: dict(m.airbyte.credentials.keys)["client_secret"],
    "airflow.variablePrefix": lambda m: m.airflow.variable_prefix,
    "airflow.connectionIds.airbyte": lambda m: m.airflow.connection_ids.airbyte,
    "airflow.connectionIds.mysql": lambda m: m.airflow.connection_ids.mysql,
    "airflow.connectionIds.warehouse": lambda m: m.airflow.connection_ids.warehouse,
    "airflow.connectionIds.lake": lambda m: m.airflow.connection_ids.lake,
    "airflow.credentialsSecretRef.usernameKey": lambda m: dict(m.airflow.credentials.keys)["username"],
    "airflow.credentialsSecretRef.passwordKey": lambda m: dict(m.airflow.credentials.keys)["password"],
    "schedule": lambda m: m.schedule,
    "suspend": lambda m: m.suspend,
    "deletionPolicy": lambda m: m.deletion_policy,
}


def crd_defaults(schema: dict) -> dict[str, Any]:
    def walk(node, path):
        if "default" in node:
            yield path, node["default"]
        for key, child in (node.get("properties") or {}).items():
            yield from walk(child, f"{path}.{key}" if path else key)
        if "items" in node:
            yield from walk(node["items"], path)

    return dict(walk(schema["properties"]["spec"], ""))


def test_the_parsed_model_carries_every_crd_default(schema):
    """A spec that sets nothing defaulted (as an API server that skips defaulting delivers it)."""
    model = parse({"mysql": {"streams": [{"name": "orders"}], "port": None}, "lake": "not an object", "airbyte": {}})
    defaults = crd_defaults(schema)
    assert set(defaults) == set(MODEL_AT), "a CRD default the model does not carry (or the other way round)"
    assert {path: MODEL_AT[path](model) for path in defaults} == defaults


def test_a_spec_without_an_airbyte_block_has_no_airbyte(example):
    """engine direct may leave spec.airbyte out (a lite install has no Airbyte): the model says so,
    instead of an Airbyte of defaults that every layer below would try to reach."""
    example["spec"]["engine"] = "direct"
    del example["spec"]["airbyte"]
    model = parse(example["spec"])
    assert model.airbyte is None
    assert "airbyte" not in {ref.role for ref in secret_refs.secret_refs(model)}
    validation.validate(model)
    assert airflow_variables.build_variables("ns", "p", model)["retailflow_pipeline"]["sync_trigger"] == "airflow"


def test_engine_direct_reads_only_the_secrets_it_hands_out(example):
    """The MySQL, warehouse and lake credentials go into Airbyte's source and destinations only: with
    engine direct a pass reads Airflow's Secret, plus Airbyte's while it removes what is left there."""
    airbyte_model = parse(example["spec"])
    assert [r.role for r in secret_refs.secret_refs(airbyte_model)] == ["mysql", "warehouse", "lake", "airflow", "airbyte"]
    example["spec"]["engine"] = "direct"
    model = parse(example["spec"])
    assert [r.role for r in secret_refs.secret_refs(model, airbyte=False)] == ["airflow"]
    assert [r.role for r in secret_refs.secret_refs(model, airbyte=True)] == ["airflow", "airbyte"]


def test_set_fields_win_over_the_defaults(example):
    example["spec"]["warehouse"]["port"] = 6543
    example["spec"]["airflow"]["variablePrefix"] = "shop2_"
    model = parse(example["spec"])
    assert model.warehouse.port == 6543 and model.airflow.variable_prefix == "shop2_"
    assert model.public_hash == hashing.digest({k: v for k, v in example["spec"].items() if k != "suspend"})


def test_a_pass_parses_once_and_no_layer_below_the_handler_sees_a_dict(example, secrets, monkeypatch):
    parsed: list[PipelineSpec] = []
    seen: dict[str, list[Any]] = {}
    real_parse = spec_model.parse

    def counting_parse(spec):
        parsed.append(real_parse(spec))
        return parsed[-1]

    def spy(name, result=None, real=None):
        def called(*args, **_):
            seen.setdefault(name, []).append(args)
            return real(*args) if real else result

        return called

    class RecordingConverger:
        def __init__(self, p, *_, **__):
            seen.setdefault("Converger", []).append((p.spec,))

        def converge(self):
            return Result()

        def applied_status(self):
            return {}

    monkeypatch.setattr(spec_model, "parse", counting_parse)
    monkeypatch.setattr(passes, "validate", spy("validate", real=validation.validate))
    monkeypatch.setattr(passes, "secret_refs", spy("secret_refs", real=secret_refs.secret_refs))
    monkeypatch.setattr(passes.trust, "check_hosts", spy("check_hosts"))
    monkeypatch.setattr(passes.kube, "read_secrets", spy("read_secrets", result=secrets))
    monkeypatch.setattr(passes, "peers_for", spy("peers_for"))
    monkeypatch.setattr(passes, "Converger", RecordingConverger)

    patch = kopf.Patch()
    handlers.handle_change(
        body=kopf.Body({
            "metadata": {"namespace": "retailflow", "name": "retail", "uid": "uid-parse-once", "generation": 1},
            "spec": example["spec"],
            "status": {},
        }),
        patch=patch,
        retry=0,
        reason="create",
    )
    passes.forget("uid-parse-once")

    assert len(parsed) == 1
    model = parsed[0]
    assert [a[0] for a in seen["validate"]] == [model]
    assert [a[0] for a in seen["secret_refs"]] == [model]
    assert [a[0] for a in seen["check_hosts"]] == [model]
    assert [a[0] for a in seen["Converger"]] == [model]
    ((airbyte, airflow, *_),) = seen["peers_for"]
    assert isinstance(airbyte, AirbyteSpec) and isinstance(airflow, AirflowSpec)
    assert patch["status"]["phase"] == "Ready"
    assert patch["status"]["specHash"] == model.public_hash


@pytest.mark.parametrize("layer", ["validate", "secret_refs", "build_variables"])
def test_the_builders_refuse_a_raw_dict(example, layer):
    """A dict handed below the handler fails loudly instead of being read with fallbacks."""
    call = {
        "validate": lambda s: validation.validate(s),
        "secret_refs": lambda s: secret_refs.secret_refs(s),
        "build_variables": lambda s: airflow_variables.build_variables("n", "p", s),
    }[layer]
    call(parse(example["spec"]))  # the model works
    with pytest.raises(AttributeError):
        call(example["spec"])
