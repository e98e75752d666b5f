"""One pass over one RetailPipeline: read its Secrets, converge its Airbyte resources and Airflow variables
(or plan), and say what the status becomes.

The kopf handlers only translate the returned ``Outcome`` into a status patch, an Event and, on
failure, a kopf error; everything else lives here so it reads top to bottom.
"""

from __future__ import annotations

import logging
import threading
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

from . import kube, trust
from .config import settings as cfg
from .converge import PLACEHOLDER_ID, Converger, Pipeline, peers_for, remove_owned
from .errors import PeerError, SpecError
from .secret_refs import airbyte_ids_in, secret_refs, uses_airbyte
from .spec_fields import known_fields_condition
from .spec_model import PipelineSpec
from .status import conditions, now
from .validation import validate

PLAN_ANNOTATION = "retailflow.io/plan"
log = logging.getLogger(__name__)


class _PipelineLock:
    """A lock plus the number of threads holding or waiting for it: it is dropped only when none is."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0


# The drift timer and the change handlers run in different threads; one pass per pipeline at a time.
_locks: dict[str, _PipelineLock] = {}
_locks_guard = threading.Lock()


# What the last pass in this process applied, by uid. kopf writes a handler's status only after the
# handler returns, so a timer queued behind the lock would otherwise see the status from before it:
# redo the same writes, and take a repair of the pipeline it just made Ready for its first reconcile.
_applied: dict[str, dict[str, Any]] = {}
_REMEMBERED = ("airbyte", "secretHashes", "airflowVariables")  # from a pass that reached Airbyte/Airflow
_REMEMBERED_ALWAYS = ("phase", "observedGeneration")  # from every pass


def serialized(uid: str, status: Any, run: Callable[[dict[str, Any]], Outcome]) -> Outcome:
    """Runs ``run(status)`` under the pipeline's lock, with the status as this process last left it."""
    with lock(uid):
        effective = dict(status or {}) | _applied.get(uid, {})
        outcome = run(effective)
        outcome.previous_phase = effective.get("phase")
        remembered = dict(_applied.get(uid, {}))
        if "secretHashes" in outcome.status:
            remembered = {k: outcome.status[k] for k in _REMEMBERED if k in outcome.status}
        _applied[uid] = remembered | {k: outcome.status[k] for k in _REMEMBERED_ALWAYS if k in outcome.status}
        return outcome


@contextmanager
def lock(uid: str) -> Iterator[None]:
    """Hold the pipeline's lock. The entry lives while any thread holds or waits for it, so a
    ``forget`` during a pass can never hand a second thread a fresh lock for the same pipeline."""
    with _locks_guard:
        entry = _locks.setdefault(uid, _PipelineLock())
        entry.users += 1
    try:
        with entry.lock:
            yield
    finally:
        with _locks_guard:
            entry.users -= 1
            if entry.users == 0 and _locks.get(uid) is entry and uid in _forgotten:
                del _locks[uid]
                _forgotten.discard(uid)


_forgotten: set[str] = set()


def backoff(retry: int) -> float:
    return min(cfg.backoff_s * (2**retry), cfg.backoff_max_s)


def forget(uid: str) -> None:
    """Drop what this process remembers of a deleted pipeline; its lock goes once no thread uses it."""
    _applied.pop(uid, None)
    with _locks_guard:
        entry = _locks.get(uid)
        if entry is not None and entry.users == 0:
            del _locks[uid]
        elif entry is not None:
            _forgotten.add(uid)


@dataclass
class Outcome:
    status: dict[str, Any]
    event: tuple[str, str, str] | None = None  # (type, reason, message)
    error: Exception | None = None
    changes: list[dict[str, str]] = field(default_factory=list)
    #: status fields the pass already wrote itself (phase Reconciling): the final patch is computed
    #: against them too, or a pass that ends in the phase it started in would leave Reconciling behind
    written: dict[str, Any] = field(default_factory=dict)
    #: the phase the pass started from, as this process last left it (``serialized``): kopf's body can
    #: still hold the status from before the previous pass's patch
    previous_phase: str | None = None

    @property
    def message(self) -> str:
        """The error as users see it (in the Event and the Ready condition): secret values redacted."""
        return self.event[2] if self.event else str(self.error)


def _ready_conditions(status: Mapping[str, Any], ok: bool, reason: str, message: str, peer: str | None = None):
    flag = "True" if ok else "False"
    updates = {"Ready": (flag, reason, message)}
    for p in ("Airbyte", "Airflow"):
        if ok:
            updates[f"{p}Synced"] = ("True", "InSync", f"{p} matches the spec")
        elif peer == p:
            updates[f"{p}Synced"] = ("False", reason, message)
    return conditions(status.get("conditions"), updates)


@dataclass(frozen=True)
class PassInput:
    """What one pass over a RetailPipeline works from: the object as the handler received it."""

    namespace: str
    name: str
    uid: str
    generation: int | None
    spec: PipelineSpec
    status: Mapping[str, Any]
    annotations: Mapping[str, str]
    trigger: str  # kopf's reason (create, update, resume) or "timer"


def run_pass(inp: PassInput) -> Outcome:
    """One pass; every outcome also says, in ``KnownFields``, which received fields were ignored."""
    outcome = _converge_or_plan(inp)
    current = outcome.status.get("conditions") or (inp.status or {}).get("conditions")
    outcome.status["conditions"] = conditions(current, {"KnownFields": known_fields_condition(inp.spec.unknown_fields)})
    return outcome


def _converge_or_plan(inp: PassInput) -> Outcome:
    namespace, name, uid, generation, spec = inp.namespace, inp.name, inp.uid, inp.generation, inp.spec
    annotations, trigger = inp.annotations, inp.trigger
    status = dict(inp.status or {})
    base: dict[str, Any] = {"observedGeneration": generation}
    if spec.suspend:
        msg = "spec.suspend is true: no changes are made to Airbyte or Airflow"
        return Outcome(
            base
            | {
                "phase": "Suspended",
                "conditions": conditions(status.get("conditions"), {"Ready": ("False", "Suspended", msg)}),
            }
        )
    plan_mode = str(annotations.get(PLAN_ANNOTATION, "")).lower() == "true"
    pipeline = Pipeline(namespace, name, uid, spec, status)

    written: dict[str, Any] = {}

    def mark_reconciling() -> None:
        kube.patch_status(namespace, name, {"phase": "Reconciling"})
        written["phase"] = "Reconciling"

    secrets: dict[str, dict[str, str]] = {}
    rec: Converger | None = None
    try:
        validate(spec)
        trust.check_hosts(spec, cfg.allowed_hosts)
        airbyte = uses_airbyte(spec, status)
        secrets = kube.read_secrets(namespace, secret_refs(spec, airbyte), cfg.secret_label_pair)
        peers = peers_for(spec.airbyte if airbyte else None, spec.airflow, secrets, cfg.http_timeout_s)
        rec = Converger(
            pipeline,
            peers,
            secrets,
            cfg.resource_prefix,
            apply=not plan_mode,
            before_first_write=mark_reconciling,
            hmac_key=cfg.hmac_key,
        )
        result = rec.converge()
    except SpecError as exc:
        msg = trust.redact(str(exc), secrets)
        return Outcome(
            base | _applied_so_far(rec) | {"phase": "Failed", "conditions": _ready_conditions(status, False, exc.reason, msg)},
            event=("Warning", exc.reason, msg),
            error=exc,
            written=written,
        )
    except PeerError as exc:
        phase = "Degraded" if exc.transient else "Failed"
        msg = trust.redact(str(exc), secrets)
        return Outcome(
            base | _applied_so_far(rec) | {"phase": phase, "conditions": _ready_conditions(status, False, exc.reason, msg, exc.peer)},
            event=("Warning", exc.reason, msg),
            error=exc,
            written=written,
        )
    except Exception as exc:  # noqa: BLE001 - a pass must end in a phase, never stuck in Reconciling
        msg = trust.redact(f"unexpected {exc.__class__.__name__} in the operator: {exc}"[:500], secrets)
        # The traceback without the exception's own text, which could carry a value.
        log.error("%s/%s: %s\n%s", namespace, name, msg, "".join(traceback.format_tb(exc.__traceback__)))
        error = PeerError("Operator", msg, transient=True)
        return Outcome(
            base | _applied_so_far(rec) | {"phase": "Degraded", "conditions": _ready_conditions(status, False, "InternalError", msg)},
            event=("Warning", "InternalError", msg),
            error=error,
            written=written,
        )

    changes = [c.as_dict() for c in result.changes]
    if plan_mode:
        msg = (
            f"plan mode: {len(changes)} change(s) computed, none applied; "
            f"remove the {PLAN_ANNOTATION} annotation to apply"
        )
        old_plan = status.get("plan") or {}
        plan: dict[str, Any] = {"generation": generation, "changes": changes}
        plan_changed = {k: old_plan.get(k) for k in plan} != plan
        plan["computedAt"] = now() if plan_changed else old_plan.get("computedAt", now())
        return Outcome(
            base
            | {
                "phase": "Pending" if changes else "Ready",
                "conditions": conditions(
                    status.get("conditions"),
                    {
                        "Ready": ("False", "PlanPending", msg)
                        if changes
                        else ("True", "InSync", "plan mode: nothing to change")
                    },
                ),
                "plan": plan,
            },
            event=("Normal", "Planned", msg) if plan_changed else None,
            changes=changes,
        )

    conns = {k: v for k, v in result.ids["connections"].items() if v != PLACEHOLDER_ID}
    msg = f"{len(conns)} Airbyte connection(s) and {len(result.variables)} Airflow variable(s) match the spec"
    ready = _ready_conditions(status, True, "Reconciled", msg)
    # Engine direct without spec.airbyte while the status still lists what the pipeline created there:
    # the pipeline runs (the DAGs ingest themselves), but those resources could not be removed.
    left = {} if airbyte else airbyte_ids_in(status)
    if left:
        count = sum(len(ids) for ids in left.values())
        msg = (
            f"{len(result.variables)} Airflow variable(s) match the spec; {count} Airbyte resource(s) this "
            "pipeline created before engine direct are left in Airbyte, because spec.airbyte was removed "
            "before they were: add spec.airbyte back for one pass to remove them, or delete them in Airbyte"
        )
        ready = conditions(ready, {"Ready": ("True", "Reconciled", msg), "AirbyteSynced": ("False", "AirbyteResourcesLeft", msg)})
    new = base | {
        "phase": "Ready",
        "conditions": ready,
        "airbyte": result.ids,
        "connectionCount": len(conns),
        "airflowVariables": result.variables,
        "secretHashes": result.secret_hashes,
        "specHash": spec.public_hash,
        "plan": None,
    }
    if changes or trigger != "timer" or not status.get("lastReconciledAt"):
        new["lastReconciledAt"] = now()
    event = change_event(changes, trigger, status, generation)
    if not changes and left and trigger != "timer":
        event = ("Warning", "AirbyteResourcesLeft", msg)
    return Outcome(new, event=event, changes=changes, written=written)


def change_event(changes: list[dict[str, Any]], trigger: str, status: Mapping[str, Any],
                 generation: int | None) -> tuple[str, str, str] | None:
    """The Normal Event of a pass that wrote. A drift is an out-of-band change to what this generation
    already had applied (the pipeline was Ready at it). The timer's pass can also be the first to apply
    a spec (it ran before the create handler, or healed a failed pass): that is a reconcile."""
    if not changes:
        return None
    summary = "; ".join(f"{c['action']} {c['target']} {c['name']} ({c['reason']})" for c in changes[:20])
    drifted = trigger == "timer" and status.get("phase") == "Ready" and status.get("observedGeneration") == generation
    return ("Normal", "DriftCorrected" if drifted else "Reconciled", f"{len(changes)} change(s) applied: {summary}"[:1000])


def _applied_so_far(rec: Converger | None) -> dict[str, Any]:
    return rec.applied_status() if rec is not None else {}


def run_delete_pass(namespace: str, name: str, uid: str, spec: PipelineSpec, status: Mapping[str, Any]) -> list[str]:
    """Remove what the pipeline owns; raises PeerError / SpecError like ``run_pass`` reports them."""
    trust.check_hosts(spec, cfg.allowed_hosts)
    airbyte = uses_airbyte(spec, status)
    secrets = kube.read_secrets(namespace, secret_refs(spec, airbyte), cfg.secret_label_pair)
    peers = peers_for(spec.airbyte if airbyte else None, spec.airflow, secrets, cfg.http_timeout_s)
    try:
        return remove_owned(Pipeline(namespace, name, uid, spec, dict(status or {})), peers, cfg.resource_prefix)
    except PeerError as exc:  # its text reaches a Warning Event and kopf's log: a peer's answer may echo a value
        message = trust.redact(str(exc), secrets)
        if message == str(exc):
            raise
        raise PeerError(exc.peer, message.removeprefix(f"{exc.peer}: "), exc.transient, exc.status) from None
