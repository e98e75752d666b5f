"""What a pass reads: the Secrets of a spec, with the keys read from each, and whether it talks to Airbyte."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .errors import SpecError
from .spec_model import CredentialsRef, PipelineSpec


@dataclass(frozen=True)
class SecretRef:
    role: str
    name: str
    keys: dict[str, str]  # logical key -> key inside the Secret


AIRBYTE_ID_KINDS = ("sources", "destinations", "connections")


def airbyte_ids_in(status: Mapping[str, Any] | None) -> dict[str, dict[str, str]]:
    """The Airbyte ids a pipeline's status lists (what it created there), without the empty kinds."""
    ids = (status or {}).get("airbyte") or {}
    return {kind: dict(ids[kind]) for kind in AIRBYTE_ID_KINDS if ids.get(kind)}


def uses_airbyte(spec: PipelineSpec, status: Mapping[str, Any] | None) -> bool:
    """Whether a pass talks to Airbyte at all: with engine airbyte, and with engine direct only while
    the status still lists resources this pipeline created in Airbyte before (to remove them). Without
    a spec.airbyte block there is no Airbyte to talk to (a lite install has none)."""
    if spec.airbyte is None:
        return False
    return spec.engine == "airbyte" or bool(airbyte_ids_in(status))


def secret_refs(spec: PipelineSpec, airbyte: bool = True) -> list[SecretRef]:
    """Every Secret a pass reads, with the keys read from it. The MySQL, warehouse and lake credentials
    only with engine airbyte: they go into the Airbyte source and destinations and nowhere else (with
    engine direct the DAGs ingest with the connections the chart gives Airflow), so a direct pipeline
    reads, and needs, only the Airflow Secret. Airbyte's only when ``airbyte`` (``uses_airbyte``): with
    engine direct and nothing left in Airbyte, its Secret may not exist."""

    def ref(role: str, creds: CredentialsRef) -> SecretRef:
        if not creds.name:
            raise SpecError(f"spec.{role}.credentialsSecretRef.name: required")
        return SecretRef(role, creds.name, dict(creds.keys))

    refs = []
    if spec.engine == "airbyte":
        refs += [
            ref("mysql", spec.mysql.credentials),
            ref("warehouse", spec.warehouse.credentials),
            ref("lake", spec.lake.credentials),
        ]
    refs.append(ref("airflow", spec.airflow.credentials))
    if airbyte and spec.airbyte is not None:
        refs.append(ref("airbyte", spec.airbyte.credentials))
    return refs
