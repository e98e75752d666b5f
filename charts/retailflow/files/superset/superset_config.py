"""Superset configuration of RetailFlow, read by the local Superset (hack/superset.sh) and by the
chart's Superset pods (mounted from a ConfigMap as ``SUPERSET_CONFIG_PATH``). Everything that
differs between the two comes from the environment, so this one file serves both:

- ``SUPERSET_SECRET_KEY`` (required): signs sessions and encrypts the stored database passwords.
- ``SUPERSET_DATABASE_URI`` (required): the metadata database, ``postgresql+psycopg2://…``.
"""

import os
from datetime import timedelta

from superset.key_value.types import JsonKeyValueCodec, PickleKeyValueCodec


def _required(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise RuntimeError(f"{name} is not set: Superset needs it to start (see superset_config.py)")
    return value


SECRET_KEY = _required("SUPERSET_SECRET_KEY")
SQLALCHEMY_DATABASE_URI = _required("SUPERSET_DATABASE_URI")

# Served over plain HTTP on localhost or behind `kubectl port-forward`: no HTTPS redirect, no HSTS.
TALISMAN_ENABLED = False
SESSION_COOKIE_SECURE = False
# No telemetry calls leave the cluster (they would time out without internet).
SCARF_ANALYTICS = False
# The demo has no example data sets; keep the menu to RetailFlow's dashboards.
SUPERSET_LOAD_EXAMPLES = False

# Every cache lives in the metadata database (Superset's key-value table), so it is shared by
# all gunicorn workers and all pods without another server: a per-process SimpleCache would lose
# dashboard filter state and explore state whenever the next request lands on another worker.
_METASTORE = "superset.extensions.metastore_cache.SupersetMetastoreCache"
CACHE_CONFIG = {
    "CACHE_TYPE": _METASTORE,
    "CACHE_DEFAULT_TIMEOUT": int(timedelta(hours=1).total_seconds()),
    "CACHE_KEY_PREFIX": "retailflow_",
    "CODEC": PickleKeyValueCodec(),
}
FILTER_STATE_CACHE_CONFIG = {
    "CACHE_TYPE": _METASTORE,
    "CACHE_DEFAULT_TIMEOUT": int(timedelta(days=90).total_seconds()),
    "REFRESH_TIMEOUT_ON_RETRIEVAL": True,
    "CODEC": JsonKeyValueCodec(),
}
EXPLORE_FORM_DATA_CACHE_CONFIG = {
    "CACHE_TYPE": _METASTORE,
    "CACHE_DEFAULT_TIMEOUT": int(timedelta(days=7).total_seconds()),
    "REFRESH_TIMEOUT_ON_RETRIEVAL": True,
    "CODEC": JsonKeyValueCodec(),
}
# Query results are not cached: the pipeline rebuilds the marts on every run, and a cached result
# would show yesterday's numbers after today's run. The marts are small and indexed by dbt.
DATA_CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}

FEATURE_FLAGS = {
    "DASHBOARD_NATIVE_FILTERS": True,
}
