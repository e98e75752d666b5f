"""superset.port is the port of Superset's web server and Service: every client the chart writes uses
it (the import Job, the OpenMetadata Job and their waits, the Airflow pods' URL, the NetworkPolicy,
NOTES.txt's port-forward), none assumes 8088. The Airflow pods read it from a ConfigMap when they
start, so a change needs their restart: the README and the key's @param say how."""

from __future__ import annotations

import re

import pytest

from support.helm_render import REAL_SUBCHARTS, UMBRELLA, airflow_extra_env, containers, notes, render

PORT = 9000
URL = f"http://retailflow-superset:{PORT}"
#: the restart a port change needs, as the docs give it (the Airflow chart's scheduler Deployment)
RESTART = "kubectl -n <namespace> rollout restart deployment/<release>-scheduler"


@pytest.fixture(scope="module")
def rendered():
    return render(values={"superset": {"port": PORT}})


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def _wait_args(job: dict) -> list[str]:
    (wait,) = [c for c in containers(job) if c["name"] == "wait-for"]
    return wait["args"]


def test_the_service_and_the_pods_answer_on_it(rendered):
    assert rendered.get("Service", "retailflow-superset")["spec"]["ports"][0]["port"] == PORT
    (web,) = [c for c in containers(rendered.get("Deployment", "retailflow-superset"), init=False)]
    assert web["ports"] == [{"name": "http", "containerPort": PORT}]


@pytest.mark.parametrize(("job", "var"), [("retailflow-superset-dashboards", "RETAILFLOW_SUPERSET_URL"),
                                          ("retailflow-openmetadata-ingestion", "SUPERSET_URL")])
def test_the_jobs_call_and_wait_for_superset_on_it(rendered, job, var):
    doc = rendered.get("Job", job)
    (url,) = [_env(c)[var] for c in containers(doc, init=False) if var in _env(c)]
    assert url == URL
    assert f"retailflow-superset={URL}/health" in _wait_args(doc)
    assert "service/retailflow-superset" in doc["metadata"]["annotations"]["retailflow.io/waits-for"]


def test_the_airflow_pods_get_it(rendered):
    assert rendered.get("ConfigMap", "retailflow-superset-bundle")["data"]["superset-url"] == URL


class TestAirflowRestart:
    """Airflow's pods take the URL from the ConfigMap (configMapKeyRef, read at container start): the
    values handed to the Airflow chart are the same for every port, so `helm upgrade --set
    superset.port=...` does not roll them and the docs must say to restart the scheduler (it runs the
    tasks with the LocalExecutor)."""

    def test_a_port_change_leaves_the_airflow_pod_templates_as_they_were(self, rendered, defaults):
        assert airflow_extra_env(rendered) == airflow_extra_env(defaults)
        assert rendered.get("ConfigMap", "retailflow-superset-bundle")["data"]["superset-url"] != \
            defaults.get("ConfigMap", "retailflow-superset-bundle")["data"]["superset-url"]

    def test_the_port_key_says_to_restart_the_scheduler(self):
        (line,) = [l for l in (UMBRELLA / "values.yaml").read_text().splitlines() if "@param superset.port " in l]
        assert f"`{RESTART}`" in line

    def test_the_readme_says_to_restart_the_scheduler_after_a_port_change(self):
        text = re.sub(r"\s+", " ", (UMBRELLA / "README.md").read_text())
        (paragraph,) = [p for p in text.split(" - ") if f"`{RESTART}`" in p]
        assert "`superset.port`" in paragraph and "RETAILFLOW_SUPERSET_URL" in paragraph

    @pytest.mark.skipif("airflow" not in REAL_SUBCHARTS, reason="needs the real Airflow chart in charts/retailflow/charts/")
    def test_the_deployment_the_docs_restart_is_the_scheduler(self):
        rendered = render(release="shop")
        (scheduler,) = [d for d in rendered.upstream if d["kind"] == "Deployment" and d["metadata"]["name"] == "shop-scheduler"]
        assert "scheduler" in {c["name"] for c in scheduler["spec"]["template"]["spec"]["containers"]}


def test_the_network_policy_admits_it(rendered):
    (policy,) = [p for p in rendered.of_kind("NetworkPolicy")
                 if p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == "superset"
                 and "Ingress" in p["spec"]["policyTypes"]]
    ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule.get("ports", [])}
    assert ports == {PORT}


def test_notes_port_forward_to_it():
    text = notes({"superset": {"port": PORT}})
    (line,) = [l for l in text.splitlines() if "port-forward svc/retailflow-superset " in l]
    assert line.rstrip().endswith(f"svc/retailflow-superset 8088:{PORT}") and "http://localhost:8088" in line
