"""The two ways a pass can fail: the user must fix the spec, or a peer must come back."""

from __future__ import annotations


class SpecError(ValueError):
    """A spec that cannot work until the user changes it (or the Secrets it references)."""

    def __init__(self, message: str, reason: str = "InvalidSpec"):
        super().__init__(message)
        self.reason = reason


class PeerError(RuntimeError):
    """Airbyte or Airflow refused or failed a call; ``transient`` errors are retried with backoff."""

    def __init__(self, peer: str, message: str, transient: bool, status: int | None = None):
        super().__init__(f"{peer}: {message}")
        self.peer = peer
        self.transient = transient
        self.status = status

    @property
    def reason(self) -> str:
        return f"{self.peer}Unavailable" if self.transient else f"{self.peer}Rejected"
