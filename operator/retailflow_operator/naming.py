"""Names of what a pipeline owns: its ``namespace/name`` and the names of its Airbyte resources."""

from __future__ import annotations

#: Airbyte keeps actor and connection names in varchar(256) columns (airbytehq/airbyte-platform,
#: airbyte-db/db-lib/src/main/resources/configs_database/schema_dump.txt: actor.name, connection.name)
AIRBYTE_NAME_LIMIT = 256


def owner(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def resource_prefix(prefix: str, namespace: str, name: str) -> str:
    # "/" cannot occur in Kubernetes names, so the parts can never run into each other.
    return f"{prefix}/{namespace}/{name}/"


def resource_name(prefix: str, namespace: str, name: str, role: str) -> str:
    return resource_prefix(prefix, namespace, name) + role
