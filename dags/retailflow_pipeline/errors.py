"""Errors the task package's steps share, and how its command lines report bad arguments."""

import argparse


class NotConfigured(Exception):
    """An optional step has no peer configured here (no Superset, no OpenMetadata): nothing to do. The
    DAG's task for it is skipped with this message (``tasks.StepSkipped``); the CLIs exit 2 with it."""


class OneLineParser(argparse.ArgumentParser):
    """argparse for the package's command lines: a bad argument is one line (no usage block), starting
    with the command's short ``name``, and exit 2."""

    def __init__(self, *args, name: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.name = name

    def error(self, message: str):
        self.exit(2, f"{self.name}: {message} (see --help)\n")

