"""The exceptions the engine raises for problems a user can fix, and for a run asked to stop."""


class IngestError(RuntimeError):
    """Bad input or an unreachable peer; the message (one line) says what to fix. Nothing half-written
    stays behind: each stream commits in one transaction or not at all."""


class IngestCancelled(Exception):
    """The run was asked to stop (``stop`` set, e.g. by SIGINT or SIGTERM): streams in flight rolled
    back, committed ones stay. ``result`` holds what committed and ``result.incomplete`` the rest."""

    def __init__(self, result):
        super().__init__(f"stopped: {len(result.streams)} stream(s) committed, {len(result.incomplete)} not")
        self.result = result
