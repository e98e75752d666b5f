"""Admission of RetailPipelines written by hand: the CRD's enums, patterns and CEL rules
(``x-kubernetes-validations``, evaluated by cel-python in the emulated API server) refuse what the
operator would reject or run wrongly, with a message that says what to change."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from support.airbyte_fake import mysql_tables
from support.kube_emulator import CRD_PATH, REPO_ROOT, EmulatedKubernetesAPI

EXAMPLE = REPO_ROOT / "operator" / "examples" / "retailpipeline.yaml"


def example() -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
    return copy.deepcopy(next(d for d in docs if d.get("kind") == "RetailPipeline"))


def spec_of(edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    body = example()
    edit(body["spec"])
    return body


def stream(spec: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in spec["mysql"]["streams"] if s["name"] == name)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(spec: dict[str, Any]) -> None:
        node = spec
        *parents, last = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return edit


REFUSED: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "a stream that is not a table": (
        lambda s: s["mysql"]["streams"].append({"name": "invoices"}),
        "invoices"),
    "a deduplicated stream keyed on another column": (
        lambda s: stream(s, "orders").update(primaryKey="customer_id"),
        "primaryKey must be the table's own key"),
    "a cursor that does not change on update": (
        lambda s: stream(s, "orders").update(cursorField="ordered_at"),
        "cursorField must be updated_at"),
    "a cursor on a full-refresh stream": (
        lambda s: stream(s, "products").update(syncMode="full_refresh_overwrite"),
        "cursorField applies only to the incremental sync modes"),
    "a stream listed twice": (
        lambda s: s["mysql"]["streams"].append({"name": "orders"}),
        "Duplicate value"),
    "minute 60": (_set("schedule", "60 2 * * *"), "schedule must be five cron fields"),
    "hour 24": (_set("schedule", "0 24 * * *"), "hour 0-23"),
    "day-of-month 32": (_set("schedule", "0 2 32 * *"), "day-of-month 1-31"),
    "month 13": (_set("schedule", "0 2 * 13 *"), "month 1-12"),
    "six fields": (_set("schedule", "0 0 2 * * ?"), "five cron fields"),
    "Quartz-impossible schedule run by Airbyte": (
        lambda s: (s.__setitem__("schedule", "0 2 1 * 1"), s["airbyte"].__setitem__("syncTrigger", "airbyte")),
        "cannot restrict both day-of-month and day-of-week"),
    "syncTrigger airbyte without Airbyte": (
        lambda s: (s.__setitem__("engine", "direct"), s["airbyte"].__setitem__("syncTrigger", "airbyte")),
        "needs engine airbyte"),
    "a variable prefix Airflow masks": (_set("airflow.variablePrefix", "shop_secret_"), "Airflow masks the values"),
    "both store-location sources": (_set("storeLocations.url", "https://example.com/stores.csv"),
                                    "set exactly one of storeLocations.s3Key"),
    "no store-location source": (lambda s: s.__setitem__("storeLocations", {}), "set exactly one"),
    "an unknown sync mode": (lambda s: stream(s, "orders").update(syncMode="cdc"), "cdc"),
    "an unknown deletion policy": (_set("deletionPolicy", "Orphan"), "Orphan"),
    "a relative token URL": (_set("airbyte.tokenUrl", "/api/public/v1/applications/token"), "tokenUrl"),
    "a workspace id that is not a uuid": (_set("airbyte.workspaceId", "default"), "workspaceId"),
    "a port out of range": (_set("warehouse.port", 70000), "port"),
    "an unknown warehouse ssl mode": (_set("warehouse.sslMode", "verify-full"), "verify-full"),
    "a lake prefix with a leading slash": (_set("lake.prefix", "/raw"), "prefix"),
    # fields the operator derives a remote URL, path or key from
    "an Airbyte URL without the public API root": (
        _set("airbyte.apiUrl", "http://retailflow-airbyte-server-svc:8001"), "must be Airbyte's public API root"),
    "an Airbyte URL with a path the client appends": (
        _set("airbyte.apiUrl", "http://retailflow-airbyte-server-svc:8001/api/public/v1/sources"),
        "the operator appends /sources, /destinations, /connections and /applications/token itself"),
    "an Airbyte URL with a query": (
        _set("airbyte.apiUrl", "http://airbyte:8001/api/public/v1?workspace=x"), "ending in /api/public/v1 with no query"),
    "an Airflow URL with /api/v2": (
        _set("airflow.apiUrl", "http://retailflow-api-server:8080/api/v2"), "with no /api/v2, /auth or query"),
    "an Airflow URL with the token path": (
        _set("airflow.apiUrl", "http://retailflow-api-server:8080/auth/token"), "appends /api/v2/variables and /auth/token"),
    "an s3Key that is a URL": (
        _set("storeLocations.s3Key", "s3://retailflow-lake/store_locations/store_locations.csv"), "not a URL"),
    "an s3Key that is a glob": (_set("storeLocations.s3Key", "store_locations/*.csv"), "remove the glob characters"),
    "an s3Key that names the bucket": (
        lambda s: s["storeLocations"].update(s3Key=s["lake"]["bucket"] + "/store_locations/store_locations.csv"),
        "leave the bucket's name out"),
    "an s3Key with a .. segment": (_set("storeLocations.s3Key", "store_locations/../stores.csv"), "no empty (//), . or .."),
    "an s3Key with an empty segment": (_set("storeLocations.s3Key", "store_locations//stores.csv"), "plain key"),
}


@pytest.fixture(scope="module")
def kube() -> Any:
    """The emulated Kubernetes API serving the operator chart's CRD."""
    with EmulatedKubernetesAPI(CRD_PATH, set_env=False) as api:
        yield api


@pytest.mark.parametrize("case", sorted(REFUSED), ids=lambda c: c.replace(" ", "-"))
def test_a_spec_that_cannot_work_is_refused_saying_what_to_change(kube: EmulatedKubernetesAPI, case: str) -> None:
    edit, message = REFUSED[case]
    body = spec_of(edit)
    body["metadata"] = {"name": "hand-written", "namespace": "admission"}
    resp = kube.post_rp(body)
    assert resp.status_code == 422, resp.text
    assert message in resp.json()["message"], resp.json()["message"]
    assert kube.get_rp("admission", "hand-written") is None


@pytest.mark.parametrize("schedule", ["0 2 * * *", "*/15 * * * *", "0 6-18/2 * * 1-5", "30 1 1,15 * *", "0 0 * * 0,7"])
def test_valid_schedules_are_admitted(kube: EmulatedKubernetesAPI, schedule: str) -> None:
    body = spec_of(_set("schedule", schedule))
    body["metadata"] = {"name": f"ok-{abs(hash(schedule)) % 10**6}", "namespace": "admission"}
    assert kube.post_rp(body).status_code == 201


def test_both_day_fields_are_fine_when_airflow_triggers(kube: EmulatedKubernetesAPI) -> None:
    body = spec_of(_set("schedule", "0 2 1 * 1"))
    body["metadata"] = {"name": "airflow-cron", "namespace": "admission"}
    assert kube.post_rp(body).status_code == 201


class TestATypoInAKey:
    """``deletionPolicyy: Retain`` (typo): what the user gets depends on the client's field validation."""

    def body(self, name: str) -> dict[str, Any]:
        body = spec_of(_set("deletionPolicyy", "Retain"))
        body["metadata"] = {"name": name, "namespace": "admission"}
        return body

    def test_strict_validation_refuses_it(self, kube: EmulatedKubernetesAPI) -> None:
        resp = kube.post_rp(self.body("typo-strict"), field_validation="Strict")
        assert resp.status_code == 422 and 'unknown field "spec.deletionPolicyy"' in resp.json()["message"]

    def test_without_strict_validation_it_is_pruned_and_the_default_applies(self, kube: EmulatedKubernetesAPI) -> None:
        """What Helm gets: a warning header it does not show, and deletionPolicy Delete."""
        resp = kube.post_rp(self.body("typo-warn"))
        assert resp.status_code == 201
        assert 'unknown field \\"spec.deletionPolicyy\\"' in resp.headers["Warning"] or \
            'unknown field "spec.deletionPolicyy"' in resp.headers["Warning"]
        assert resp.json()["spec"]["deletionPolicy"] == "Delete" and "deletionPolicyy" not in resp.json()["spec"]


def test_the_stream_rules_match_the_mysql_schema() -> None:
    """The CRD's tables, keys and cursor are those of generator/retailflow_generator/schema.sql."""
    crd = yaml.safe_load(CRD_PATH.read_text())
    items = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["mysql"][
        "properties"]["streams"]["items"]
    tables = mysql_tables()
    assert items["properties"]["name"]["enum"] == list(tables)
    pk_rule = items["x-kubernetes-validations"][0]["rule"]
    for table, info in tables.items():
        assert f"'{table}': '{info['primary_key'][0]}'" in pk_rule and len(info["primary_key"]) == 1
        assert "updated_at" in info["columns"]
    assert Path(REPO_ROOT / "generator" / "retailflow_generator" / "schema.sql").read_text().count(
        "on update current_timestamp(6)") == len(tables)


ADMITTED: dict[str, Callable[[dict[str, Any]], None]] = {
    "an Airbyte behind a path prefix": _set("airbyte.apiUrl", "https://data.example.com/airbyte/api/public/v1"),
    "an Airflow under a sub-path": _set("airflow.apiUrl", "https://data.example.com/airflow"),
    "an Airflow host named api": _set("airflow.apiUrl", "http://api.airflow.svc:8080"),
    "a nested s3Key": _set("storeLocations.s3Key", "store_locations/2026/stores v2.csv"),
}


@pytest.mark.parametrize("case", sorted(ADMITTED), ids=lambda c: c.replace(" ", "-"))
def test_derived_fields_in_their_documented_form_are_admitted(kube: EmulatedKubernetesAPI, case: str) -> None:
    body = spec_of(ADMITTED[case])
    body["metadata"] = {"name": f"ok-{case.replace(' ', '-').lower()}", "namespace": "admission"}
    resp = kube.post_rp(body)
    assert resp.status_code == 201, resp.text


def test_a_name_longer_than_airbytes_limit_allows_once_prefixed_is_refused(kube: EmulatedKubernetesAPI) -> None:
    """Airbyte names are rf/<namespace>/<name>/<role>, at most 256 characters (its varchar(256)): with a
    namespace of 63 characters and the longest role, a pipeline name may have 160."""
    body = example()
    body["metadata"] = {"name": "p" * 161, "namespace": "admission"}
    resp = kube.post_rp(body)
    assert resp.status_code == 422 and "metadata.name" in resp.json()["message"], resp.text
    body["metadata"] = {"generateName": "p" * 156, "namespace": "admission"}
    assert kube.post_rp(body).status_code == 422
    body["metadata"] = {"name": "p" * 160, "namespace": "admission"}
    assert kube.post_rp(body).status_code == 201


def test_the_name_limit_is_exactly_what_the_operators_names_need() -> None:
    """The CRD's metadata.name maxLength, the operator's naming and Airbyte's limit agree: the longest name
    the operator derives (longest role, a 63-character namespace) is 256 characters at the limit."""
    from retailflow_operator import airbyte_desired, naming
    from retailflow_operator.errors import SpecError
    from retailflow_operator.spec_model import parse

    crd = yaml.safe_load(CRD_PATH.read_text())
    limit = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["metadata"]["properties"]["name"][
        "maxLength"]
    secrets = {"mysql": {"username": "u", "password": "p"}, "warehouse": {"username": "u", "password": "p"},
               "lake": {"access_key_id": "a", "secret_access_key": "s"}}
    spec = parse(example()["spec"])
    state = airbyte_desired.build_airbyte("n" * 63, "p" * limit, spec, secrets)
    longest = max(len(r.name) for r in (*state.sources, *state.destinations, *state.connections))
    assert longest == naming.AIRBYTE_NAME_LIMIT == 256
    # a longer resource prefix (RETAILFLOW_RESOURCE_PREFIX) no longer fits: the operator says so
    with pytest.raises(SpecError, match=r"over Airbyte's 256: use a name \(or resource prefix\) 3 characters shorter"):
        airbyte_desired.build_airbyte("n" * 63, "p" * limit, spec, secrets, prefix="rf-eu")


def test_variable_keys_fit_airflows_key_column() -> None:
    """Airflow stores a variable's key in a String(250) column (airflow.models.base.ID_LEN): the longest
    prefix the CRD admits plus the longest variable name fits."""
    from retailflow_operator.catalog import VARIABLE_NAMES

    crd = yaml.safe_load(CRD_PATH.read_text())
    prefix = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["airflow"][
        "properties"]["variablePrefix"]
    assert prefix["maxLength"] + max(len(n) for n in VARIABLE_NAMES) <= 250
