"""The exceptions the engine raises for problems a user can fix, and for a run asked to stop."""

from urllib.parse import SplitResult, urlsplit


class IngestError(RuntimeError):
    """Bad input or an unreachable peer; the message (one line) says what to fix. Nothing half-written
    stays behind: each stream commits in one transaction or not at all."""


class IngestCancelled(Exception):
    """The run was asked to stop (``stop`` set, e.g. by SIGINT or SIGTERM): streams in flight rolled
    back, committed ones stay. ``result`` holds what committed and ``result.incomplete`` the rest."""

    def __init__(self, result):
        super().__init__(f"stopped: {len(result.streams)} stream(s) committed, {len(result.incomplete)} not")
        self.result = result


def split_url(url: str, what: str, shape: str) -> SplitResult:
    """``url``'s parts, its port read once: a malformed one (a port that is not a number or out of range,
    an unclosed IPv6 bracket) is an ``IngestError`` naming the problem, never the URL, which carries the
    password."""
    try:
        parts = urlsplit(url)
    except ValueError:  # the only one urlsplit raises: an unbalanced [ or ] around an IPv6 host
        raise IngestError(f"the {what} URL is malformed (an unbalanced [ or ] in its host): it must look like"
                          f" {shape}") from None
    try:
        parts.port  # noqa: B018 - parsed lazily: this raises for a bad port
    except ValueError:  # its text quotes the "port", which is the password when a / in it cut the URL short
        raise IngestError(f"the {what} URL is malformed (its port is not a number from 0 to 65535; a / in the"
                          f" password must be written %2F): it must look like {shape}") from None
    return parts

