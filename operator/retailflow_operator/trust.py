"""Where the operator may send credentials, and keeping their values out of every message.

See "Trust model" in operator/README.md: a RetailPipeline names hosts and Secrets; the operator reads
only Secrets labelled for it (``kube.read_secrets``) and sends their values only to hosts its own
configuration allows (``check_hosts``).
"""

from __future__ import annotations

import fnmatch
from typing import Iterable, Mapping
from urllib.parse import urlsplit

from .errors import SpecError
from .spec_model import PipelineSpec

REDACTED = "<redacted>"


def _host_of_url(url: str | None) -> str | None:
    if not url:
        return None
    return (urlsplit(str(url)).hostname or "").lower() or None


def credential_hosts(spec: PipelineSpec) -> dict[str, str]:
    """spec field -> host that receives credentials: directly (the operator calls Airbyte and
    Airflow with their credentials) or through Airbyte (which logs in to MySQL, the warehouse and
    the lake with the credentials the operator gives it)."""
    hosts = {"spec.airflow.apiUrl": _host_of_url(spec.airflow.api_url)}
    if spec.airbyte is not None:
        hosts |= {
            "spec.airbyte.apiUrl": _host_of_url(spec.airbyte.api_url),
            "spec.airbyte.tokenUrl": _host_of_url(spec.airbyte.token_url),
        }
    if spec.engine == "airbyte":
        hosts |= {
            "spec.mysql.host": str(spec.mysql.host or "").lower() or None,
            "spec.warehouse.host": str(spec.warehouse.host or "").lower() or None,
            "spec.lake.endpoint": _host_of_url(spec.lake.endpoint),
        }
    return {k: v for k, v in hosts.items() if v}


def host_allowed(host: str, allowed: Iterable[str]) -> bool:
    return any(host == pattern or (pattern.startswith("*.") and fnmatch.fnmatch(host, pattern)) for pattern in allowed)


def check_hosts(spec: PipelineSpec, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    refused = {f: h for f, h in credential_hosts(spec).items() if not host_allowed(h, allowed)}
    if refused:
        where = ", ".join(f"{f} ({h})" for f, h in sorted(refused.items()))
        raise SpecError(
            f"{where}: not in the operator's allowed hosts, so no credentials are sent there; use one of "
            f"{', '.join(allowed) or '(none)'} or ask the operator's administrator to allow it "
            "(RETAILFLOW_ALLOWED_HOSTS, chart value allowedHosts)",
            reason="HostNotAllowed",
        )


def redact(text: str, secrets: Mapping[str, Mapping[str, str]]) -> str:
    """``text`` with every secret value read from the Secrets (passwords, secret keys) replaced."""
    values = sorted(
        {v for role in secrets.values() for k, v in role.items() if ("password" in k or "secret" in k) and v},
        key=len,
        reverse=True,
    )
    for value in values:
        text = text.replace(value, REDACTED)
    return text
