"""Kubernetes reads and writes the kopf handlers do not cover: the cluster check and the namespaces served
at start, referenced Secrets and the early status phase."""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import threading
from collections.abc import Iterable
from typing import Any

import click
import kubernetes
from kubernetes.client.exceptions import ApiException

from .crd import GROUP, PLURAL, VERSION
from .errors import PeerError, SpecError
from .secret_refs import SecretRef

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


class ClusterUnreachable(RuntimeError):
    """No Kubernetes API answers with the configuration found (in-cluster or kubeconfig)."""


def kubeconfig_path() -> str:
    return os.environ.get("KUBECONFIG") or os.path.expanduser(kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION)


def check_cluster(timeout_s: float = 5.0) -> None:
    """Load the configuration and ask the API server for its version; one-line ClusterUnreachable if not."""
    try:
        client = api_client()
    except (kubernetes.config.ConfigException, OSError, TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ClusterUnreachable(
            f"no Kubernetes configuration: not in a cluster, and kubeconfig {kubeconfig_path()}: {first}"
        ) from None
    host = client.configuration.host
    pool_log = logging.getLogger("urllib3.connectionpool")
    level = pool_log.level
    pool_log.setLevel(logging.ERROR)  # its retry warnings would bury the one line that matters
    try:
        kubernetes.client.VersionApi(client).get_code(_request_timeout=timeout_s)
    except ApiException:
        return  # it answered: reachable (kopf reports a credentials problem itself)
    except Exception as exc:  # noqa: BLE001 - urllib3 raises many kinds; all mean "not reachable"
        cause = getattr(exc, "reason", None) or exc
        reason = str(cause).rsplit(": ", 1)[-1].strip("\"')") or cause.__class__.__name__
        raise ClusterUnreachable(
            f"cannot reach the Kubernetes API at {host} ({reason}; kubeconfig {kubeconfig_path()})"
        ) from None
    finally:
        pool_log.setLevel(level)


#: A namespace's name as the API server validates it (an RFC 1123 label of at most 63 characters).
_NAMESPACE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def namespaces_given() -> tuple[str, ...]:
    """The namespaces ``kopf run`` was told to serve: its ``--namespace`` options and, as kopf's CLI
    adds it, the legacy ``KOPF_RUN_NAMESPACE`` variable (kopf ``cli.py``, ``run``).

    kopf passes them to no handler. They are read from the click context of the ``kopf run`` command,
    which is current in the thread that runs kopf's event loop, so only an async handler sees it.
    Empty when kopf was started without its CLI (``kopf.run()`` or ``kopf.operator()`` in a program)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return ()
    given = tuple(ctx.params.get("namespaces") or ())
    legacy = os.environ.get("KOPF_RUN_NAMESPACE")
    return given + ((legacy,) if legacy else ())


def namespace_patterns(namespaces: Iterable[str]) -> list[str]:
    """The entries that are not one namespace's name: kopf's globs (``*``, ``?``), negations (``!``) and
    comma lists (kopf ``_cogs/structs/references.py``, ``match_namespace``), or anything else no
    namespace can be called."""
    return [ns for ns in namespaces if len(ns) > 63 or not _NAMESPACE_NAME.fullmatch(ns)]


def read_secrets(namespace: str, refs: list[SecretRef], label: tuple[str, str] | None = None) -> dict[str, dict[str, str]]:
    """role -> logical key -> value; a missing, unlabelled or undecodable Secret is a spec the user must fix.

    ``label`` (key, value): a Secret without it is refused, unread (see the trust model in the README).
    """
    core = kubernetes.client.CoreV1Api(api_client())
    cache: dict[str, dict[str, Any]] = {}
    out: dict[str, dict[str, str]] = {}
    for ref in refs:
        if ref.name not in cache:
            try:
                secret = core.read_namespaced_secret(ref.name, namespace)
                labels = (secret.metadata.labels if secret.metadata else None) or {}
                if label and labels.get(label[0]) != label[1]:
                    raise SpecError(
                        f"Secret {namespace}/{ref.name} (spec.{ref.role}.credentialsSecretRef) is not labelled "
                        f"{label[0]}={label[1]}, so the operator does not read it; label it: "
                        f"kubectl -n {namespace} label secret {ref.name} {label[0]}={label[1]}",
                        reason="SecretNotLabelled",
                    )
                cache[ref.name] = secret.data or {}
            except ApiException as exc:
                if exc.status == 404:
                    keys = ", ".join(f"{k}=..." for k in ref.keys.values())
                    then = f", then label it {label[0]}={label[1]}" if label else ""
                    raise SpecError(
                        f"Secret {namespace}/{ref.name} (spec.{ref.role}.credentialsSecretRef) not found; "
                        f"create it: kubectl -n {namespace} create secret generic {ref.name} --from-env-file=/dev/stdin"
                        f" with the lines {keys} on its standard input (not --from-literal: a command line shows"
                        f" in ps){then}",
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
            try:
                values[logical] = base64.b64decode(data[key], validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise SpecError(
                    f"Secret {namespace}/{ref.name} key {key!r} (spec.{ref.role}.credentialsSecretRef) is not "
                    "UTF-8 text; store the credential as text",
                    reason="SecretNotText",
                ) from None
        out[ref.role] = values
    return out


def patch_status(namespace: str, name: str, status: dict[str, Any]) -> None:
    """Status written before a handler returns (kopf applies its own patch only at the end)."""
    custom = kubernetes.client.CustomObjectsApi(api_client())
    try:
        custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, {"status": status})
    except (ApiException, OSError):
        pass  # cosmetic: the final status patch follows anyway
