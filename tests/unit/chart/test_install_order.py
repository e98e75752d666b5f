"""Install order: `helm install --wait` and `helm upgrade --wait` played over the rendered release
(support.helm_install, written from Helm 4's install, hooks and wait code).

Runs on the full render when the real upstream charts sit in charts/retailflow/charts/ (fetched by
hand, never committed), and on the stand-ins otherwise; the report header says which.
"""

from __future__ import annotations

import pytest

from support import helm_install
from support.helm_install import UPSTREAM, declared_waits, own_workloads, play, servers_referenced, wait_loops
from support.helm_render import NAMESPACE, REAL_SUBCHARTS, RELEASE, REPO, VARIANTS, chart_values, render

UPSTREAM_CHARTS = ("airbyte", "airflow", "openmetadata", "opensearch")


def enabled_upstream(values: dict) -> set[str]:
    return {c for c in UPSTREAM_CHARTS if (values.get(c) or {}).get("enabled", True)}


def user_secrets(values: object) -> frozenset[str]:
    """The Secrets a variant's values name as the user's own (created before the install)."""
    found = set()
    if isinstance(values, dict):
        for key, value in values.items():
            if key in ("existingSecret", "secretName", "secretRef") and isinstance(value, str):
                found.add(f"secret/{value}")
            found |= user_secrets(value)
    return frozenset(found)


def where(values: dict) -> dict:
    """The model's namespace arguments for a variant: the release namespace, Airbyte's, and the Secret
    names Airbyte's pods read (global.database / global.storage)."""
    effective = chart_values(values)
    return {"namespace": NAMESPACE,
            "upstream_namespaces": {"airbyte": effective["global"]["retailflow"]["airbyte"]["namespace"] or NAMESPACE},
            "names": {"database_secret": effective["global"]["database"]["secretName"],
                      "storage_secret": effective["global"]["storage"]["secretName"]}}


def module_source() -> dict[str, str]:
    """`python -m <module>` of our images, read from the repository's packages."""
    sources = {}
    for project in ("dags", "generator", "operator"):
        for path in (REPO / project).glob("*/**/*.py"):
            if ".venv" in path.parts:
                continue
            module = ".".join(path.relative_to(REPO / project).with_suffix("").parts)
            sources[module.removesuffix(".__main__")] = path.read_text()
    return sources


def services_of(docs: list[dict], upstream: set[str]) -> set[str]:
    names = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    for up in UPSTREAM:
        if up.chart in upstream:
            names |= {s.format(release=RELEASE) for s in up.serves}
    return names


def test_real_subcharts_are_known_upstream_charts():
    """Which render ran is in the session header (conftest.py); real charts must be ones the model knows."""
    assert set(REAL_SUBCHARTS) <= set(UPSTREAM_CHARTS)


@pytest.mark.parametrize("wait_for_jobs", [False, True], ids=["wait", "wait-for-jobs"])
@pytest.mark.parametrize("action", ["install", "upgrade"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_helm_completes(variant, action, wait_for_jobs):
    values = VARIANTS[variant]
    outcome = play(render(values=values).docs, release=RELEASE, upstream=enabled_upstream(values),
                   action=action, wait_for_jobs=wait_for_jobs, existing=user_secrets(values), **where(values))
    assert not outcome.problems, "\n".join(outcome.problems + ["", "sequence:"] + outcome.steps)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_job_waits_for_the_servers_it_needs(variant):
    values = VARIANTS[variant]
    docs = render(values=values).docs
    services = services_of(docs, enabled_upstream(values))
    missing = {}
    for job in [d for d in own_workloads(docs) if d["kind"] == "Job"]:
        needed = {f"service/{s}" for s in servers_referenced(job, docs, services)}
        if needed - declared_waits(job):
            missing[job["metadata"]["name"]] = sorted(needed - declared_waits(job))
    assert not missing, f"Jobs that use a server without waiting for it (retailflow.waitFor): {missing}"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_wait_loop_is_declared(variant):
    docs = render(values=VARIANTS[variant]).docs
    sources = module_source()
    undeclared = {}
    for workload in own_workloads(docs):
        loops = wait_loops(workload, docs, sources)
        if loops and not declared_waits(workload):
            undeclared[f"{workload['kind']} {workload['metadata']['name']}"] = loops
    assert not undeclared, f"wait loops without a {helm_install.WAITS_FOR} annotation: {undeclared}"


def test_the_waits_are_where_the_chart_readme_says(defaults):
    """The chart README's install-order table names every hook and every waiting workload."""
    readme = (REPO / "charts" / "retailflow" / "README.md").read_text()
    table = readme.split("## Install order", 1)[1].split("\n## ", 1)[0]
    for doc in defaults.docs:
        annotations = doc["metadata"].get("annotations") or {}
        if doc["kind"] in ("Job", "Deployment", "StatefulSet") and (
                "helm.sh/hook" in annotations or helm_install.WAITS_FOR in annotations):
            name = doc["metadata"]["name"]
            # release-scoped names are written <release>-… (<fullname>-… for the chart's own Jobs, named
            # after retailflow.fullname, which is the release name here); the shared services keep their
            # fixed names
            spelled = {f"`{name}`", f"`{name.replace(RELEASE, '<release>', 1)}`", f"`{name.replace(RELEASE, '<fullname>', 1)}`"}
            assert any(s in table for s in spelled), \
                f"{doc['kind']} {name} is missing from the README's install-order table"


# The model itself, on small releases that carry each of the install blockers it exists to find.

def _job(name: str, hook: str | None = None, weight: int = 0, waits: str = "", **spec) -> dict:
    annotations = {}
    if hook:
        annotations |= {"helm.sh/hook": hook, "helm.sh/hook-weight": str(weight)}
    if waits:
        annotations[helm_install.WAITS_FOR] = waits
    return {"kind": "Job", "metadata": {"name": name, "annotations": annotations,
                                        "labels": {"helm.sh/chart": "retailflow-0.1.0"}},
            "spec": {"template": {"spec": {"containers": [{"name": "main", **spec}]}}}}


def _served(kind: str, name: str, hook: str | None = None, weight: int = 0, waits: str = "") -> list[dict]:
    labels = {"app": name}
    annotations = {"helm.sh/hook": hook, "helm.sh/hook-weight": str(weight)} if hook else {}
    if waits:
        annotations[helm_install.WAITS_FOR] = waits
    return [
        {"kind": kind, "metadata": {"name": name, "annotations": annotations},
         "spec": {"template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "main"}]}}}},
        {"kind": "Service", "metadata": {"name": name, "annotations": dict(annotations) if hook else {}},
         "spec": {"selector": labels}},
    ]


def test_the_model_finds_a_deployment_that_waits_for_a_post_install_hook():
    docs = _served("Deployment", "superset", waits="job/superset-init") + [
        _job("superset-init", "post-install,post-upgrade")]
    (problem,) = play(docs, release="r", upstream=set()).problems
    assert problem.startswith("deadlock: helm install --wait waits for Deployment superset")
    assert "Job superset-init (a post-install,post-upgrade hook (weight 0)) does not exist yet" in problem


def test_the_model_finds_the_database_race_before_airbyte_bootloader():
    datastores = _served("StatefulSet", "retailflow-postgresql", "pre-install", -15) + _served(
        "StatefulSet", "retailflow-minio", "pre-install", -15)
    problems = play(datastores, release="r", upstream={"airbyte"}).problems
    assert [p.split(" ready when")[0] for p in problems] == [
        "race: Pod r-bootloader (a pre-install,pre-upgrade hook (weight 0)) needs service/retailflow-minio",
        "race: Pod r-bootloader (a pre-install,pre-upgrade hook (weight 0)) needs service/retailflow-postgresql",
    ]
    guarded = datastores + [_job("datastores-ready", "pre-install,pre-upgrade", -10,
                                 waits="service/retailflow-postgresql,service/retailflow-minio")]
    assert play(guarded, release="r", upstream={"airbyte"}).problems == []


def test_the_model_finds_a_hook_that_waits_for_a_server_created_after_it():
    docs = _served("Deployment", "superset") + [_job("early", "pre-install", 0, waits="service/superset")]
    (problem,) = play(docs, release="r", upstream=set()).problems
    assert problem.startswith("deadlock: Helm waits for Job early (a pre-install hook (weight 0)) to finish")


def test_the_checks_find_an_undeclared_loop_and_an_unwaited_server():
    job = _job("seed", "post-install", command=["sh", "-c", "until mysql -h db; do sleep 5; done"],
               env=[{"name": "HOST", "value": "db"}])
    assert wait_loops(job, [job], {}) == ["main: until mysql -h db; do sleep 5; done"]
    assert servers_referenced(job, [job], {"db", "d"}) == {"db"}
    assert declared_waits(job) == set()


def test_module_sources_cover_the_modules_the_jobs_run():
    sources = module_source()
    assert "while" in sources["retailflow_pipeline.dashboards"]  # it waits for Superset itself


def test_the_model_finds_airflow_pods_waiting_for_a_post_install_migration_job():
    """The Airflow chart's default (migrateDatabaseJob.useHelmHooks: true) under helm --wait."""
    migrations = _job("r-run-airflow-migrations", "post-install,post-upgrade", 1)
    release = [migrations, *_served("StatefulSet", "retailflow-postgresql")]
    problems = play(release, release="r", upstream={"airflow"}).problems
    assert len(problems) == 4 and all(p.startswith("deadlock: helm install --wait waits for Deployment r-") for p in problems)
    assert "waits for job/r-run-airflow-migrations: Job r-run-airflow-migrations (a post-install,post-upgrade hook" in problems[0]
    migrations["metadata"]["annotations"].clear()  # useHelmHooks: false, as our values set it
    assert play(release, release="r", upstream={"airflow"}).problems == []


def test_the_model_looks_up_secrets_and_services_in_the_right_namespace():
    """Airbyte in its own namespace: a Secret of the same name in the release namespace does not start
    its pods, and a qualified host names the Service of that namespace only."""
    def in_ns(doc: dict, ns: str) -> dict:
        doc["metadata"]["namespace"] = ns
        return doc

    secret = in_ns({"kind": "Secret", "metadata": {"name": "db"}}, "app")
    server, service = (in_ns(d, "ab") for d in _served("Deployment", "server"))
    server["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}]
    client = in_ns(_job("client", "post-install", 0, waits="service/server.ab.svc"), "app")
    problems = play([secret, server, service, client], release="r", upstream=set(), namespace="app").problems
    assert problems[0].startswith("deadlock: helm install --wait waits for Deployment ab/server")
    assert all("secret/ab/db: nothing in the release creates it" in p for p in problems), problems
    assert play([secret, in_ns(dict(secret, metadata={"name": "db"}), "ab"), server, service, client],
                release="r", upstream=set(), namespace="app").problems == []
    wrong = in_ns(_job("client", "post-install", 0, waits="service/server"), "app")
    (problem,) = play([secret, in_ns(dict(secret, metadata={"name": "db"}), "ab"), server, service, wrong],
                      release="r", upstream=set(), namespace="app").problems
    assert "service/server: nothing in the release serves it" in problem
