"""A minimal kopf operator, not the RetailFlow one: it proves the emulated Kubernetes API is realistic
enough for kopf (tests/unit/support/test_kopf_on_emulator.py).

It records every handler call in ``CALLS`` (kopf runs in a thread of the test process), adds its
finalizer, writes status and posts an Event, as the RetailFlow operator does.
"""

import kopf

CALLS: list[tuple[str, str, object]] = []
RESOURCE = ("retailflow.io", "v1alpha1", "retailpipelines")


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: object) -> None:
    settings.persistence.finalizer = "retailflow.io/probe-finalizer"
    settings.posting.level = 0  # post every event, debug included
    # Short server-side watch timeouts make kopf reconnect (and resume) during the test.
    settings.watching.server_timeout = 2


@kopf.on.create(*RESOURCE, id="reconcile")
def created(name: str, spec: kopf.Spec, meta: kopf.Meta, body: kopf.Body, patch: kopf.Patch,
            **_: object) -> dict[str, object]:
    CALLS.append(("create", name, dict(spec)))
    # Phases and fields the RetailPipeline status schema declares, so a real API server keeps them.
    patch.status["phase"] = "Ready"
    patch.status["observedGeneration"] = meta.get("generation")
    kopf.info(body, reason="Reconciled", message=f"created {name}")
    return {"created": True}


@kopf.on.update(*RESOURCE, id="reconcile")
def updated(name: str, spec: kopf.Spec, meta: kopf.Meta, patch: kopf.Patch, **_: object) -> None:
    CALLS.append(("update", name, dict(spec)))
    patch.status["phase"] = "Reconciling"
    patch.status["observedGeneration"] = meta.get("generation")


@kopf.on.delete(*RESOURCE, id="cleanup")
def deleted(name: str, **_: object) -> None:
    CALLS.append(("delete", name, None))
