"""Converge one pipeline's Airbyte resources and Airflow variables on their desired state: compare what
is wanted with what exists, then apply the difference (or, in plan mode, only report it).

Resources are matched by a deterministic name derived from namespace/name, never by a stored id alone,
so a lost status or a crash between "create" and "record the id" cannot produce duplicates.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .airbyte_client import AirbyteClient, Resource
from .airbyte_desired import answer_comparable, build_airbyte, is_subset
from .airflow_client import AirflowClient
from .airflow_variables import (
    REGISTRY_DESCRIPTION,
    REGISTRY_KEY,
    build_variables,
    registry_entries,
    registry_variable,
    variable_description,
    variable_owner,
)
from .errors import SpecError
from .naming import owner, resource_prefix
from .secret_refs import airbyte_ids_in
from .spec_model import AirbyteSpec, AirflowSpec, PipelineSpec

PLACEHOLDER_ID = "<created on apply>"
#: The registry variable is read, changed and written by every pipeline's pass: one at a time.
_registry_lock = threading.Lock()


@dataclass(frozen=True)
class Change:
    action: str  # create | patch | recreate | delete | upsert
    target: str  # source | destination | connection | variable
    name: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"action": self.action, "target": self.target, "name": self.name, "reason": self.reason}


@dataclass
class Result:
    changes: list[Change] = field(default_factory=list)
    ids: dict[str, dict[str, str]] = field(
        default_factory=lambda: {"sources": {}, "destinations": {}, "connections": {}}
    )
    variables: list[str] = field(default_factory=list)
    secret_hashes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Pipeline:
    namespace: str
    name: str
    uid: str
    spec: PipelineSpec
    status: Mapping[str, Any]


@dataclass
class Peers:
    #: None when the pass does not talk to Airbyte (``secret_refs.uses_airbyte``)
    airbyte: AirbyteClient | None
    airflow: AirflowClient


def peers_for(
    airbyte: AirbyteSpec | None, airflow: AirflowSpec, secrets: Mapping[str, Mapping[str, str]], timeout_s: float
) -> Peers:
    """The clients of one pass; no Airbyte client when ``airbyte`` is None (a pass without Airbyte)."""
    af = secrets["airflow"]
    ab_client = None
    if airbyte is not None:
        ab = secrets["airbyte"]
        ab_client = AirbyteClient(airbyte.api_url, airbyte.token_url, ab["client_id"], ab["client_secret"], timeout_s)
    return Peers(airbyte=ab_client, airflow=AirflowClient(airflow.api_url, af["username"], af["password"], timeout_s))


def _owned(resources: list[Resource], prefix: str) -> dict[str, list[Resource]]:
    out: dict[str, list[Resource]] = {}
    for res in resources:
        if res.name.startswith(prefix):
            out.setdefault(res.name, []).append(res)
    return out


def _streams_sorted(cfg: Mapping[str, Any]) -> dict[str, Any]:
    cfg = dict(cfg)
    confs = dict(cfg.get("configurations") or {})
    confs["streams"] = sorted(confs.get("streams") or [], key=lambda s: s.get("name", ""))
    cfg["configurations"] = confs
    return cfg


def _parse(value: Any) -> Any:
    try:
        return json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return value


class Inventory:
    """What the pipeline owns in Airbyte, from offset-paged lists that writes between pages can skew.

    A list can show one resource twice (``AirbyteClient.list`` keeps each id once) or miss one. So
    absence is never taken from one list: a resource whose id the status knows is looked up by id,
    and anything else missing is looked for in a second list before it is created.
    """

    def __init__(self, airbyte: AirbyteClient, workspace_id: str, prefix: str):
        self.airbyte, self.ws, self.prefix = airbyte, workspace_id, prefix
        self.owned = {kind: _owned(airbyte.list(kind, workspace_id), prefix) for kind in ("source", "destination", "connection")}
        self._relisted: set[str] = set()

    def find(self, kind: str, name: str, known_id: str | None) -> tuple[Resource | None, list[Resource]]:
        """The live resource to keep and the true duplicates (other ids with the same name)."""
        found = self.owned[kind].get(name, [])
        if known_id and not any(r.id == known_id for r in found):
            res = self.airbyte.get(kind, known_id)
            if res is not None and res.name == name and self._alive(res):
                found = [res, *found]
        if not found and kind not in self._relisted:
            self._relisted.add(kind)
            again = _owned(self.airbyte.list(kind, self.ws), self.prefix)
            for other, items in again.items():
                ids = {r.id for r in self.owned[kind].get(other, [])}
                self.owned[kind].setdefault(other, []).extend(r for r in items if r.id not in ids)
            found = self.owned[kind].get(name, [])
        if not found:
            return None, []
        keep = next((r for r in found if r.id == known_id), found[0])
        return keep, [r for r in found if r.id != keep.id]

    @staticmethod
    def _alive(res: Resource) -> bool:
        # A GET answers deleted resources too: a tombstoned actor has its configuration voided, a
        # deleted connection is "deprecated" (SourceServiceJooqImpl.tombstoneSource, ConnectionHelper).
        if res.kind == "connection":
            return res.body.get("status") != "deprecated"
        return bool(res.configuration)


class Converger:
    """Converges (or plans) one pipeline's desired state. ``apply=False`` makes no write call at all."""

    def __init__(
        self,
        pipeline: Pipeline,
        peers: Peers,
        secrets: Mapping[str, Mapping[str, str]],
        prefix: str,
        apply: bool,
        before_first_write: Callable[[], None] | None = None,
        hmac_key: bytes = b"",
    ):
        self.p = pipeline
        self.hmac_key = hmac_key
        self.peers = peers
        self.secrets = secrets
        self.prefix = resource_prefix(prefix, pipeline.namespace, pipeline.name)
        self.resource_prefix = prefix
        self.apply = apply
        self.before_first_write = before_first_write
        self.result = Result()
        self._writing = False

    def _change(self, change: Change, write: Callable[[], Any] | None = None) -> Any:
        self.result.changes.append(change)
        if not self.apply or write is None:
            return None
        self._starting_to_write()
        return write()

    def _starting_to_write(self) -> None:
        """Calls ``before_first_write`` once, before the pass's first write call."""
        if not self._writing:
            self._writing = True
            if self.before_first_write:
                self.before_first_write()

    # ------------------------------------------------------------ Airbyte

    def converge_airbyte(self) -> None:
        spec, status = self.p.spec, self.p.status
        if self.peers.airbyte is None:
            # No Airbyte this pass: nothing is read or written there. Ids the status still lists (engine
            # direct after the spec.airbyte block was removed) are kept, so adding the block back
            # removes those resources.
            for kind, ids in airbyte_ids_in(status).items():
                self.result.ids[kind] = ids
            return
        desired = build_airbyte(self.p.namespace, self.p.name, spec, self.secrets, self.resource_prefix)
        ab = self.peers.airbyte
        ws = spec.airbyte.workspace_id
        known = status.get("airbyte") or {}
        old_hashes = status.get("secretHashes") or {}
        inv = Inventory(ab, ws, self.prefix)
        wanted_conns = {c.name for c in desired.connections}
        wanted_actors = {a.name for a in desired.actors.values()}

        # Connections go first: Airbyte refuses (or orphans) connections of a deleted actor.
        for conn_name, found in sorted(inv.owned["connection"].items()):
            if conn_name not in wanted_conns:
                for res in found:
                    self._delete(res)

        # Filled as each resource is confirmed or written, so a pass that fails half-way still
        # reports what it applied (``applied_status``) and the next pass does not redo it.
        ids = self.result.ids
        for (kind, role), actor in desired.actors.items():
            keep, dups = inv.find(kind, actor.name, (known.get(f"{kind}s") or {}).get(role))
            for dup in dups:
                self._delete(dup, "duplicate")
            hash_key = f"{kind}/{role}"
            secret_hash = actor.secret_hash(self.hmac_key, self.p.uid)
            if keep is None:
                res = self._change(
                    Change("create", kind, actor.name, "missing"), lambda a=actor: ab.create_actor(a, ws)
                )
                ids[f"{kind}s"][role] = res.id if res else PLACEHOLDER_ID
                self.result.secret_hashes[hash_key] = secret_hash
                continue
            ids[f"{kind}s"][role] = keep.id
            reasons = []
            if not is_subset(actor.public_config, keep.configuration):
                reasons.append("configuration differs")
            if old_hashes.get(hash_key) != secret_hash:
                reasons.append("secret material changed")
            if reasons:
                self._change(
                    Change("patch", kind, actor.name, ", ".join(reasons)),
                    lambda a=actor, i=keep.id: ab.patch_actor(a, i),
                )
            self.result.secret_hashes[hash_key] = secret_hash

        for kind in ("source", "destination"):
            for actor_name, found in sorted(inv.owned[kind].items()):
                if actor_name not in wanted_actors:
                    for res in found:
                        self._delete(res)

        for conn in desired.connections:
            src_id = ids["sources"][conn.source_role]
            dst_id = ids["destinations"][conn.destination_role]
            keep, dups = inv.find("connection", conn.name, (known.get("connections") or {}).get(conn.role))
            for dup in dups:
                self._delete(dup, "duplicate")
            if keep is not None and (keep.body.get("sourceId") != src_id or keep.body.get("destinationId") != dst_id):
                # An actor was recreated: a connection cannot be re-pointed, only replaced.
                self._delete(keep, "its source or destination was replaced")
                keep = None
            if keep is None:
                res = self._change(
                    Change("create", "connection", conn.name, "missing"),
                    lambda c=conn, s=src_id, d=dst_id: ab.create_connection(c.create_request(ws, s, d)),
                )
                ids["connections"][conn.role] = res.id if res else PLACEHOLDER_ID
                continue
            ids["connections"][conn.role] = keep.id
            if not is_subset(_streams_sorted(conn.comparable()), _streams_sorted(answer_comparable(keep.body))):
                self._change(
                    Change("patch", "connection", conn.name, "configuration differs"),
                    lambda c=conn, i=keep.id: ab.patch_connection(i, c.patch_request()),
                )

    def _delete(self, res: Resource, reason: str = "no longer in the spec") -> None:
        self._change(
            Change("delete", res.kind, res.name, reason),
            lambda: self.peers.airbyte.delete(res.kind, res.id),
        )

    # ------------------------------------------------------------ Airflow

    def converge_airflow(self) -> None:
        spec = self.p.spec
        me = owner(self.p.namespace, self.p.name)
        description = variable_description(self.p.namespace, self.p.name)
        desired = build_variables(self.p.namespace, self.p.name, spec, self.result.ids)
        af = self.peers.airflow
        prefix = spec.airflow.variable_prefix
        existing = af.list_variables(prefix)
        upserts: list[dict[str, str]] = []
        for key, value in desired.items():
            cur = existing.get(key)
            if cur is not None:
                other = variable_owner(cur.get("description"))
                if other not in (None, me):
                    raise SpecError(
                        f"Airflow variable {key!r} belongs to RetailPipeline {other}; give this pipeline another "
                        f"spec.airflow.variablePrefix",
                        reason="VariableOwnedElsewhere",
                    )
            if cur is None:
                reason = "missing"
            elif _parse(cur.get("value")) != value:
                reason = "value differs"
            elif cur.get("description") != description:
                reason = "not yet owned"
            else:
                continue
            self.result.changes.append(Change("upsert", "variable", key, reason))
            upserts.append(
                {"key": key, "value": json.dumps(value, indent=2, sort_keys=True), "description": description}
            )
        stale = [k for k, v in existing.items() if k not in desired and variable_owner(v.get("description")) == me]
        for key in self.p.status.get("airflowVariables") or []:
            if key not in desired and key not in existing:  # the prefix changed: delete only what is still ours
                found = af.list_variables(key).get(key)
                if found and variable_owner(found.get("description")) == me:
                    stale.append(key)
        for key in sorted(set(stale)):
            self.result.changes.append(Change("delete", "variable", key, "no longer in the spec"))
        with _registry_lock:
            found = af.list_variables(REGISTRY_KEY).get(REGISTRY_KEY)
            current = registry_entries(found.get("value") if found else None)
            wanted = {k: v for k, v in current.items() if v != me} | {prefix: me}
            if found is None or wanted != current or found.get("description") != REGISTRY_DESCRIPTION:
                reason = "missing" if found is None else f"does not list {prefix!r} for {me}" if wanted != current else "not yet owned"
                self.result.changes.append(Change("upsert", "variable", REGISTRY_KEY, reason))
                upserts.append(registry_variable(wanted))
            if self.apply and (upserts or stale):
                self._starting_to_write()
                af.upsert_variables(upserts)
                af.delete_variables(sorted(set(stale)))
        self.result.variables = sorted(desired)

    def converge(self) -> Result:
        self.converge_airbyte()
        self.converge_airflow()
        return self.result

    def applied_status(self) -> dict[str, Any]:
        """After a failed pass: the ids and secret hashes of what this pass confirmed or wrote, over
        the ones the status had, so the next pass patches only what is still not applied."""
        if not self.apply:
            return {}
        old_ids = self.p.status.get("airbyte") or {}
        ids = {
            kind: {k: v for k, v in ({**(old_ids.get(kind) or {}), **self.result.ids[kind]}).items() if v != PLACEHOLDER_ID}
            for kind in ("sources", "destinations", "connections")
        }
        hashes = {**(self.p.status.get("secretHashes") or {}), **self.result.secret_hashes}
        return {"airbyte": ids, "secretHashes": hashes}


def remove_owned(pipeline: Pipeline, peers: Peers, prefix: str) -> list[str]:
    """Delete everything the pipeline owns (connections first); returns what was removed."""
    spec = pipeline.spec
    ab = peers.airbyte
    owned_prefix = resource_prefix(prefix, pipeline.namespace, pipeline.name)
    removed: list[str] = []
    for kind in ("connection", "source", "destination") if ab is not None and spec.airbyte is not None else ():
        for name, found in sorted(_owned(ab.list(kind, spec.airbyte.workspace_id), owned_prefix).items()):
            for res in found:
                ab.delete(kind, res.id)
                removed.append(f"{kind} {name}")
    me = owner(pipeline.namespace, pipeline.name)
    af = peers.airflow
    existing = af.list_variables(spec.airflow.variable_prefix)
    keys = sorted(k for k, v in existing.items() if variable_owner(v.get("description")) == me)
    af.delete_variables(keys)
    removed += [f"variable {k}" for k in keys]
    with _registry_lock:
        found = af.list_variables(REGISTRY_KEY).get(REGISTRY_KEY)
        current = registry_entries(found.get("value") if found else None)
        left = {k: v for k, v in current.items() if v != me}
        if found is not None and left != current:
            if left:
                af.upsert_variables([registry_variable(left)])
            else:
                af.delete_variables([REGISTRY_KEY])
            removed.append(f"{spec.airflow.variable_prefix!r} from variable {REGISTRY_KEY}")
    return removed
