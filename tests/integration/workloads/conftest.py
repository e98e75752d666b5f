"""The real Airflow API server the operator writes its variables to (``support.peer_fixtures``)."""

from support.peer_fixtures import airflow  # noqa: F401 (fixture)
