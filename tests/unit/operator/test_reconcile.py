"""The reconcile pass with the real Airbyte client against the Airbyte fake (in-process, loopback) and an
in-memory stand-in of the Airflow client: what it writes, and when not."""

from __future__ import annotations

import json

import pytest
from retailflow_operator import airbyte_desired, airflow_variables
from retailflow_operator.airbyte_client import AirbyteClient
from retailflow_operator.converge import Converger, Peers, Pipeline
from retailflow_operator.errors import SpecError
from retailflow_operator.spec_model import parse
from retailflow_operator.status import conditions, merge_diff
from support.airbyte_fake import AirbyteFake

KEY = b"k" * 32


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


class Airbyte:
    """The Airbyte fake plus the operator's real client, and the writes as (action, kind, name)."""

    def __init__(self, fake: AirbyteFake) -> None:
        self.fake = fake
        self.client = AirbyteClient(fake.server_url, None, fake.client_id, fake.client_secret, 5)

    @property
    def writes(self) -> list[tuple[str, str, str]]:
        return [w for w in self._writes()]

    def _writes(self):
        action = {"POST": "create", "PATCH": "patch", "DELETE": "delete"}
        for method, path, status in self.fake.calls:
            if method in action and status < 300 and not path.startswith("/applications"):
                yield action[method], path.split("/")[1][:-1]

    def clear(self) -> None:
        self.fake.calls.clear()

    def names(self, kind: str) -> set[str]:
        return {r["name"] for r in self.fake.live(kind).values()}


@pytest.fixture()
def fake():
    """The Airbyte fake (tests/support/airbyte_fake.py), fresh per test."""
    with AirbyteFake() as f:
        yield f


@pytest.fixture()
def airbyte(fake):
    return Airbyte(fake)


@pytest.fixture()
def peers(airbyte):
    return Peers(airbyte=airbyte.client, airflow=MemoryAirflow())


@pytest.fixture()
def example(example, fake, secrets):
    example["spec"]["airbyte"]["workspaceId"] = fake.workspace_id
    secrets["airbyte"] = {"client_id": fake.client_id, "client_secret": fake.client_secret}
    return example


def run(example, secrets, peers, status=None, apply=True):
    pipeline = Pipeline("retailflow", "retail", "uid-1", parse(example["spec"]), status or {})
    result = Converger(pipeline, peers, secrets, "rf", apply=apply, hmac_key=KEY).converge()
    new_status = {"airbyte": result.ids, "secretHashes": result.secret_hashes, "airflowVariables": result.variables}
    return result, new_status


def test_second_pass_with_nothing_changed_writes_nothing(example, secrets, peers, airbyte):
    _, status = run(example, secrets, peers)
    assert len(airbyte.writes) == 8 and peers.airflow.writes == 1
    airbyte.clear()
    peers.airflow.writes = 0
    result, _ = run(example, secrets, peers, status)
    assert result.changes == [] and airbyte.writes == [] and peers.airflow.writes == 0


def test_plan_mode_lists_changes_and_writes_nothing(example, secrets, peers, airbyte):
    result, _ = run(example, secrets, peers, apply=False)
    assert len(result.changes) == 8 + 6 + 1  # and the registry entry
    assert airbyte.writes == [] and peers.airflow.writes == 0


def test_duplicate_left_by_a_lost_answer_is_removed_keeping_the_known_one(example, secrets, peers, airbyte, fake):
    _, status = run(example, secrets, peers)
    known = status["airbyte"]["sources"]["mysql"]
    actor = airbyte_desired.build_airbyte("retailflow", "retail", parse(example["spec"]), secrets).actors[("source", "mysql")]
    twin = airbyte.client.create_actor(actor, fake.workspace_id)  # as if its answer had been lost
    airbyte.clear()
    result, status2 = run(example, secrets, peers, status)
    assert airbyte.writes == [("delete", "source")]
    assert [c.name for c in result.changes] == [twin.name]
    assert status2["airbyte"]["sources"]["mysql"] == known and known in fake.live("sources")


def test_rotated_secret_patches_only_its_resource(example, secrets, peers, airbyte, fake):
    _, status = run(example, secrets, peers)
    airbyte.clear()
    secrets["mysql"]["password"] = "rotated"
    result, _ = run(example, secrets, peers, status)
    assert airbyte.writes == [("patch", "source")]
    assert [c.name for c in result.changes] == ["rf/retailflow/retail/mysql"]
    assert fake.sources[status["airbyte"]["sources"]["mysql"]]["configuration"]["password"] == "rotated"


def test_removed_store_locations_deletes_its_connections_then_source(example, secrets, peers, airbyte):
    _, status = run(example, secrets, peers)
    airbyte.clear()
    del example["spec"]["storeLocations"]
    result, _ = run(example, secrets, peers, status)
    assert airbyte.writes == [("delete", "connection")] * 2 + [("delete", "source")]
    assert airbyte.names("sources") == {"rf/retailflow/retail/mysql"}
    assert ("delete", "variable", "retailflow_store_locations") in {
        (c.action, c.target, c.name) for c in result.changes
    }
    assert "retailflow_store_locations" not in peers.airflow.vars


def test_variable_owned_by_another_pipeline_is_refused(example, secrets, peers):
    peers.airflow.vars["retailflow_mysql"] = {"value": "{}", "description": airflow_variables.variable_description("other", "p")}
    with pytest.raises(SpecError, match="belongs to RetailPipeline other/p"):
        run(example, secrets, peers)


def test_prefix_change_moves_the_variables_and_spares_another_pipelines(example, secrets, peers):
    _, status = run(example, secrets, peers)
    old_keys = set(status["airflowVariables"])
    # since then another pipeline took over one of the old keys
    taken = "retailflow_lake"
    peers.airflow.vars[taken] = {"value": "{}", "description": airflow_variables.variable_description("other", "p")}
    example["spec"]["airflow"]["variablePrefix"] = "shop_"
    _, status2 = run(example, secrets, peers, status)
    assert all(k.startswith("shop_") for k in status2["airflowVariables"])
    assert set(peers.airflow.vars) == set(status2["airflowVariables"]) | {taken, airflow_variables.REGISTRY_KEY}
    assert airflow_variables.variable_owner(peers.airflow.vars[taken]["description"]) == "other/p"
    assert not (old_keys - {taken}) & set(peers.airflow.vars)
    # the schedules now find the pipeline under its new prefix only
    assert airflow_variables.registry_entries(peers.airflow.vars[airflow_variables.REGISTRY_KEY]["value"]) == {"shop_": "retailflow/retail"}


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
    from retailflow_operator.passes import Outcome

    before = {"phase": "Ready", "observedGeneration": 1}
    patch = kopf.Patch()
    handlers._apply(
        Outcome({"phase": "Ready", "observedGeneration": 1}, written={"phase": "Reconciling"}), before, patch, {}
    )
    assert patch["status"]["phase"] == "Ready"

    untouched = kopf.Patch()  # a pass that wrote nothing patches nothing
    handlers._apply(Outcome({"phase": "Ready", "observedGeneration": 1}), before, untouched, {})
    assert "status" not in untouched


def test_forgetting_a_pipeline_during_a_pass_never_lets_a_second_pass_in():
    """The finalizer forgets a pipeline while a drift pass may hold or wait for its lock."""
    import threading
    import time

    from retailflow_operator import passes

    inside, release = threading.Event(), threading.Event()
    active, seen = [0], []

    def one_pass() -> None:
        with passes.lock("uid-lock"):
            active[0] += 1
            seen.append(active[0])
            inside.set()
            release.wait(5)
            active[0] -= 1

    first = threading.Thread(target=one_pass)
    first.start()
    assert inside.wait(5)
    passes.forget("uid-lock")
    second = threading.Thread(target=one_pass)
    second.start()
    deadline = time.monotonic() + 5  # the second pass waits on the first's lock, forgotten or not
    while passes._locks.get("uid-lock") is None or passes._locks["uid-lock"].users < 2:
        assert time.monotonic() < deadline, "the second pass never queued on the first pass's lock"
        time.sleep(0.01)
    assert seen == [1]
    release.set()
    first.join(5)
    second.join(5)
    assert seen == [1, 1]
    assert "uid-lock" not in passes._locks  # and the entry goes once nobody uses it


def test_a_timer_pass_queued_behind_the_create_pass_names_its_repair_a_drift():
    """kopf hands a drift timer that waited for the pipeline's lock the body from before the create
    pass's status patch (written only after the handler returns). The pass must still see the pipeline
    Ready at its generation, and call what it then repairs a drift; the first pass of a spec, the
    timer's included, is a reconcile."""
    from retailflow_operator import passes

    repair = [{"action": "create", "target": "connection", "name": "mysql-to-warehouse", "reason": "missing"}]
    created = {"observedGeneration": 1, "phase": "Ready", "airbyte": {}, "secretHashes": {}, "airflowVariables": []}
    try:
        passes.serialized("uid-stale", {}, lambda st: passes.Outcome(dict(created)))
        timer = passes.serialized(
            "uid-stale", {}, lambda st: passes.Outcome({}, event=passes.change_event(repair, "timer", st, 1)))
        assert timer.event[1] == "DriftCorrected"
        assert timer.event[2] == "1 change(s) applied: create connection mysql-to-warehouse (missing)"
    finally:
        passes.forget("uid-stale")
    assert passes.change_event(repair, "timer", {}, 1)[1] == "Reconciled"  # before any pass of the spec
    assert passes.change_event(repair, "timer", {"phase": "Failed", "observedGeneration": 1}, 1)[1] == "Reconciled"
    assert passes.change_event(repair, "timer", {"phase": "Ready", "observedGeneration": 1}, 2)[1] == "Reconciled"
    assert passes.change_event(repair, "update", {"phase": "Ready", "observedGeneration": 1}, 1)[1] == "Reconciled"
    assert passes.change_event([], "timer", {"phase": "Ready", "observedGeneration": 1}, 1) is None


def test_a_failure_is_reported_once_though_the_timer_sees_the_status_from_before_it(monkeypatch, example):
    """A drift timer queued behind a failing pass gets kopf's body from before that pass's status
    patch. The failure's Warning was posted by the pass that failed; the timer's pass, failing the same
    way, must not post it again (nor on every later tick). A pass that fails otherwise still does."""
    import kopf
    from retailflow_operator import handlers, passes

    events: list[tuple[str, str]] = []
    monkeypatch.setattr(kopf, "event", lambda body, *, type, reason, message: events.append((type, reason)))
    failing = {"phase": "Failed"}

    def run_pass(inp):
        error = SpecError("Secret retail-mysql not found", "SecretNotFound")
        return passes.Outcome({"observedGeneration": 1} | failing, event=("Warning", error.reason, str(error)), error=error)

    monkeypatch.setattr(passes, "run_pass", run_pass)
    body = kopf.Body({"metadata": {"uid": "uid-failing", "name": "retail", "namespace": "shop", "generation": 1},
                      "spec": example["spec"], "status": {}})
    try:
        with pytest.raises(kopf.PermanentError):
            handlers.handle_change(body=body, patch=kopf.Patch(), retry=0, reason="create")
        assert events == [("Warning", "SecretNotFound")]
        for _ in range(2):  # kopf has not written the create pass's status into this body
            handlers.handle_drift(body=body, patch=kopf.Patch())
        assert events == [("Warning", "SecretNotFound")]
        failing["phase"] = "Degraded"  # the pipeline fails differently: reported
        handlers.handle_drift(body=body, patch=kopf.Patch())
        assert events == [("Warning", "SecretNotFound")] * 2
    finally:
        passes.forget("uid-failing")
