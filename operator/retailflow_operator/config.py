"""Operator settings, read once from ``RETAILFLOW_*`` environment variables."""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


@dataclass(frozen=True)
class OperatorConfig:
    #: RETAILFLOW_DRIFT_INTERVAL_S: seconds between drift checks of each RetailPipeline.
    drift_interval_s: float = 300.0
    #: RETAILFLOW_DRIFT_IDLE_S: a drift check waits until the object has been unchanged this long.
    drift_idle_s: float = 10.0
    #: RETAILFLOW_BACKOFF_S: first retry delay after a peer (Airbyte, Airflow) is down or answers 5xx.
    backoff_s: float = 10.0
    #: RETAILFLOW_BACKOFF_MAX_S: cap of the exponential retry delay.
    backoff_max_s: float = 300.0
    #: RETAILFLOW_HTTP_TIMEOUT_S: timeout of each Airbyte or Airflow HTTP call.
    http_timeout_s: float = 30.0
    #: RETAILFLOW_MAX_WORKERS: threads running passes of different pipelines in parallel.
    max_workers: int = 16
    #: RETAILFLOW_RESOURCE_PREFIX: first part of every Airbyte resource name the operator owns.
    resource_prefix: str = "rf"
    #: RETAILFLOW_ALLOWED_HOSTS: comma-separated hosts (exact, or ``*.suffix``) the operator sends
    #: credentials to, directly (Airbyte, Airflow) or through Airbyte (MySQL, warehouse, lake).
    allowed_hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
    #: RETAILFLOW_SECRET_LABEL: label (``key=value``) a Secret must carry before the operator reads it.
    secret_label: str = "retailflow.io/credentials=true"
    #: RETAILFLOW_HMAC_KEY_FILE: file holding the key of the HMACs in ``status.secretHashes`` (a mounted
    #: Secret); without it a random key per process is used, and every restart re-sends the secrets once.
    hmac_key_file: str = ""
    hmac_key: bytes = field(default=b"", repr=False)

    @property
    def secret_label_pair(self) -> tuple[str, str]:
        key, _, value = self.secret_label.partition("=")
        return key, value

    @classmethod
    def from_env(cls) -> "OperatorConfig":
        return cls(
            drift_interval_s=_float("RETAILFLOW_DRIFT_INTERVAL_S", cls.drift_interval_s),
            drift_idle_s=_float("RETAILFLOW_DRIFT_IDLE_S", cls.drift_idle_s),
            backoff_s=_float("RETAILFLOW_BACKOFF_S", cls.backoff_s),
            backoff_max_s=_float("RETAILFLOW_BACKOFF_MAX_S", cls.backoff_max_s),
            http_timeout_s=_float("RETAILFLOW_HTTP_TIMEOUT_S", cls.http_timeout_s),
            max_workers=int(os.environ.get("RETAILFLOW_MAX_WORKERS", cls.max_workers)),
            resource_prefix=os.environ.get("RETAILFLOW_RESOURCE_PREFIX", cls.resource_prefix),
            allowed_hosts=_hosts(os.environ.get("RETAILFLOW_ALLOWED_HOSTS"), cls.allowed_hosts),
            secret_label=os.environ.get("RETAILFLOW_SECRET_LABEL", cls.secret_label),
            hmac_key_file=os.environ.get("RETAILFLOW_HMAC_KEY_FILE", ""),
            hmac_key=_hmac_key(os.environ.get("RETAILFLOW_HMAC_KEY_FILE", "")),
        )


def _hosts(raw: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if raw is None:
        return default
    return tuple(h.strip().lower() for h in raw.split(",") if h.strip())


def _hmac_key(path: str) -> bytes:
    if path:
        key = Path(path).read_bytes().strip()
        if len(key) < 16:
            raise SystemExit(f"RETAILFLOW_HMAC_KEY_FILE {path}: the key must be at least 16 bytes")
        return key
    log.warning("RETAILFLOW_HMAC_KEY_FILE is not set: using a random key for this process")
    return secrets.token_bytes(32)


settings = OperatorConfig.from_env()
