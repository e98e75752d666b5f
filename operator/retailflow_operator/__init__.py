"""RetailFlow operator: RetailPipeline -> Airbyte connections + Airflow variables.

``kopf run -m retailflow_operator`` imports this package, which registers the handlers.
"""

from . import handlers as handlers  # noqa: F401  (registration side effect)
