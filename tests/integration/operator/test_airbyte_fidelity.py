"""One reconcile pass, with the operator's real Airbyte client, against the Airbyte fake's real-server
behaviours (stripped type keys, " UTC" crons, resolved streams, unordered offset pages, tombstones).

Airflow is an in-memory stand-in here: these tests are about Airbyte; the Airflow side runs against a
real Airflow API server in the other scenarios.
"""

from __future__ import annotations

import random
import time
import types
import uuid
from typing import Any

import pytest
from operator_runner import pipeline_body
from retailflow_operator import airbyte_desired
from retailflow_operator.airbyte_client import AirbyteClient
from retailflow_operator.converge import Converger, Peers, Pipeline
from retailflow_operator.errors import PeerError
from retailflow_operator.spec_model import parse
from support.airbyte_fake import AirbyteFake

NS, NAME, UID = "retail", "demo", "uid-fidelity"
WRITE_KEY = b"k" * 32


class MemoryAirflow:
    """In-memory stand-in for AirflowClient (variables only)."""

    def __init__(self) -> None:
        self.vars: dict[str, dict[str, Any]] = {}

    def list_variables(self, prefix: str) -> dict[str, dict[str, Any]]:
        return {k: dict(v) for k, v in self.vars.items() if k.startswith(prefix)}

    def upsert_variables(self, entities: list[dict[str, str]]) -> None:
        for e in entities:
            self.vars[e["key"]] = {"value": e["value"], "description": e["description"]}

    def delete_variables(self, keys: list[str]) -> None:
        for k in keys:
            self.vars.pop(k, None)


def secrets_for(airbyte: AirbyteFake) -> dict[str, dict[str, str]]:
    return {
        "mysql": {"username": "retail", "password": "mysql-pw"},
        "warehouse": {"username": "warehouse", "password": "wh-pw"},
        "lake": {"access_key_id": "lake-user", "secret_access_key": "lake-secret"},
        "airbyte": {"client_id": airbyte.client_id, "client_secret": airbyte.client_secret},
        "airflow": {"username": "admin", "password": "af-pw"},
    }


class Harness:
    def __init__(self, airbyte: AirbyteFake, **spec: Any) -> None:
        self.airbyte = airbyte
        airflow = types.SimpleNamespace(url="http://127.0.0.1:1")
        self.spec = pipeline_body(NS, NAME, airbyte, airflow, "rf_test_", **spec)["spec"]
        self.secrets = secrets_for(airbyte)
        self.peers = Peers(
            airbyte=AirbyteClient(airbyte.server_url, None, airbyte.client_id, airbyte.client_secret, 5),
            airflow=MemoryAirflow(),
        )
        self.status: dict[str, Any] = {}

    def run(self) -> Any:
        pipeline = Pipeline(NS, NAME, UID, parse(self.spec), self.status)
        rec = Converger(pipeline, self.peers, self.secrets, "rf", apply=True, hmac_key=WRITE_KEY)
        try:
            result = rec.converge()
        except Exception:
            self.status = self.status | rec.applied_status()  # as passes.run_pass records it
            raise
        self.status = {"airbyte": result.ids, "secretHashes": result.secret_hashes, "airflowVariables": result.variables}
        return result


@pytest.fixture
def airbyte():
    """The Airbyte fake (see tests/support/airbyte_fake.py), fresh per test."""
    with AirbyteFake() as fake:
        yield fake


def airbyte_writes(fake: AirbyteFake) -> list[tuple[str, str]]:
    return list(fake.writes)


def test_a_pass_creates_everything_and_the_next_one_writes_nothing(airbyte):
    h = Harness(airbyte)
    first = h.run()
    assert {c.action for c in first.changes} == {"create", "upsert"}
    assert len(airbyte.live("sources")) == 2 and len(airbyte.live("destinations")) == 2
    assert len(airbyte.live("connections")) == 4
    # The destinations' answers parsed: their ids are recorded, not placeholders.
    assert set(h.status["airbyte"]["destinations"].values()) == set(airbyte.live("destinations"))
    airbyte.reset_writes()
    second = h.run()
    assert second.changes == [] and airbyte.writes == []


def test_cron_schedules_come_back_with_utc_and_are_not_patched_again(airbyte):
    h = Harness(airbyte)
    h.spec["airbyte"]["syncTrigger"] = "airbyte"
    h.run()
    schedules = {c["schedule"]["cronExpression"] for c in airbyte.live("connections").values()}
    assert schedules == {"0 0 2 * * ? UTC"}
    airbyte.reset_writes()
    assert h.run().changes == [] and airbyte.writes == []


def test_the_pass_after_a_failed_one_redoes_nothing_that_was_applied(airbyte):
    h = Harness(airbyte)
    airbyte.fail_on("POST", "/connections", 500)  # the actors exist, the first connection fails
    with pytest.raises(PeerError):
        h.run()
    assert len(airbyte.live("sources")) == 2 and len(airbyte.live("connections")) == 0
    airbyte.reset_writes()
    h.run()
    # Only the connections are written: the actors' secrets are not sent again.
    assert sorted(set(airbyte.writes)) == [("POST", "/connections")]
    airbyte.reset_writes()
    assert h.run().changes == [] and airbyte.writes == []


def test_warehouse_ssl_mode_reaches_the_connector(airbyte):
    h = Harness(airbyte)
    h.spec["warehouse"]["sslMode"] = "require"
    h.run()
    (wh,) = [d for d in airbyte.live("destinations").values() if d["destinationType"] == "postgres"]
    # Postgres destination 3.x applies ssl_mode only when ssl is true.
    assert wh["configuration"]["ssl"] is True and wh["configuration"]["ssl_mode"] == {"mode": "require"}
    airbyte.reset_writes()
    assert h.run().changes == []


def test_configuration_the_spec_forbids_is_refused_by_airbyte(airbyte):
    """A lake bucket path Airbyte's spec cannot take reaches the fake's connector-spec validation (422)."""
    h = Harness(airbyte)
    h.spec["mysql"]["port"] = 70000  # the CRD refuses this; the connector spec (maximum 65536) too
    with pytest.raises(PeerError) as err:
        h.run()
    assert err.value.status == 422 and not err.value.transient
    assert "port" in str(err.value)


def _other_actors(fake: AirbyteFake, count: int) -> None:
    """Resources of other users of the same workspace: not owned by the pipeline."""
    h = Harness(fake)
    client = h.peers.airbyte
    actors = airbyte_desired.build_airbyte("others", "x", parse(h.spec), h.secrets)
    mysql = actors.actors[("source", "mysql")]
    warehouse = actors.actors[("destination", "warehouse")]
    for i in range(count):
        src = client.create_actor(airbyte_desired.Actor("source", "mysql", f"other/{i}/mysql", mysql.configuration), fake.workspace_id)
        dst = client.create_actor(
            airbyte_desired.Actor("destination", "warehouse", f"other/{i}/wh", warehouse.configuration), fake.workspace_id
        )
        conn = actors.connections[0]
        req = conn.create_request(fake.workspace_id, src.id, dst.id)
        req.name = f"other/{i}/conn"
        client.create_connection(req)


def test_offset_pages_under_concurrent_writes_never_delete_or_duplicate(airbyte):
    """More than 100 resources per kind, and a writer that edits rows between every two pages: an
    edited row moves to the end of Airbyte's unordered list, so later pages repeat some rows and
    skip others (here: the pipeline's own, which sit at the page boundary)."""
    _other_actors(airbyte, 100)
    h = Harness(airbyte)
    h.run()
    _other_actors(airbyte, 30)
    ids = {kind: set(airbyte.live(kind)) for kind in ("sources", "destinations", "connections")}
    assert all(len(v) > 100 for v in ids.values())
    rng = random.Random(12)
    seen = {"repeated": 0, "skipped": 0}

    def writer() -> None:  # another Airbyte user editing resources while the operator lists
        with airbyte._lock:
            for kind in ("sources", "destinations", "connections"):
                store = getattr(airbyte, kind)
                for key in list(store)[:10] + rng.sample(list(store), 3):
                    airbyte._touch(store, key, store[key])

    def count_anomalies() -> None:  # what one listing of sources, under the writer, shows
        got: list[str] = []
        offset = 0
        while True:
            page = airbyte.handle("GET", f"/api/public/v1/sources?limit=100&offset={offset}", {"Authorization": f"Bearer {token}"}, b"")[1]
            got += [r["sourceId"] for r in page["data"]]
            if len(page["data"]) < 100:
                break
            offset += 100
        seen["repeated"] += len(got) - len(set(got))
        seen["skipped"] += len(ids["sources"] - set(got))

    token = "t-" + uuid.uuid4().hex
    airbyte.tokens[token] = float("inf")
    airbyte.between_pages = writer
    count_anomalies()
    assert seen["repeated"] > 0 and seen["skipped"] > 0  # the writer really skews the pages
    airbyte.reset_writes()
    for _ in range(3):
        result = h.run()
        assert [c for c in result.changes if c.action in ("create", "delete")] == []
    airbyte.between_pages = None
    assert [w for w in airbyte.writes if w[0] in ("POST", "DELETE")] == []
    assert {kind: set(airbyte.live(kind)) for kind in ids} == ids


def test_a_list_that_shows_a_live_resource_twice_does_not_delete_it(airbyte):
    h = Harness(airbyte)
    h.run()
    known = h.status["airbyte"]["sources"]["mysql"]
    served = {"pages": 0}

    def move_ours_to_the_end() -> None:
        served["pages"] += 1
        if served["pages"] == 1:
            with airbyte._lock:
                airbyte._touch(airbyte.sources, known, airbyte.sources[known])

    # 100 others after ours: page 1 shows ours, then it moves to the end and page 2 shows it again.
    _other_actors(airbyte, 100)
    airbyte.between_pages = move_ours_to_the_end
    airbyte.reset_writes()
    result = h.run()
    airbyte.between_pages = None
    assert served["pages"] >= 2
    assert [c for c in result.changes if c.action == "delete"] == []
    assert known in airbyte.live("sources")


def test_a_list_that_skips_a_live_resource_does_not_create_a_second_one(airbyte):
    _other_actors(airbyte, 100)
    h = Harness(airbyte)
    h.run()  # ours come after 100 others: the first row of page 2
    first_other = next(iter(airbyte.sources))
    served = {"pages": 0}

    def move_first_row_to_the_end() -> None:
        served["pages"] += 1
        if served["pages"] == 1:
            with airbyte._lock:
                airbyte._touch(airbyte.sources, first_other, airbyte.sources[first_other])

    airbyte.between_pages = move_first_row_to_the_end
    airbyte.reset_writes()
    result = h.run()
    airbyte.between_pages = None
    assert [c for c in result.changes if c.action == "create"] == []
    assert len([s for s in airbyte.live("sources").values() if s["name"].startswith(f"rf/{NS}/{NAME}/")]) == 2


def test_a_true_duplicate_is_deleted_and_the_known_one_kept(airbyte):
    h = Harness(airbyte)
    h.run()
    known = h.status["airbyte"]["sources"]["mysql"]
    actor = airbyte_desired.build_airbyte(NS, NAME, parse(h.spec), h.secrets).actors[("source", "mysql")]
    twin = h.peers.airbyte.create_actor(actor, airbyte.workspace_id)
    airbyte.reset_writes()
    result = h.run()
    assert [(c.action, c.name) for c in result.changes] == [("delete", actor.name)]
    assert known in airbyte.live("sources") and twin.id not in airbyte.live("sources")


def test_a_resource_deleted_in_airbyte_is_recreated(airbyte):
    h = Harness(airbyte)
    h.run()
    gone = h.status["airbyte"]["destinations"]["warehouse"]
    airbyte.delete_out_of_band("destinations", gone)  # tombstoned: a GET still answers it
    result = h.run()
    assert ("create", "destination") in {(c.action, c.target) for c in result.changes}
    assert h.status["airbyte"]["destinations"]["warehouse"] != gone
    assert len(airbyte.live("connections")) == 4


def test_an_answer_without_an_id_is_a_clear_error(airbyte, monkeypatch):
    h = Harness(airbyte)
    original = airbyte._view

    def broken(kind: str, resource: dict[str, Any]) -> dict[str, Any]:
        out = original(kind, resource)
        out.pop(f"{kind}Id", None)
        return out

    monkeypatch.setattr(airbyte, "_view", broken)
    with pytest.raises(PeerError) as err:
        h.run()
    assert "no sourceId" in str(err.value) and not err.value.transient


def test_a_token_answer_without_access_token_is_a_clear_error(airbyte, monkeypatch):
    airbyte.client_id = f"other-{uuid.uuid4()}"  # a fresh token cache key
    h = Harness(airbyte)
    monkeypatch.setattr(airbyte, "_token", lambda headers, body: (200, {"token_type": "Bearer", "expires_in": 900}))
    with pytest.raises(PeerError) as err:
        h.run()
    assert "access_token" in str(err.value)


TOKEN_CALL = ("POST", "/applications/token", 200)


def replaced_after_a_401(calls: list[tuple[str, str, int]]) -> bool:
    """The first call answered 401 is followed by a token request that got a token."""
    rejected = [i for i, call in enumerate(calls) if call[2] == 401]
    return bool(rejected) and calls[rejected[0] + 1 : rejected[0] + 2] == [TOKEN_CALL]


def test_a_revoked_or_expired_token_is_replaced(airbyte):
    """The client keeps a token for the 900 s the token answer announces; Airbyte answers 401 once it
    revoked the token or the token outlived its real life (the fake's ``token_ttl_s``). Either way the
    client asks for a fresh token once and the pass carries on."""
    h = Harness(airbyte)
    h.run()
    airbyte.token_ttl_s = 1.0  # tokens issued from now on stop working after a second
    airbyte.revoke_tokens()
    mark = len(airbyte.calls)
    assert h.run().changes == []
    assert replaced_after_a_401(airbyte.calls[mark:]), airbyte.calls[mark:]
    # the token the client now holds was issued with the short life: wait until the fake counts it
    # expired (still known to the fake, so the 401 below is its expiry, not a revocation)
    held = max(airbyte.tokens, key=airbyte.tokens.__getitem__)
    while airbyte.tokens[held] >= time.monotonic():
        time.sleep(0.05)
    mark = len(airbyte.calls)
    assert h.run().changes == []
    assert replaced_after_a_401(airbyte.calls[mark:]), airbyte.calls[mark:]
    assert held not in airbyte.tokens  # refused as expired (the fake forgets an expired token it refuses)
