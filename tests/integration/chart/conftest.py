"""Stand-ins the chart's clients run against: the emulated Kubernetes API enforcing the rendered release's
RBAC, the Airbyte fake and a real Airflow API server (see ``tests/support/``)."""

import pytest

from support.helm_render import Rendered, render
from support.peer_fixtures import airbyte, airflow  # noqa: F401 (fixtures)


@pytest.fixture(scope="session")
def release() -> Rendered:
    """The umbrella chart rendered with its defaults (the operator chart is a real subchart in it)."""
    return render()


