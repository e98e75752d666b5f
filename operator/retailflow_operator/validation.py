"""Semantic checks of a spec that the CRD schema cannot express."""

from __future__ import annotations

from .cron import quartz_cron
from .errors import SpecError
from .spec_model import PipelineSpec
from .streams import stream_requests

# Airflow's secrets masker hides the value of any variable whose key contains one of these.
AIRFLOW_SENSITIVE_WORDS = (
    "access_token",
    "api_key",
    "apikey",
    "authorization",
    "passphrase",
    "passwd",
    "password",
    "private_key",
    "secret",
    "token",
)


def validate(spec: PipelineSpec) -> None:
    """Semantic checks the CRD schema cannot express."""
    stream_requests(spec)
    store = spec.store_locations
    if store and bool(store.s3_key) == bool(store.url):
        raise SpecError("spec.storeLocations: set exactly one of s3Key and url")
    prefix = str(spec.airflow.variable_prefix).lower()
    masked = [w for w in AIRFLOW_SENSITIVE_WORDS if w in prefix]
    if masked:
        raise SpecError(
            f"spec.airflow.variablePrefix: {prefix!r} contains {masked[0]!r}; Airflow masks the values of such "
            "variables when read back, so they could never be verified; choose another prefix"
        )
    if len(str(spec.schedule).split()) != 5:
        raise SpecError("spec.schedule: expected five cron fields (minute hour day-of-month month day-of-week)")
    if spec.engine == "airbyte" and spec.airbyte is None:
        raise SpecError(
            "spec.airbyte: required with engine airbyte (the Airbyte API, workspace and credentials the "
            "connections are created with); or set engine: direct"
        )
    if spec.engine == "airbyte" and spec.airbyte.sync_trigger == "airbyte":
        quartz_cron(spec.schedule)  # only Airbyte runs the schedule as Quartz
