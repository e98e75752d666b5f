"""The one exception the engine raises for problems a user can fix."""


class IngestError(RuntimeError):
    """Bad input or an unreachable database; the message says what to fix. Nothing half-written stays
    behind: each stream commits in one transaction or not at all."""
