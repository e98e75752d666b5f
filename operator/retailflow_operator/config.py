"""Operator settings, read once from ``RETAILFLOW_*`` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


@dataclass(frozen=True)
class Settings:
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
    #: RETAILFLOW_MAX_WORKERS: threads running reconciles of different pipelines in parallel.
    max_workers: int = 16
    #: RETAILFLOW_RESOURCE_PREFIX: first part of every Airbyte resource name the operator owns.
    resource_prefix: str = "rf"

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            drift_interval_s=_float("RETAILFLOW_DRIFT_INTERVAL_S", cls.drift_interval_s),
            drift_idle_s=_float("RETAILFLOW_DRIFT_IDLE_S", cls.drift_idle_s),
            backoff_s=_float("RETAILFLOW_BACKOFF_S", cls.backoff_s),
            backoff_max_s=_float("RETAILFLOW_BACKOFF_MAX_S", cls.backoff_max_s),
            http_timeout_s=_float("RETAILFLOW_HTTP_TIMEOUT_S", cls.http_timeout_s),
            max_workers=int(os.environ.get("RETAILFLOW_MAX_WORKERS", cls.max_workers)),
            resource_prefix=os.environ.get("RETAILFLOW_RESOURCE_PREFIX", cls.resource_prefix),
        )


settings = Settings.from_env()
