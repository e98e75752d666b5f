"""Register RetailFlow in OpenMetadata: run the OpenMetadata ingestion workflows.

The workflows are the chart's templates (``charts/retailflow/files/openmetadata/*.yaml``); each names
its settings as ``$VARIABLES`` that ``metadata ingest`` expands from its environment. This module
builds that environment from RetailFlow's own settings and runs the ``metadata`` CLI of
OpenMetadata's ingestion framework (its own virtual environment: it cannot share Airflow's) once per
workflow, in order:

1. ``mysql``: the source database's tables, columns and keys;
2. ``postgres``: the warehouse's raw, staging and marts schemas;
3. ``dbt``: lineage raw -> staging -> marts, descriptions and tests, from dbt's artifacts;
4. ``postgres-profiler`` (only with ``RETAILFLOW_OPENMETADATA_PROFILER=1``): table and column profiles;
5. ``superset`` (when ``RETAILFLOW_SUPERSET_URL`` is set): dashboards and charts, linked to the marts;
6. ``airflow`` (when ``RETAILFLOW_AIRFLOW_URL`` is set): the DAGs and their tasks.

Environment:

- ``RETAILFLOW_OPENMETADATA_URL`` (required; else :class:`NotConfigured`): the server, e.g.
  ``http://openmetadata:8585`` (``/api`` is added when missing);
- ``RETAILFLOW_OPENMETADATA_TOKEN``: a bot's JWT (the ingestion bot's, from OpenMetadata's settings);
  without it, ``RETAILFLOW_OPENMETADATA_ADMIN_PASSWORD`` (and ``…_ADMIN_EMAIL``, default
  ``admin@open-metadata.org``): the run logs in as that basic-auth admin and reads the ingestion
  bot's JWT, as the chart's ingestion Job does. With neither, nothing is configured
  (:class:`NotConfigured`);
- ``RETAILFLOW_OPENMETADATA_RUN_WORKFLOWS``: comma-separated workflows to run when none are named
  (default: every workflow whose peer is configured, as listed above);
- ``RETAILFLOW_MYSQL_URL``, ``RETAILFLOW_WAREHOUSE_URL``: the databases (passwords come from them);
- ``RETAILFLOW_DBT_TARGET_DIR``: dbt's artifacts (default ``dbt/target`` of the project);
- ``RETAILFLOW_DBT_RUN_RESULTS``: the ``run_results.json`` of the last ``dbt build`` (default: the one in
  the target directory; ``dbt docs generate`` overwrites that one with results that hold no tests).
  The dbt workflow reads a temporary copy in which passing tests carry a message, which the 1.13
  client needs to record their results (see :func:`_run_results_with_messages`);
- ``RETAILFLOW_SUPERSET_URL``, ``RETAILFLOW_SUPERSET_USERNAME``, ``RETAILFLOW_SUPERSET_PASSWORD``;
- ``RETAILFLOW_AIRFLOW_URL``, ``RETAILFLOW_AIRFLOW_USERNAME``, ``RETAILFLOW_AIRFLOW_PASSWORD``;
- ``RETAILFLOW_OPENMETADATA_METADATA_BIN``: the ``metadata`` CLI (default ``.tools/openmetadata/bin/metadata``);
- ``RETAILFLOW_OPENMETADATA_WORKFLOWS``: the folder of workflow templates (default: the chart's);

the defaults are below ``$RETAILFLOW_HOME`` (``paths``).

Secrets travel only in the child process's environment; they are never written to a file or put on
a command line. ``python -m retailflow_pipeline.governance [--check] [workflow ...]`` runs them
(``--check`` only parses them with OpenMetadata's own parser, offline); ``--help`` says how.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from retailflow_ingest.errors import (
    MYSQL_SCHEMES,
    MYSQL_SHAPE,
    WAREHOUSE_SCHEMES,
    WAREHOUSE_SHAPE,
    OneLineParser,
    url_problem,
)
from retailflow_pipeline.catalog import PORTS
from retailflow_pipeline.errors import NotConfigured
from retailflow_pipeline.paths import dbt_target_dir, openmetadata_metadata_bin, openmetadata_workflows_dir

#: Every workflow in the order it must run (dbt attaches to the tables the postgres workflow made).
ORDER = ("mysql", "postgres", "dbt", "postgres-profiler", "superset", "airflow")
#: The `metadata` subcommand of a workflow: profiler workflows run under `metadata profile`.
COMMAND = {"postgres-profiler": "profile"}


class WorkflowFailed(RuntimeError):
    """A ``metadata ingest`` run failed; the message ends with the tail of its output."""


class BadSetting(ValueError):
    """A setting that cannot be right (a server URL of another shape, an unknown workflow): the CLI
    exits 2; the message never shows a secret."""


class ServerUnreachable(RuntimeError):
    """Nothing answers at the server's URL (checked with one request before any workflow runs)."""


@dataclass(frozen=True)
class Workflow:
    name: str
    path: Path


def _url_parts(url: str, what: str, shape: str, schemes: tuple[str, ...]) -> dict[str, str]:
    """The workflow settings of a database URL, checked as the engine checks it (``url_problem``), and
    with a user: else a ``ValueError`` that names the fault and never quotes the URL."""
    problem = url_problem(url, what, shape, schemes, needs_database=True)
    if problem:
        raise ValueError(problem)
    parts = urlsplit(url)
    if not parts.username:
        raise ValueError(f"{what} names no user: it must look like {shape}")
    return {
        "HOST": parts.hostname,
        "PORT": str(parts.port or ""),
        "USER": unquote(parts.username),
        "PASSWORD": unquote(parts.password or ""),
        "DATABASE": unquote(parts.path.strip("/")),
    }


def _server(env: Mapping[str, str]) -> str:
    """The server's API base (``…/api``); :class:`NotConfigured` without a URL or any credentials."""
    url = env.get("RETAILFLOW_OPENMETADATA_URL", "").rstrip("/")
    if not url:
        raise NotConfigured("RETAILFLOW_OPENMETADATA_URL is not set: no OpenMetadata server to register in")
    problem = _server_url_problem(url)
    if problem:
        raise BadSetting(f"{problem} (e.g. http://openmetadata:8585)")
    if not env.get("RETAILFLOW_OPENMETADATA_TOKEN") and not env.get("RETAILFLOW_OPENMETADATA_ADMIN_PASSWORD"):
        raise NotConfigured("neither RETAILFLOW_OPENMETADATA_TOKEN nor RETAILFLOW_OPENMETADATA_ADMIN_PASSWORD is set: "
                            "no credentials for OpenMetadata (give a bot's JWT: Settings > Bots > ingestion-bot)")
    return url if url.endswith("/api") else f"{url}/api"


def _server_url_problem(url: str) -> str | None:
    """Why ``url`` is not ``http(s)://HOST[:PORT]`` (``/api`` may follow), or None. Never quotes it: a
    user, a password or a query may carry a secret. Scheme, host and port are checked as every
    RetailFlow URL is (``retailflow_ingest.errors.url_problem``)."""
    what, shape = "RETAILFLOW_OPENMETADATA_URL", "http(s)://HOST[:PORT]"
    problem = url_problem(url, what, shape, ("http", "https"))
    if problem:
        return problem
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        return (f"{what} carries a user or password (the credentials are RETAILFLOW_OPENMETADATA_TOKEN's):"
                f" it must look like {shape}")
    if parts.path not in ("", "/api") or parts.query or parts.fragment:
        return f"{what} has more than a host and port (only /api may follow): it must look like {shape}"
    return None


def check_server(api: str, timeout: float = 10) -> None:
    """One quick request (``GET /v1/system/version``, which needs no login) before any workflow runs:
    ``ServerUnreachable`` in one line if nothing answers, where each workflow would otherwise retry and
    fail with a page of the client's output. Any HTTP answer will do: the workflows say what is wrong."""
    try:
        with urllib.request.urlopen(f"{api}/v1/system/version", timeout=timeout):  # noqa: S310 - http(s) only
            pass
    except urllib.error.HTTPError:
        return
    except urllib.error.URLError as exc:
        raise ServerUnreachable(f"OpenMetadata at {api} does not answer: {exc.reason}") from None
    except (OSError, http.client.HTTPException) as exc:  # a timeout while reading, a server that is not HTTP
        raise ServerUnreachable(f"OpenMetadata at {api} does not answer: {exc!r}") from None


def bot_token(env: Mapping[str, str], timeout: float = 30) -> str:
    """``RETAILFLOW_OPENMETADATA_TOKEN``, else the ingestion bot's JWT, read as the basic-auth admin
    (``POST /v1/users/login`` with the base64 password, then ``GET /v1/users/name/ingestion-bot``)."""
    if env.get("RETAILFLOW_OPENMETADATA_TOKEN"):
        return env["RETAILFLOW_OPENMETADATA_TOKEN"]
    api = _server(env)
    email = env.get("RETAILFLOW_OPENMETADATA_ADMIN_EMAIL") or "admin@open-metadata.org"
    password = base64.b64encode(env["RETAILFLOW_OPENMETADATA_ADMIN_PASSWORD"].encode()).decode()
    try:
        login = _http_json("POST", f"{api}/v1/users/login", {"email": email, "password": password}, None, timeout)
        bot = _http_json("GET", f"{api}/v1/users/name/ingestion-bot?fields=authenticationMechanism", None,
                         login["accessToken"], timeout)
        return bot["authenticationMechanism"]["config"]["JWTToken"]
    except urllib.error.HTTPError as exc:
        what = "the admin login was refused" if "/login" in exc.url else f"{exc.url} answered {exc.code}"
        raise ValueError(f"OpenMetadata at {api}: {what} (HTTP {exc.code}); check "
                         "RETAILFLOW_OPENMETADATA_ADMIN_PASSWORD or give RETAILFLOW_OPENMETADATA_TOKEN") from None
    except urllib.error.URLError as exc:
        raise ValueError(f"OpenMetadata at {api} does not answer: {exc.reason}") from None
    except (KeyError, TypeError) as exc:
        raise ValueError(f"OpenMetadata at {api}: the ingestion bot has no JWT ({exc!r})") from None


def _http_json(method: str, url: str, body: dict | None, token: str | None, timeout: float) -> dict:
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data, method=method, headers=headers),
                                timeout=timeout) as response:
        return json.loads(response.read())


def workflow_env(env: Mapping[str, str], token: str | None = None) -> dict[str, str]:
    """The variables the workflow templates read, from RetailFlow's settings (no I/O: ``token``, the
    bot's JWT, defaults to ``RETAILFLOW_OPENMETADATA_TOKEN``; :func:`bot_token` finds one)."""
    api = _server(env)
    token = token or env.get("RETAILFLOW_OPENMETADATA_TOKEN")
    if not token:
        raise ValueError("no bot JWT: set RETAILFLOW_OPENMETADATA_TOKEN (or let bot_token() read it as the admin)")
    out = {
        "OPENMETADATA_HOST_PORT": api,
        "OPENMETADATA_JWT_TOKEN": token,
        "DBT_TARGET_DIR": env.get("RETAILFLOW_DBT_TARGET_DIR") or str(dbt_target_dir(env)),
    }
    out["DBT_RUN_RESULTS"] = env.get("RETAILFLOW_DBT_RUN_RESULTS") or f"{out['DBT_TARGET_DIR']}/run_results.json"
    if env.get("RETAILFLOW_MYSQL_URL"):
        mysql = _url_parts(env["RETAILFLOW_MYSQL_URL"], "RETAILFLOW_MYSQL_URL", MYSQL_SHAPE, MYSQL_SCHEMES)
        mysql["PORT"] = mysql["PORT"] or str(PORTS["mysql"])
        out |= {f"MYSQL_{k}": v for k, v in mysql.items()}
    if env.get("RETAILFLOW_WAREHOUSE_URL"):
        warehouse = _url_parts(env["RETAILFLOW_WAREHOUSE_URL"], "RETAILFLOW_WAREHOUSE_URL", WAREHOUSE_SHAPE,
                               WAREHOUSE_SCHEMES)
        warehouse["PORT"] = warehouse["PORT"] or str(PORTS["postgresql"])
        out |= {f"WAREHOUSE_{k}": v for k, v in warehouse.items()}
    for service in ("SUPERSET", "AIRFLOW"):
        if env.get(f"RETAILFLOW_{service}_URL"):
            out[f"{service}_URL"] = env[f"RETAILFLOW_{service}_URL"].rstrip("/")
            out[f"{service}_USERNAME"] = env.get(f"RETAILFLOW_{service}_USERNAME", "admin")
            out[f"{service}_PASSWORD"] = env.get(f"RETAILFLOW_{service}_PASSWORD", "")
    return out


def selected(env: Mapping[str, str], names: Sequence[str] | None = None) -> list[Workflow]:
    """The workflows to run: ``names`` (in the canonical order), else those whose peers are configured."""
    folder = openmetadata_workflows_dir(env)
    if names:
        unknown = sorted(set(names) - set(ORDER))
        if unknown:
            raise BadSetting(f"unknown workflow(s) {', '.join(unknown)}; known: {', '.join(ORDER)}")
        wanted = [n for n in ORDER if n in names]
    elif env.get("RETAILFLOW_OPENMETADATA_RUN_WORKFLOWS"):
        return selected(env, [n.strip() for n in env["RETAILFLOW_OPENMETADATA_RUN_WORKFLOWS"].split(",") if n.strip()])
    else:
        wanted = [n for n in ORDER if n in {"mysql", "postgres"}]
        dbt_dir = dbt_target_dir(env)
        if (dbt_dir / "manifest.json").exists():
            wanted.append("dbt")
        if env.get("RETAILFLOW_OPENMETADATA_PROFILER") in {"1", "true", "yes"}:
            wanted.append("postgres-profiler")
        wanted += [n for n in ("superset", "airflow") if env.get(f"RETAILFLOW_{n.upper()}_URL")]
    missing = [n for n in wanted if not (folder / f"{n}.yaml").exists()]
    if missing:
        raise FileNotFoundError(f"no workflow template for {', '.join(missing)} in {folder}")
    return [Workflow(n, folder / f"{n}.yaml") for n in wanted]


def _metadata_bin(env: Mapping[str, str]) -> str:
    binary = str(openmetadata_metadata_bin(env))
    if not Path(binary).exists():
        raise FileNotFoundError(f"{binary} is missing: run `make openmetadata-env` (or set RETAILFLOW_OPENMETADATA_METADATA_BIN)")
    return binary


def _child_env(env: Mapping[str, str], token: str | None = None) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ"}}
    return keep | workflow_env(env, token)


def run(env: Mapping[str, str] = os.environ, workflows: Sequence[str] | None = None, log=print) -> dict:
    """Run the workflows against ``RETAILFLOW_OPENMETADATA_URL``; return a summary per workflow.

    Raises :class:`NotConfigured` without a server URL, :class:`BadSetting` for settings that cannot
    be right, :class:`ServerUnreachable` when nothing answers at the URL (before any workflow runs) and
    :class:`WorkflowFailed` when a run fails (the runs before it stay done: OpenMetadata's PUTs are
    idempotent, a rerun is safe).
    """
    api = _server(env)  # raises NotConfigured first: without a server nothing else matters
    chosen = selected(env, workflows)  # the settings, checked before the server is asked anything
    check_server(api)
    binary = _metadata_bin(env)
    child_env = _child_env(env, bot_token(env))
    summary: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="retailflow-governance-") as scratch:
        if any(w.name == "dbt" for w in chosen):
            _warn_on_docs_run_results(Path(child_env["DBT_RUN_RESULTS"]), log)
            child_env["DBT_RUN_RESULTS"] = str(_run_results_with_messages(Path(child_env["DBT_RUN_RESULTS"]),
                                                                           Path(scratch)))
        _run_each(binary, chosen, child_env, summary, log)
    return {"server": child_env["OPENMETADATA_HOST_PORT"], "workflows": summary}


def _run_each(binary: str, chosen: Sequence[Workflow], child_env: dict[str, str], summary: dict, log) -> None:
    for workflow in chosen:
        command = COMMAND.get(workflow.name, "ingest")
        log(f"governance: {workflow.name}: metadata {command} -c {workflow.path}")
        started = time.monotonic()
        proc = subprocess.run([binary, command, "-c", str(workflow.path)], env=child_env,
                              capture_output=True, text=True, check=False)
        seconds = round(time.monotonic() - started, 1)
        output = proc.stdout + proc.stderr
        if proc.returncode:
            tail = "\n".join(output.strip().splitlines()[-60:])
            raise WorkflowFailed(f"workflow {workflow.name} failed (exit {proc.returncode}) after {seconds} s:\n{tail}")
        summary[workflow.name] = {"seconds": seconds, **_status(output)}
        log(f"governance: {workflow.name}: done in {seconds} s {summary[workflow.name]}")


#: dbt statuses of a test that was executed (``success`` is a node that was only compiled, by ``dbt run``)
_EXECUTED_TEST_STATUSES = {"pass", "fail", "warn", "error"}


def _run_results_with_messages(path: Path, scratch: Path) -> Path:
    """A copy of dbt's run_results.json in which every executed test has a ``message``.

    dbt leaves ``message`` null on a passing test, and openmetadata-ingestion 1.13's dbt source
    (``DbtSource.add_dbt_test_result``) skips every result whose message is empty as "compiled-only",
    so no passing test would get a result. 2.0 narrowed that to ``status == success`` (upstream issue
    open-metadata/OpenMetadata#29824). The copy sets the message to the status on executed tests only,
    which is 2.0's rule; ``path`` is returned untouched when it cannot be read.
    """
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        return path
    for result in results.get("results") or []:
        if (str(result.get("unique_id", "")).startswith("test.") and result.get("message") is None
                and result.get("status") in _EXECUTED_TEST_STATUSES):
            result["message"] = result["status"]
    copy = scratch / "run_results.json"
    copy.write_text(json.dumps(results))
    return copy


def _warn_on_docs_run_results(path: Path, log) -> None:
    """`dbt docs generate` overwrites run_results.json with results that hold no tests: say so."""
    try:
        which = json.loads(path.read_text()).get("args", {}).get("which")
    except (OSError, ValueError):
        return
    if which not in {"build", "test"}:
        command = "docs generate" if which == "generate" else which
        log(f"governance: warning: {path} was written by `dbt {command}`, not a build: the dbt tests get no results "
            "(set RETAILFLOW_DBT_RUN_RESULTS to a copy of the build's run_results.json)")


_SUMMARY_LINE = re.compile(r"- (Processed records|Warnings|Errors): (\d+)\s*$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _status(output: str) -> dict:
    """The counts of the CLI's closing summary of its source step (the first summary it prints)."""
    counts: dict[str, int] = {}
    for line in output.splitlines():
        match = _SUMMARY_LINE.search(_ANSI.sub("", line))
        if match:
            key = {"Processed records": "records", "Warnings": "warnings", "Errors": "errors"}[match.group(1)]
            counts.setdefault(key, int(match.group(2)))
    return counts


def check(env: Mapping[str, str] = os.environ, workflows: Sequence[str] | None = None) -> dict[str, str]:
    """Parse each workflow with OpenMetadata's own parser, offline; return {name: "ok" or the error}."""
    names = list(workflows) if workflows else list(ORDER)
    return {Path(p).stem: r for p, r in check_files([w.path for w in selected(env, names)], env).items()}


def check_files(paths: Sequence[Path], env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Parse workflow files in one run of OpenMetadata's environment; return {path: "ok" or the error}.

    Settings that are not given are filled with examples of the right form (``CHECK_SAMPLE``): the
    parser checks the templates' structure, keys and value types, not where a real run connects.
    """
    python = Path(_metadata_bin(env)).with_name("python")
    sample = {**CHECK_SAMPLE, **{k: v for k, v in env.items() if v}}
    proc = subprocess.run([str(python), "-c", _CHECK_SCRIPT, *map(str, paths)],
                          env=_child_env(sample, sample["RETAILFLOW_OPENMETADATA_TOKEN"]),
                          capture_output=True, text=True, check=False)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"workflow check could not run: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


#: Example settings for `check` (offline parsing), overridden by whatever the environment sets.
CHECK_SAMPLE = {
    "RETAILFLOW_OPENMETADATA_URL": f"http://localhost:{PORTS['openmetadata']}",
    "RETAILFLOW_OPENMETADATA_TOKEN": "example.jwt.token",
    "RETAILFLOW_MYSQL_URL": f"mysql://retail:example@localhost:{PORTS['mysql']}/retail",
    "RETAILFLOW_WAREHOUSE_URL": f"postgresql://warehouse:example@localhost:{PORTS['postgresql']}/warehouse",
    "RETAILFLOW_SUPERSET_URL": f"http://localhost:{PORTS['superset']}",
    "RETAILFLOW_SUPERSET_PASSWORD": "example",
    "RETAILFLOW_AIRFLOW_URL": f"http://localhost:{PORTS['airflow']}",
    "RETAILFLOW_AIRFLOW_PASSWORD": "example",
}


# Runs in the OpenMetadata environment: load each file as `metadata ingest` does (env expansion
# included) and parse it with the same graceful parser, which names a misspelt key precisely.
_CHECK_SCRIPT = """
import json, pathlib, sys, warnings
warnings.simplefilter("ignore")
from metadata.config.common import load_config_file
from metadata.ingestion.api.parser import parse_workflow_config_gracefully
results = {}
for path in sys.argv[1:]:
    try:
        parse_workflow_config_gracefully(load_config_file(pathlib.Path(path)))
        results[path] = "ok"
    except Exception as exc:
        results[path] = f"{type(exc).__name__}: {exc}"
print(json.dumps(results))
sys.exit(0 if all(v == "ok" for v in results.values()) else 1)
"""


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m retailflow_pipeline.governance`` (``make governance``, ``make governance-check``).

    Exit codes: 0 done (``--check``: every workflow parses); 1 a workflow failed, the server does not
    answer, or (``--check``) a workflow does not parse; 2 bad arguments or settings, or no server or
    credentials configured (one line)."""
    parser = OneLineParser(
        name="governance",
        prog="python -m retailflow_pipeline.governance",
        description="Register RetailFlow in OpenMetadata: run its ingestion workflows against"
                    " $RETAILFLOW_OPENMETADATA_URL (http(s)://HOST[:PORT]) with the bot JWT in"
                    " $RETAILFLOW_OPENMETADATA_TOKEN (or the admin's $RETAILFLOW_OPENMETADATA_ADMIN_PASSWORD);"
                    " the databases' settings are $RETAILFLOW_MYSQL_URL and $RETAILFLOW_WAREHOUSE_URL.")
    parser.add_argument("--check", action="store_true",
                        help="only parse the workflows named (default: all of them) with OpenMetadata's own"
                             " parser, offline: no server needed")
    parser.add_argument("workflows", nargs="*", metavar="WORKFLOW",
                        help=f"workflows to run, of {', '.join(ORDER)} (default: $RETAILFLOW_OPENMETADATA_RUN_WORKFLOWS,"
                             " else every one whose peer is configured)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.workflows) - set(ORDER))
    if unknown:
        parser.error(f"unknown workflow(s) {', '.join(unknown)}; known: {', '.join(ORDER)}")
    names = args.workflows or None
    try:
        if args.check:
            results = check(os.environ, names)
            for name, result in results.items():
                print(f"{name}: {result}")
            return 0 if all(r == "ok" for r in results.values()) else 1
        summary = run(os.environ, names)
    except NotConfigured as exc:
        print(f"governance: {exc} (make governance OM_URL=…, with OM_TOKEN exported or RETAILFLOW_OPENMETADATA_TOKEN in .env.local)", file=sys.stderr)
        return 2
    except BadSetting as exc:
        print(f"governance: {exc}", file=sys.stderr)
        return 2
    except (WorkflowFailed, ServerUnreachable, FileNotFoundError, ValueError) as exc:
        print(f"governance: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
