"""What kopf logs about the objects it handles (its ``kopf.objects`` logger) in this process, for tests
to wait on what kopf did (a timer's pass ended, an object's handling cycle finished) instead of
sleeping for as long as that usually takes."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager


class KopfObjectLog(logging.Handler):
    """Counts kopf's per-object messages, e.g. ``Timer 'drift' succeeded.`` (INFO, after each timer
    pass) or ``Handling cycle is finished, waiting for new changes.`` (DEBUG: ``kopf run --verbose``)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def count(self, message: str) -> int:
        return sum(1 for seen in list(self.messages) if seen == message)

    def wait(self, message: str, times: int = 1, timeout: float = 20) -> None:
        """Wait until kopf has logged ``message`` ``times`` more times than it had so far."""
        target = self.count(message) + times
        deadline = time.monotonic() + timeout
        while self.count(message) < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for kopf to log {message!r} {times} more time(s)")
            time.sleep(0.05)


@contextmanager
def kopf_object_log() -> Iterator[KopfObjectLog]:
    log = KopfObjectLog()
    logger = logging.getLogger("kopf.objects")
    logger.addHandler(log)
    try:
        yield log
    finally:
        logger.removeHandler(log)
