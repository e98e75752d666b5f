"""Errors the task package's steps share. (Its command lines report bad arguments with the engine's
``retailflow_ingest.errors.OneLineParser``.)"""


class NotConfigured(Exception):
    """An optional step has no peer configured here (no Superset, no OpenMetadata): nothing to do. The
    DAG's task for it is skipped with this message (``tasks.StepSkipped``); the CLIs exit 2 with it."""
