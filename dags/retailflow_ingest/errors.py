"""The exceptions the engine raises for problems a user can fix, and for a run asked to stop; and the
two checks that put such a problem in one line: a database URL's, and a command line's.

The task package (``retailflow_pipeline``) imports the engine, so its command lines and the audit
take both checks from here."""

import argparse
import re
from urllib.parse import SplitResult, unquote, urlsplit


class IngestError(RuntimeError):
    """Bad input or an unreachable peer; the message (one line) says what to fix. Nothing half-written
    stays behind: each stream commits in one transaction or not at all."""


def first_line(exc: BaseException) -> str:
    """An exception's message, its first line only; its type's name when it has none."""
    text = str(exc)
    return text.splitlines()[0] if text.strip() else type(exc).__name__


class IngestFailed(IngestError):
    """One or more streams failed while the run's others may have committed: each failed stream's table
    and cursor are as they were. ``result`` holds what committed (``result.incomplete`` names the rest
    and why), ``failures`` each failed stream with its exception; the message is the first failure's,
    and the exception is chained from it."""

    def __init__(self, result, failures: list):
        name, first = failures[0]
        why = first_line(first)
        super().__init__((why if why.startswith(f"{name}:") else f"{name}: {why}")
                         + (f" (and {len(failures) - 1} more stream(s) failed)" if len(failures) > 1 else ""))
        self.result, self.failures = result, failures


class IngestCancelled(Exception):
    """The run was asked to stop (``stop`` set, e.g. by SIGINT or SIGTERM): streams in flight rolled
    back, committed ones stay. ``result`` holds what committed and ``result.incomplete`` the rest."""

    def __init__(self, result):
        super().__init__(f"stopped: {len(result.streams)} stream(s) committed, {len(result.incomplete)} not")
        self.result = result


class OneLineParser(argparse.ArgumentParser):
    """argparse for RetailFlow's command lines: a bad argument is one line (no usage block), starting
    with the command's short ``name``, and exit 2."""

    def __init__(self, *args, name: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.name = name

    def error(self, message: str):
        self.exit(2, f"{self.name}: {message} (see --help)\n")


#: the URL shapes messages name (never a URL itself: it carries the password), and the schemes taken
MYSQL_SHAPE = "mysql://USER:PASSWORD@HOST:PORT/DATABASE"
MYSQL_SCHEMES = ("mysql", "mysql+pymysql", "mariadb")
WAREHOUSE_SHAPE = "postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
WAREHOUSE_SCHEMES = ("postgresql", "postgres")


def url_problem(url: str, what: str, shape: str, schemes: tuple[str, ...], *, needs_database: bool = False,
                password_env: str | None = None) -> str | None:
    """Why ``url`` is not a URL of ``shape``, or None: its scheme one of ``schemes``, a host, a port
    from 1 to 65535 if any, with ``needs_database`` a database. With ``password_env`` the URL came on
    a command line, which every user can read: a password in it is a problem too (it belongs in
    ``password_env``), and the shape named is the one without. ``what`` names the URL as the user gave
    it (``the MySQL URL``, ``--mysql-url``, ``RETAILFLOW_WAREHOUSE_URL``). The answer never quotes the
    URL nor any part of it: a password with a stray ``/`` or ``#`` ends up in the host or port.

    Where ``shape`` has a user, a ``/``, ``?``, ``#`` or ``@`` written as such in the user or password
    is the fault named (each must be percent-encoded): a ``/``, ``?`` or ``#`` ends the host part
    before its ``@``, making the password a host or port, and a second ``@`` is split differently by
    urllib (the last) and libpq (the first). It shows as two ``@`` in the host part or one after it
    (in the path, the query or the fragment: an ``@`` in the database or a parameter is written %40 too,
    else a password holding ``?`` or ``/`` and an ``@`` after it would pass for a parameter).

    Its twin is ``url_problem`` in ``generator/retailflow_generator/db.py`` (a package of its own, which
    cannot import this one): the same faults in the same words, held equal by
    ``tests/unit/pipeline/test_url_checks.py``."""
    if password_env:
        shape = shape.replace(":PASSWORD@", "@")

    def fault(text: str) -> str:
        return f"{what} {text}: it must look like {shape}"

    carries_password = (f"{what} carries a password, which every user can read in the process list;"
                        f" set ${password_env} instead")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in schemes:
        starts = [f"{s}://" for s in schemes]
        either = starts[0] if len(starts) == 1 else f"{', '.join(starts[:-1])} or {starts[-1]}"
        return fault(f"does not start with {either}")

    # the host part ends at the first / ? or #, as urlsplit splits it
    host_part = re.split(r"[/?#]", rest, maxsplit=1)[0]
    after = rest[len(host_part):]
    # any @ but the one that ends the user and password: libpq splits at the first (and looks for it up
    # to the first /, past a ? or #), urllib at the last; a URL is taken only where both agree
    if "@" in shape and (host_part.count("@") > 1 or "@" in after):
        if password_env and ":" in rest.partition("@")[0]:
            return carries_password
        held = ("its user holds a /, #, ?, @ or :, which must be percent-encoded: / as %2F, # as %23,"
                " ? as %3F, @ as %40, : as %3A") if password_env else (
                "its user or password holds a /, #, ? or @, which must be percent-encoded: / as %2F,"
                " # as %23, ? as %3F, @ as %40; a : in the user as %3A")
        return fault(f"is malformed ({held}; an @ in the database or a parameter is written %40)")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # raised for the host's brackets only; its text quotes the host
        return fault("is malformed (an unbalanced [ or ] in its host)" if "IPv6 URL" in str(exc)
                     else "is malformed (its host in [ ] is not an IP address)")
    try:
        port = parts.port
    except ValueError:  # its text quotes the "port", which is the password when a / in it cut the URL short
        port = 0
    if port == 0:  # 0 parses, but no server listens on it
        return fault("is malformed (its port is not a number from 1 to 65535)")
    if not parts.hostname:
        return fault("names no host")
    if any(c.isspace() or not c.isprintable() for c in parts.hostname):
        return fault("is malformed (a space or control character in its host)")
    if needs_database and not parts.path.strip("/"):
        return fault("names no database")
    # libpq also takes a password as a parameter (?password=...)
    parameters = [unquote(pair.partition("=")[0]) for pair in re.split(r"[&;]", parts.query)]
    if password_env and (parts.password or "password" in parameters):
        return carries_password
    # libpq refuses a % not followed by two hex digits and quotes the whole value in its message,
    # the password included; urllib and pymysql keep it as it stands: a URL is taken only where all agree
    if re.search(r"%(?![0-9A-Fa-f]{2})", url):
        return fault("is malformed (a % in it is not followed by two hexadecimal digits: a % must start a"
                     " percent-encoding such as %25 for % itself)")
    return None


def without_password(text: str, url: str) -> str:
    """A driver's ``text`` about ``url``, one line, with the URL's password (as written and decoded;
    in the user part or a ``password=`` parameter) replaced by ``***``. libpq quotes a value it cannot
    decode whole (``forbidden value %00 in percent-encoded value: "<password>"``)."""
    parts = urlsplit(url)
    written = [parts.password or ""]
    for pair in re.split(r"[&;]", parts.query):
        key, _, value = pair.partition("=")
        if unquote(key) == "password":
            written.append(value)
    secrets = {s for w in written for s in (w, unquote(w)) if s}
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return " ".join(text.split())


def split_url(url: str, what: str, shape: str, schemes: tuple[str, ...], *,
              needs_database: bool = False) -> SplitResult:
    """``url``'s parts, once ``url_problem`` finds none; else an ``IngestError`` saying which."""
    problem = url_problem(url, what, shape, schemes, needs_database=needs_database)
    if problem:
        raise IngestError(problem)
    return urlsplit(url)
