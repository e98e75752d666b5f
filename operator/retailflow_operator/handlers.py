"""kopf handlers only: each one handles a kopf event (change, drift timer, delete), parses the spec
(``spec_model.parse``, once per call), runs one pass (``passes``) with the model and turns its outcome
into status, Events and kopf errors.

The kopf handler ids (``reconcile``, ``drift``, ``finalize``) are older than the function names: kopf
writes them into each object's annotations while a handler retries, so they stay as they are.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any

import kopf

from . import airbyte_client, kube, passes, spec_model
from .config import settings as cfg
from .crd import GROUP, PLURAL, VERSION
from .errors import PeerError, SpecError
from .status import merge_diff

FINALIZER = "retailflow.io/finalizer"


def _stop(message: str) -> None:
    """One line on stderr, then exit 2: kopf would retry a failing startup handler (and print a traceback)
    forever; a process manager restarts us instead, and a person reads the line."""
    print(f"retailflow-operator: {message}", file=sys.stderr, flush=True)
    os._exit(2)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Async so that it runs in kopf's event-loop thread, the only one where the command line can be read
    # (``kube.namespaces_given``); the blocking steps below go to a worker thread.
    patterns = kube.namespace_patterns(kube.namespaces_given())
    if patterns:
        # With scanning off (below) kopf would drop a pattern and serve no namespace, without a word.
        _stop(
            f"--namespace takes namespace names, not patterns: {', '.join(map(repr, patterns))}. The operator"
            " serves exactly the namespaces it is given and never lists namespaces (so it needs no cluster-wide"
            " permission); name each one (--namespace=a --namespace=b) or serve all with --all-namespaces"
        )
    # No dynamic observation of the cluster: kopf serves exactly the namespaces it was given (or all, with
    # -A) and the resources the API server's discovery reports at start, and never lists or watches
    # namespaces or CRDs, so the ServiceAccount needs no ClusterRole for them (kopf
    # _core/reactor/observation.py). Discovery itself (GET /api, /apis/...) stays: Kubernetes' bootstrap
    # ClusterRole system:discovery allows it to every authenticated user. What it costs: a CRD that adds
    # or removes a served version, or a CRD installed after the operator started, is seen only after a
    # restart; and namespace patterns cannot be served (refused above). The chart serves one exact
    # namespace, or every namespace, so neither needs a namespace list.
    settings.scanning.disabled = True
    settings.persistence.finalizer = FINALIZER
    # Progress and diff-base live in annotations so status holds only what users read.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="retailflow.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="retailflow.io", key="last-handled-configuration"
    )
    settings.execution.max_workers = cfg.max_workers
    settings.posting.level = logging.WARNING  # Events are posted explicitly; INFO logs would flood them.
    # A drift check in progress delays the finalizer; poll for its end every second, not every minute.
    settings.background.cancellation_polling = 1
    try:
        await asyncio.to_thread(kube.check_cluster)  # loads the kubeconfig / in-cluster config once
    except kube.ClusterUnreachable as exc:
        _stop(str(exc))
    await asyncio.to_thread(airbyte_client.warm_up)


def _apply(outcome: passes.Outcome, status: Any, patch: kopf.Patch, body: kopf.Body) -> None:
    diff = merge_diff(dict(status or {}) | outcome.written, outcome.status)
    if diff:
        patch.setdefault("status", {}).update(diff)
    if outcome.event:
        kind, reason, message = outcome.event
        kopf.event(body, type=kind, reason=reason, message=message)


def _one_pass(body: kopf.Body, trigger: str) -> passes.Outcome:
    """One pass over the object kopf handed in, under the pipeline's lock (``passes.serialized``)."""
    meta = body.meta
    model = spec_model.parse(body.spec)
    return passes.serialized(
        meta.uid,
        body.status,
        lambda st: passes.run_pass(
            passes.PassInput(meta.namespace, meta.name, meta.uid, meta.get("generation"), model, st, meta.annotations,
                             trigger)
        ),
    )


@kopf.on.resume(GROUP, VERSION, PLURAL, id="reconcile")
@kopf.on.create(GROUP, VERSION, PLURAL, id="reconcile")
@kopf.on.update(GROUP, VERSION, PLURAL, id="reconcile")
def handle_change(body: kopf.Body, patch: kopf.Patch, retry: int, reason: str, **_: Any) -> None:
    outcome = _one_pass(body, trigger=str(reason))
    _apply(outcome, body.status, patch, body)
    if isinstance(outcome.error, PeerError) and outcome.error.transient:
        raise kopf.TemporaryError(outcome.message, delay=passes.backoff(retry))
    if outcome.error:
        raise kopf.PermanentError(outcome.message)


@kopf.timer(GROUP, VERSION, PLURAL, id="drift", interval=cfg.drift_interval_s, idle=cfg.drift_idle_s)
def handle_drift(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Restores what was changed or deleted out of band, applies changed Secret content, heals after failures."""
    if body.meta.get("deletionTimestamp"):
        return
    outcome = _one_pass(body, trigger="timer")
    if outcome.error and outcome.previous_phase == outcome.status.get("phase"):
        outcome.event = None  # already reported; a Warning per tick would bury the first one
    _apply(outcome, body.status, patch, body)


@kopf.on.delete(GROUP, VERSION, PLURAL, id="finalize")
def handle_delete(
    namespace: str, name: str, uid: str, spec: kopf.Spec, status: kopf.Status, body: kopf.Body, retry: int, **_: Any
) -> None:
    model = spec_model.parse(spec)
    if model.deletion_policy == "Retain" or model.suspend:
        passes.forget(uid)
        why = "deletionPolicy is Retain" if model.deletion_policy == "Retain" else "spec.suspend is true"
        kopf.event(
            body,
            type="Normal",
            reason="Retained",
            message=f"{why}: Airbyte resources and Airflow variables left in place",
        )
        return
    try:
        with passes.lock(uid):
            removed = passes.run_delete_pass(namespace, name, uid, model, status)
            passes.forget(uid)
    except PeerError as exc:
        if exc.transient:
            kopf.event(body, type="Warning", reason=exc.reason, message=f"cleanup waits: {exc}")
            raise kopf.TemporaryError(str(exc), delay=passes.backoff(retry)) from exc
        raise _give_up(body, exc) from exc
    except SpecError as exc:
        raise _give_up(body, exc) from exc
    kopf.event(body, type="Normal", reason="Deleted", message=f"removed {len(removed)} owned resource(s)")


def _give_up(body: kopf.Body, exc: Exception) -> kopf.PermanentError:
    # Without credentials nothing can be removed; keeping the finalizer would only wedge the namespace.
    msg = f"could not remove the owned Airbyte resources and Airflow variables ({exc}); remove them by hand"
    kopf.event(body, type="Warning", reason="CleanupFailed", message=msg)
    return kopf.PermanentError(msg)
