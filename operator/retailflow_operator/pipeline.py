"""One pass for one RetailPipeline: read its Secrets, reconcile (or plan), and say what the status becomes.

The kopf handlers only translate the returned ``Outcome`` into a status patch, an Event and, on
failure, a kopf error; everything else lives here so it reads top to bottom.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from . import builders as b
from . import kube
from .config import settings as cfg
from .errors import PeerError, SpecError
from .reconcile import PLACEHOLDER_ID, Pipeline, Reconciler, finalize, peers_for
from .status import conditions, now

PLAN_ANNOTATION = "retailflow.io/plan"

# The drift timer and the change handlers run in different threads; one pass per pipeline at a time.
_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
_locks_guard = threading.Lock()


# What the last pass in this process applied, by uid. kopf writes a handler's status only after the
# handler returns, so a timer queued behind the lock would otherwise see the status from before it
# and redo the same writes.
_applied: dict[str, dict[str, Any]] = {}
_REMEMBERED = ("airbyte", "secretHashes", "airflowVariables")


def serialized(uid: str, status: Any, run: Callable[[dict[str, Any]], Outcome]) -> Outcome:
    """Runs ``run(status)`` under the pipeline's lock, with the status as this process last left it."""
    with lock(uid):
        effective = dict(status or {}) | _applied.get(uid, {})
        outcome = run(effective)
        if outcome.error is None and "secretHashes" in outcome.status:
            _applied[uid] = {k: outcome.status[k] for k in _REMEMBERED}
        return outcome


def lock(uid: str) -> threading.Lock:
    with _locks_guard:
        return _locks[uid]


def backoff(retry: int) -> float:
    return min(cfg.backoff_s * (2**retry), cfg.backoff_max_s)


def forget(uid: str) -> None:
    _applied.pop(uid, None)
    with _locks_guard:
        _locks.pop(uid, None)


@dataclass
class Outcome:
    status: dict[str, Any]
    event: tuple[str, str, str] | None = None  # (type, reason, message)
    error: Exception | None = None
    changes: list[dict[str, str]] = field(default_factory=list)
    #: status fields the pass already wrote itself (phase Reconciling): the final patch is computed
    #: against them too, or a pass that ends in the phase it started in would leave Reconciling behind
    written: dict[str, Any] = field(default_factory=dict)


def _ready_conditions(status: Mapping[str, Any], ok: bool, reason: str, message: str, peer: str | None = None):
    flag = "True" if ok else "False"
    updates = {"Ready": (flag, reason, message)}
    for p in ("Airbyte", "Airflow"):
        if ok:
            updates[f"{p}Synced"] = ("True", "InSync", f"{p} matches the spec")
        elif peer == p:
            updates[f"{p}Synced"] = ("False", reason, message)
    return conditions(status.get("conditions"), updates)


def reconcile_once(
    namespace: str,
    name: str,
    uid: str,
    generation: int | None,
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    annotations: Mapping[str, str],
    trigger: str,
) -> Outcome:
    spec, status = dict(spec), dict(status or {})
    base: dict[str, Any] = {"observedGeneration": generation}
    if b.opt(spec, "suspend"):
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

    try:
        b.validate(spec)
        secrets = kube.read_secrets(namespace, b.secret_refs(spec))
        peers = peers_for(spec, secrets, cfg.http_timeout_s)
        rec = Reconciler(
            pipeline, peers, secrets, cfg.resource_prefix, apply=not plan_mode, before_first_write=mark_reconciling
        )
        result = rec.run()
    except SpecError as exc:
        return Outcome(
            base | {"phase": "Failed", "conditions": _ready_conditions(status, False, exc.reason, str(exc))},
            event=("Warning", exc.reason, str(exc)),
            error=exc,
            written=written,
        )
    except PeerError as exc:
        phase = "Degraded" if exc.transient else "Failed"
        return Outcome(
            base | {"phase": phase, "conditions": _ready_conditions(status, False, exc.reason, str(exc), exc.peer)},
            event=("Warning", exc.reason, str(exc)),
            error=exc,
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
    new = base | {
        "phase": "Ready",
        "conditions": _ready_conditions(status, True, "Reconciled", msg),
        "airbyte": result.ids,
        "connectionCount": len(conns),
        "airflowVariables": result.variables,
        "secretHashes": result.secret_hashes,
        "specHash": b.public_spec_hash(spec),
        "plan": None,
    }
    if changes or trigger != "timer" or not status.get("lastReconciledAt"):
        new["lastReconciledAt"] = now()
    event = None
    if changes:
        summary = "; ".join(f"{c['action']} {c['target']} {c['name']} ({c['reason']})" for c in changes[:20])
        reason = "DriftCorrected" if trigger == "timer" else "Reconciled"
        event = ("Normal", reason, f"{len(changes)} change(s) applied: {summary}"[:1000])
    return Outcome(new, event=event, changes=changes, written=written)


def finalize_once(namespace: str, name: str, uid: str, spec: Mapping[str, Any], status: Mapping[str, Any]) -> list[str]:
    """Remove what the pipeline owns; raises PeerError / SpecError like ``reconcile_once`` reports them."""
    spec = dict(spec)
    secrets = kube.read_secrets(namespace, b.secret_refs(spec))
    peers = peers_for(spec, secrets, cfg.http_timeout_s)
    return finalize(Pipeline(namespace, name, uid, spec, dict(status or {})), peers, cfg.resource_prefix)
