"""Trigger a DAG run on an Airflow (its REST API) and follow it, printing each task's state changes.

``python -m retailflow_pipeline.runs retail_pipeline --conf '{"full_refresh": true}'`` (what
``make demo`` calls) unpauses the DAG, waits until the DAG processor has parsed it, triggers a run,
prints every task whose state changes while it waits, and exits 0 when the run succeeds, 1 when it
fails (naming the failed tasks and the end of their logs).

Settings: ``--url`` (default ``$RETAILFLOW_AIRFLOW_URL`` or ``http://127.0.0.1:$RETAILFLOW_AIRFLOW_PORT``,
the catalog's Airflow port by default), ``--username`` (default ``admin``) and the password from
``$RETAILFLOW_AIRFLOW_ADMIN_PASSWORD`` (``.env.local``, through ``hack/with-env``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import requests

from retailflow_pipeline.catalog import PORTS

FINAL_RUN_STATES = {"success", "failed"}
#: how long a DAG id may be missing while the Airflow serves other DAGs before it counts as unknown
UNKNOWN_DAG_GRACE = 20.0


class AirflowAPI:
    """The few calls of Airflow 3's REST API (``/api/v2``) a run needs, with a bearer token."""

    def __init__(self, url: str, username: str, password: str, timeout: float = 30):
        self.url = url.rstrip("/")
        self.username, self._password = username, password
        self.timeout = timeout
        self.session = requests.Session()
        self._token: str | None = None
        self._token_at = 0.0

    def __repr__(self) -> str:
        return f"AirflowAPI({self.url!r}, user={self.username!r})"

    def token(self) -> str:
        if self._token is None or time.monotonic() - self._token_at > 600:
            resp = self.session.post(f"{self.url}/auth/token", json={"username": self.username,
                                                                     "password": self._password}, timeout=self.timeout)
            if resp.status_code in (401, 403):
                raise SystemExit(f"runs: Airflow at {self.url} refused user {self.username!r} (wrong password?)")
            resp.raise_for_status()
            self._token, self._token_at = resp.json()["access_token"], time.monotonic()
        return self._token

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token()}"}
        return self.session.request(method, f"{self.url}/api/v2{path}", headers=headers, timeout=self.timeout, **kwargs)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self.call(method, path, **kwargs)
        if resp.status_code >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {resp.status_code}: {resp.text[:500]}")
        return resp.json()

    def wait_for_dag(self, dag_id: str, timeout: float = 300, *, grace: float | None = None,
                     poll: float | None = None, echo: Callable[[str], None] = print) -> dict[str, Any]:
        """The DAG once the DAG processor has parsed it (fails early on its import error). While the
        Airflow serves other DAGs but not this one for ``grace`` seconds, the id is taken as unknown
        (``LookupError`` naming the DAGs it has) instead of waiting ``timeout`` for it."""
        grace = UNKNOWN_DAG_GRACE if grace is None else grace
        poll = min(2.0, grace / 4) if poll is None else poll
        started = next_note = time.monotonic()
        others_since: float | None = None
        while True:
            resp = self.call("GET", f"/dags/{dag_id}")
            if resp.status_code == 200:
                return resp.json()
            errors = self.json("GET", "/importErrors").get("import_errors", [])
            if errors:
                text = "\n".join(f"{e['filename']}:\n{e['stack_trace'][-1500:]}" for e in errors)
                raise RuntimeError(f"the DAG processor reports import errors:\n{text}")
            known = sorted(d["dag_id"] for d in self.json("GET", "/dags", params={"limit": 100}).get("dags", []))
            now = time.monotonic()
            if known:
                others_since = now if others_since is None else others_since
                if now - others_since >= grace:
                    raise LookupError(f"no DAG {dag_id!r} on {self.url}; its DAGs: {', '.join(known)}")
            if now - started > timeout:
                raise TimeoutError(f"DAG {dag_id} did not appear in {timeout:.0f} s (is the dag-processor running?)")
            if now >= next_note:  # never silent: a line at once, then every 30 s
                echo(f"runs: waiting for the DAG processor to parse {dag_id} ({now - started:.0f} s of at most"
                     f" {timeout:.0f} s)")
                next_note = now + 30
            time.sleep(poll)

    def trigger(self, dag_id: str, conf: dict[str, Any], *, run_id: str | None = None,
                logical_date: str | None = None) -> dict[str, Any]:
        self.json("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        body: dict[str, Any] = {"logical_date": logical_date, "conf": conf}
        if run_id:
            body["dag_run_id"] = run_id
        return self.json("POST", f"/dags/{dag_id}/dagRuns", json=body)

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.json("GET", f"/dags/{dag_id}/dagRuns/{run_id}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            page = self.json("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                             params={"limit": 100, "offset": len(out)})
            out += page["task_instances"]
            if not page["task_instances"] or len(out) >= page["total_entries"]:
                return out

    def log_tail(self, dag_id: str, run_id: str, ti: dict[str, Any], chars: int = 2500) -> str:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/logs/{max(ti.get('try_number') or 1, 1)}"
        params = {"full_content": "true"}
        if ti.get("map_index", -1) >= 0:
            params["map_index"] = str(ti["map_index"])
        resp = self.call("GET", path, params=params, headers={"Accept": "application/json"})
        if resp.status_code != 200:
            return f"(log unavailable: HTTP {resp.status_code})"
        content = resp.json().get("content")
        if isinstance(content, list):
            lines = [c.get("event", "") if isinstance(c, dict) else str(c) for c in content]
            text = "\n".join(x for x in lines if x)
        else:
            text = str(content)
        return text[-chars:]


def task_label(ti: dict[str, Any]) -> str:
    return ti["task_id"] + (f"[{ti['map_index']}]" if ti.get("map_index", -1) >= 0 else "")


def follow(api: AirflowAPI, dag_id: str, run_id: str, *, timeout: float = 3600, poll: float = 2.0,
           echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Print each task's state as it changes until the run ends; returns the final run."""
    started = time.monotonic()
    seen: dict[str, str | None] = {}
    while True:
        try:
            run = api.run(dag_id, run_id)
            tis = api.task_instances(dag_id, run_id)
        except (requests.ConnectionError, requests.Timeout) as exc:
            # a busy api-server (it also serves the running tasks) may answer late: keep waiting
            echo(f"  {time.monotonic() - started:6.0f}s  (Airflow API slow to answer: {type(exc).__name__}; retrying)")
            time.sleep(poll)
            continue
        for ti in sorted(tis, key=lambda t: (t.get("start_date") or "~", t["task_id"])):
            label, state = task_label(ti), ti.get("state")
            if seen.get(label, "?") != state and state is not None:
                seen[label] = state
                echo(f"  {time.monotonic() - started:6.0f}s  {label:<72} {state}")
        if run["state"] in FINAL_RUN_STATES:
            return run
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"run {run_id} of {dag_id} still {run['state']} after {timeout:.0f} s")
        time.sleep(poll)


def default_url() -> str:
    return os.environ.get("RETAILFLOW_AIRFLOW_URL") or f"http://127.0.0.1:{os.environ.get('RETAILFLOW_AIRFLOW_PORT') or PORTS['airflow']}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m retailflow_pipeline.runs", description=__doc__.splitlines()[0])
    p.add_argument("dag_id")
    p.add_argument("--conf", default="{}", help="the run's conf, JSON (default {})")
    p.add_argument("--url", default=default_url())
    p.add_argument("--username", default=os.environ.get("RETAILFLOW_AIRFLOW_USERNAME") or "admin")
    p.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the run (default 3600)")
    args = p.parse_args(argv)
    password = os.environ.get("RETAILFLOW_AIRFLOW_ADMIN_PASSWORD")
    if not password:
        p.error("RETAILFLOW_AIRFLOW_ADMIN_PASSWORD is not set (make airflow writes it to .env.local)")
    try:
        conf = json.loads(args.conf)
    except json.JSONDecodeError as exc:
        p.error(f"--conf is not JSON: {exc}")

    api = AirflowAPI(args.url, args.username, password)
    began = time.monotonic()
    try:
        api.wait_for_dag(args.dag_id)
        run = api.trigger(args.dag_id, conf)
    except LookupError as exc:  # a DAG id this Airflow does not have: bad input
        print(f"runs: {exc}", file=sys.stderr)
        return 2
    except (requests.ConnectionError, RuntimeError, TimeoutError) as exc:
        print(f"runs: {exc}", file=sys.stderr)
        return 1
    run_id = run["dag_run_id"]
    print(f"runs: triggered {args.dag_id} run {run_id} on {args.url}; task states as they change:")
    final = follow(api, args.dag_id, run_id, timeout=args.timeout)
    took = time.monotonic() - began
    tis = api.task_instances(args.dag_id, run_id)
    counts: dict[str, int] = {}
    for ti in tis:
        counts[ti.get("state") or "none"] = counts.get(ti.get("state") or "none", 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    if final["state"] == "success":
        print(f"runs: {args.dag_id} run {run_id} succeeded in {took:.0f} s ({summary})")
        return 0
    print(f"runs: {args.dag_id} run {run_id} FAILED after {took:.0f} s ({summary})", file=sys.stderr)
    for ti in tis:
        if ti.get("state") == "failed":
            print(f"--- {task_label(ti)} (end of its log) ---\n{api.log_tail(args.dag_id, run_id, ti)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
