"""Kubernetes reads and writes the kopf handlers do not cover: referenced Secrets and the early status phase."""

from __future__ import annotations

import base64
import threading
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from .builders import SecretRef
from .errors import PeerError, SpecError

GROUP, VERSION, PLURAL = "retailflow.io", "v1alpha1", "retailpipelines"
_api: kubernetes.client.ApiClient | None = None
_lock = threading.Lock()


def api_client() -> kubernetes.client.ApiClient:
    global _api
    with _lock:
        if _api is None:
            try:
                kubernetes.config.load_incluster_config()
            except kubernetes.config.ConfigException:
                kubernetes.config.load_kube_config()
            _api = kubernetes.client.ApiClient()
        return _api


def read_secrets(namespace: str, refs: list[SecretRef]) -> dict[str, dict[str, str]]:
    """role -> logical key -> value; a missing Secret or key is a spec the user must fix."""
    core = kubernetes.client.CoreV1Api(api_client())
    cache: dict[str, dict[str, Any]] = {}
    out: dict[str, dict[str, str]] = {}
    for ref in refs:
        if ref.name not in cache:
            try:
                cache[ref.name] = core.read_namespaced_secret(ref.name, namespace).data or {}
            except ApiException as exc:
                if exc.status == 404:
                    literals = " ".join(f"--from-literal={k}=..." for k in ref.keys.values())
                    raise SpecError(
                        f"Secret {namespace}/{ref.name} (spec.{ref.role}.credentialsSecretRef) not found; "
                        f"create it: kubectl -n {namespace} create secret generic {ref.name} {literals}",
                        reason="SecretNotFound",
                    ) from None
                raise PeerError("Kubernetes", f"read Secret {ref.name}: HTTP {exc.status}", transient=True) from exc
            except OSError as exc:
                raise PeerError("Kubernetes", f"read Secret {ref.name}: {exc}", transient=True) from exc
        data = cache[ref.name]
        values: dict[str, str] = {}
        for logical, key in ref.keys.items():
            if key not in data:
                raise SpecError(
                    f"Secret {namespace}/{ref.name} has no key {key!r} (spec.{ref.role}.credentialsSecretRef); "
                    f"add it or point the ref at the right key",
                    reason="SecretKeyMissing",
                )
            values[logical] = base64.b64decode(data[key]).decode()
        out[ref.role] = values
    return out


def patch_status(namespace: str, name: str, status: dict[str, Any]) -> None:
    """Status written before a handler returns (kopf applies its own patch only at the end)."""
    custom = kubernetes.client.CustomObjectsApi(api_client())
    try:
        custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, {"status": status})
    except (ApiException, OSError):
        pass  # cosmetic: the final status patch follows anyway
