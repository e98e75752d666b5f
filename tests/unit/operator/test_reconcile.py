"""The reconcile pass against in-memory stand-ins of the two clients (no server): what it writes, and when not."""

from __future__ import annotations

import copy
import itertools
import json

import pytest
from retailflow_operator import builders as b
from retailflow_operator.reconcile import Peers, Pipeline, Reconciler
from retailflow_operator.status import conditions, merge_diff

_ids = itertools.count()


class MemoryAirbyte:
    """An in-memory stand-in for AirbyteClient: stores what is sent, masks secrets like Airbyte."""

    def __init__(self):
        self.store = {"source": {}, "destination": {}, "connection": {}}
        self.writes: list[tuple[str, str, str]] = []

    def _masked(self, res):
        res = copy.deepcopy(res)
        if "configuration" in res:
            res["configuration"] = {
                k: ("**********" if b.is_secret_key(k) else v) for k, v in res["configuration"].items()
            }
        return res

    def list_sources(self, ws):
        return [self._masked(r) for r in self.store["source"].values()]

    def list_destinations(self, ws):
        return [self._masked(r) for r in self.store["destination"].values()]

    def list_connections(self, ws):
        return [self._masked(r) for r in self.store["connection"].values()]

    def add(self, kind, body):
        rid = f"{kind}-{next(_ids)}"
        self.store[kind][rid] = body | {f"{kind}Id": rid}
        return self.store[kind][rid]

    def create_actor(self, actor, ws):
        self.writes.append(("create", actor.kind, actor.name))
        return self.add(actor.kind, {"name": actor.name, "configuration": actor.config})

    def patch_actor(self, actor, rid):
        self.writes.append(("patch", actor.kind, actor.name))
        self.store[actor.kind][rid]["configuration"] = actor.config
        return self.store[actor.kind][rid]

    def delete(self, kind, rid):
        self.writes.append(("delete", kind, self.store[kind][rid]["name"]))
        del self.store[kind][rid]

    def create_connection(self, req):
        self.writes.append(("create", "connection", req.name))
        return self.add("connection", b.dump(req))

    def patch_connection(self, rid, req):
        self.writes.append(("patch", "connection", req.name))
        self.store["connection"][rid].update(b.dump(req))
        return self.store["connection"][rid]


class MemoryAirflow:
    def __init__(self):
        self.vars: dict[str, dict] = {}
        self.writes = 0

    def list_variables(self, prefix):
        return {k: dict(v) for k, v in self.vars.items() if k.startswith(prefix)}

    def upsert_variables(self, entities):
        if entities:
            self.writes += 1
            for e in entities:
                self.vars[e["key"]] = {"value": e["value"], "description": e["description"]}

    def delete_variables(self, keys):
        if keys:
            self.writes += 1
            for k in keys:
                self.vars.pop(k, None)


@pytest.fixture()
def peers():
    return Peers(airbyte=MemoryAirbyte(), airflow=MemoryAirflow())


def run(example, secrets, peers, status=None, apply=True):
    pipeline = Pipeline("retailflow", "retail", "uid-1", example["spec"], status or {})
    result = Reconciler(pipeline, peers, secrets, "rf", apply=apply).run()
    new_status = {"airbyte": result.ids, "secretHashes": result.secret_hashes, "airflowVariables": result.variables}
    return result, new_status


def test_second_pass_with_nothing_changed_writes_nothing(example, secrets, peers):
    _, status = run(example, secrets, peers)
    assert len(peers.airbyte.writes) == 8 and peers.airflow.writes == 1
    peers.airbyte.writes.clear()
    peers.airflow.writes = 0
    result, _ = run(example, secrets, peers, status)
    assert result.changes == [] and peers.airbyte.writes == [] and peers.airflow.writes == 0


def test_plan_mode_lists_changes_and_writes_nothing(example, secrets, peers):
    result, _ = run(example, secrets, peers, apply=False)
    assert len(result.changes) == 8 + 6
    assert peers.airbyte.writes == [] and peers.airflow.writes == 0


def test_duplicate_left_by_a_lost_answer_is_removed_keeping_the_known_one(example, secrets, peers):
    _, status = run(example, secrets, peers)
    known = status["airbyte"]["sources"]["mysql"]
    twin = peers.airbyte.add("source", copy.deepcopy(peers.airbyte.store["source"][known]) | {"sourceId": None})
    peers.airbyte.writes.clear()
    result, status2 = run(example, secrets, peers, status)
    assert peers.airbyte.writes == [("delete", "source", twin["name"])]
    assert status2["airbyte"]["sources"]["mysql"] == known


def test_rotated_secret_patches_only_its_resource(example, secrets, peers):
    _, status = run(example, secrets, peers)
    peers.airbyte.writes.clear()
    secrets["mysql"]["password"] = "rotated"
    run(example, secrets, peers, status)
    assert peers.airbyte.writes == [("patch", "source", "rf/retailflow/retail/mysql")]


def test_removed_store_locations_deletes_its_connections_then_source(example, secrets, peers):
    _, status = run(example, secrets, peers)
    peers.airbyte.writes.clear()
    del example["spec"]["storeLocations"]
    result, _ = run(example, secrets, peers, status)
    assert [w[:2] for w in peers.airbyte.writes] == [("delete", "connection")] * 2 + [("delete", "source")]
    assert ("delete", "variable", "retailflow_store_locations") in {
        (c.action, c.target, c.name) for c in result.changes
    }
    assert "retailflow_store_locations" not in peers.airflow.vars


def test_variable_owned_by_another_pipeline_is_refused(example, secrets, peers):
    peers.airflow.vars["retailflow_mysql"] = {"value": "{}", "description": b.variable_description("other", "p")}
    with pytest.raises(b.SpecError, match="belongs to RetailPipeline other/p"):
        run(example, secrets, peers)


def test_prefix_change_moves_the_variables_and_spares_another_pipelines(example, secrets, peers):
    _, status = run(example, secrets, peers)
    old_keys = set(status["airflowVariables"])
    # since then another pipeline took over one of the old keys
    taken = "retailflow_lake"
    peers.airflow.vars[taken] = {"value": "{}", "description": b.variable_description("other", "p")}
    example["spec"]["airflow"]["variablePrefix"] = "shop_"
    _, status2 = run(example, secrets, peers, status)
    assert all(k.startswith("shop_") for k in status2["airflowVariables"])
    assert set(peers.airflow.vars) == set(status2["airflowVariables"]) | {taken}
    assert b.variable_owner(peers.airflow.vars[taken]["description"]) == "other/p"
    assert not (old_keys - {taken}) & set(peers.airflow.vars)


def test_hand_edited_variable_is_restored(example, secrets, peers):
    _, status = run(example, secrets, peers)
    good = peers.airflow.vars["retailflow_warehouse"]["value"]
    peers.airflow.vars["retailflow_warehouse"]["value"] = json.dumps({"schema": "oops"})
    run(example, secrets, peers, status)
    assert peers.airflow.vars["retailflow_warehouse"]["value"] == good


def test_merge_diff_removes_stale_keys_and_skips_equal_ones():
    old = {"phase": "Ready", "airbyte": {"connections": {"a": "1", "b": "2"}}, "plan": {"x": 1}}
    new = {"phase": "Ready", "airbyte": {"connections": {"a": "1"}}, "plan": None}
    assert merge_diff(old, new) == {"airbyte": {"connections": {"b": None}}, "plan": None}


def test_condition_transition_time_moves_only_on_a_flip():
    first = conditions(None, {"Ready": ("True", "Reconciled", "ok")})
    first[0]["lastTransitionTime"] = "2020-01-01T00:00:00Z"
    same = conditions(first, {"Ready": ("True", "Reconciled", "still ok")})
    flipped = conditions(first, {"Ready": ("False", "AirbyteUnavailable", "down")})
    assert same[0]["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    assert flipped[0]["lastTransitionTime"] != "2020-01-01T00:00:00Z"


def test_a_pass_that_ends_in_its_starting_phase_does_not_stay_reconciling():
    """The pass marks Reconciling itself before its first write; its final patch must undo that."""
    import kopf
    from retailflow_operator import handlers
    from retailflow_operator.pipeline import Outcome

    before = {"phase": "Ready", "observedGeneration": 1}
    patch = kopf.Patch()
    handlers._apply(
        Outcome({"phase": "Ready", "observedGeneration": 1}, written={"phase": "Reconciling"}), before, patch, {}
    )
    assert patch["status"]["phase"] == "Ready"

    untouched = kopf.Patch()  # a pass that wrote nothing patches nothing
    handlers._apply(Outcome({"phase": "Ready", "observedGeneration": 1}), before, untouched, {})
    assert "status" not in untouched
