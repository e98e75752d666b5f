"""Render harness for the Helm charts: `helm template` on a sandbox copy of charts/.

`helm template` refuses to render a chart whose Chart.yaml lists dependencies missing from its
charts/ folder, even when they are disabled, and `helm dependency build` needs the internet. So
the sandbox gets the local operator chart (the `file://` dependency) plus, for each remote
dependency, the real chart when it sits in charts/retailflow/charts/ (`<name>-<version>.tgz` or an
unpacked `<name>/` of that version, fetched by hand and never committed: see `REAL_SUBCHARTS`), else
an empty stand-in chart with the same name and version. The stand-ins render nothing
of the upstream chart; one of them (Airflow) renders only the values that the real chart
passes through `tpl`, so that the umbrella's tpl wiring is checked too. Every stand-in document
carries the label `retailflow.test/stand-in` and is kept apart from the chart's own documents.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
CHARTS = REPO / "charts"
UMBRELLA = CHARTS / "retailflow"
OPERATOR = CHARTS / "retailflow-operator"
CRD_FILE = OPERATOR / "crds" / "retailpipelines.yaml"
#: The lite profile's values file (no Airbyte, OpenMetadata or OpenSearch; engine direct).
LITE_VALUES = UMBRELLA / "values-lite.yaml"
#: Airbyte in a namespace of its own (for a release in NAMESPACE).
AIRBYTE_NAMESPACE_VALUES = UMBRELLA / "values-airbyte-namespace.yaml"
KUBERNETES_VERSION = "1.35.0"
STAND_IN_LABEL = "retailflow.test/stand-in"
RELEASE = "retailflow"
NAMESPACE = "retailflow"

# What the real Airflow chart renders with tpl, and nothing else.
_STAND_IN_TEMPLATES = {
    "airflow": """apiVersion: v1
kind: ConfigMap
metadata:
  name: stand-in-airflow-extra-env
  labels: {"retailflow.test/stand-in": "airflow"}
data:
  extraEnv: {{ tpl (.Values.extraEnv | default "") . | quote }}
""",
}


def _helm_binary() -> str:
    local = REPO / ".tools" / "bin" / "helm"
    if local.exists():
        return str(local)
    found = shutil.which("helm")
    if not found:
        pytest.fail("helm is missing: run `make tools` (hack/tools.sh puts it in .tools/bin)")
    return found


HELM = _helm_binary()


def _real_subchart(name: str, version: str) -> pathlib.Path | None:
    """The real upstream chart of this version in charts/retailflow/charts/, if one was put there."""
    archive = UMBRELLA / "charts" / f"{name}-{version}.tgz"
    if archive.exists():
        return archive
    unpacked = UMBRELLA / "charts" / name / "Chart.yaml"
    if unpacked.exists() and str(yaml.safe_load(unpacked.read_text()).get("version")) == str(version):
        return unpacked.parent
    return None


def _remote_dependencies() -> list[dict]:
    deps = yaml.safe_load((UMBRELLA / "Chart.yaml").read_text())["dependencies"]
    return [d for d in deps if not d["repository"].startswith("file://")]


#: The remote dependencies rendered from their real charts (the others are stand-ins).
REAL_SUBCHARTS = sorted(d["name"] for d in _remote_dependencies() if _real_subchart(d["name"], d["version"]))


def _build_sandbox(root: pathlib.Path) -> pathlib.Path:
    """Copy charts/ (symlinks resolved, as `helm package` would) and add the dependencies."""
    for chart in (UMBRELLA, OPERATOR):
        # the chart's own charts/ (dependencies, maybe fetched by hand) is rebuilt below
        top = str(chart)
        shutil.copytree(chart, root / chart.name, symlinks=False,
                        ignore=lambda folder, names, top=top: ["charts"] if folder == top else [])
    umbrella = root / UMBRELLA.name
    deps = yaml.safe_load((umbrella / "Chart.yaml").read_text())["dependencies"]
    (umbrella / "charts").mkdir(exist_ok=True)
    for dep in deps:
        target = umbrella / "charts" / dep["name"]
        if dep["repository"].startswith("file://"):
            shutil.copytree(OPERATOR, target, symlinks=False)
            continue
        real = _real_subchart(dep["name"], dep["version"])
        if real is not None and real.is_file():
            shutil.copy(real, umbrella / "charts" / real.name)
            continue
        if real is not None:
            shutil.copytree(real, target, symlinks=False)
            continue
        (target / "templates").mkdir(parents=True)
        (target / "Chart.yaml").write_text(
            yaml.safe_dump({"apiVersion": "v2", "name": dep["name"], "version": dep["version"],
                            "description": "Empty stand-in for the upstream chart (offline tests)."})
        )
        if dep["name"] in _STAND_IN_TEMPLATES:
            (target / "templates" / "stand-in.yaml").write_text(_STAND_IN_TEMPLATES[dep["name"]])
    return root


@functools.cache
def _sandbox() -> pathlib.Path:
    root = pathlib.Path(tempfile.mkdtemp(prefix="retailflow-charts-"))
    atexit.register(shutil.rmtree, root, True)
    return _build_sandbox(root)


@dataclass
class Rendered:
    """The documents of one `helm template`, split into the chart's own and the stand-ins'."""

    docs: list[dict]
    stand_ins: list[dict] = field(default_factory=list)
    #: the documents of the real upstream charts (empty when every one is a stand-in); also in docs
    upstream: list[dict] = field(default_factory=list)
    #: the real upstream charts that rendered something
    upstream_charts: set[str] = field(default_factory=set)

    @property
    def own(self) -> list[dict]:
        """The documents of this repository's charts (the umbrella and the operator)."""
        return [d for d in self.docs if not any(d is u for u in self.upstream)]

    def own_of_kind(self, kind: str) -> list[dict]:
        return [d for d in self.own if d["kind"] == kind]

    def own_workloads(self) -> list[dict]:
        return [d for d in self.own if d["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet")]

    def of_kind(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict:
        matches = [d for d in self.docs if d["kind"] == kind and d["metadata"]["name"] == name]
        assert matches, f"no {kind} {name} rendered; have {[(d['kind'], d['metadata']['name']) for d in self.docs]}"
        return matches[0]

    def names(self, kind: str) -> set[str]:
        return {d["metadata"]["name"] for d in self.of_kind(kind)}

    def workloads(self) -> list[dict]:
        return [d for d in self.docs if d["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet")]


def _run_helm(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([HELM, *args], capture_output=True, text=True, check=False)


@functools.cache
def _render_cached(chart: str, values_json: str, release: str, namespace: str,
                   is_upgrade: bool = False) -> tuple[str, str, int]:
    path = _sandbox() / chart
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        handle.write(values_json)
    try:
        proc = _run_helm(["template", release, str(path), "--namespace", namespace, "-f", handle.name,
                          *(["--is-upgrade"] if is_upgrade else [])])
    finally:
        os.unlink(handle.name)
    return proc.stdout, proc.stderr, proc.returncode


def render(chart: str = "retailflow", values: dict | None = None, *, release: str = RELEASE,
           namespace: str = NAMESPACE, is_upgrade: bool = False) -> Rendered:
    """`helm template` with ``values`` as one values file; ``is_upgrade``: as `helm upgrade` renders
    (``.Release.IsInstall`` false)."""
    stdout, stderr, code = _render_cached(chart, json.dumps(values or {}, sort_keys=True), release, namespace,
                                          is_upgrade)
    if code:
        raise RenderError(stderr)
    docs, upstream, charts = [], [], set()
    remote = {d["name"] for d in _remote_dependencies()}
    chart = None  # a template that starts with its own `---` leaves its `# Source:` line alone
    for chunk in re.split(r"^---\s*$", stdout, flags=re.M):
        source = re.search(r"^# Source: [^/]+/(?:charts/([^/]+)/)?", chunk, flags=re.M)
        if source:
            chart = source.group(1)
        doc = yaml.safe_load(chunk)
        if not doc:
            continue
        docs.append(doc)
        if chart in remote and STAND_IN_LABEL not in _labels(doc):
            upstream.append(doc)
            charts.add(chart)
    kept = [d for d in docs if STAND_IN_LABEL not in _labels(d)]
    return Rendered(docs=kept, stand_ins=[d for d in docs if STAND_IN_LABEL in _labels(d)], upstream=upstream,
                    upstream_charts=charts)


def _labels(doc: dict) -> dict:
    return (doc.get("metadata") or {}).get("labels") or {}


def airflow_extra_env(rendered: Rendered) -> list[dict]:
    """`airflow.extraEnv` as the Airflow chart renders it: the stand-in's ConfigMap, or (with the real
    chart) the entries of the scheduler container's env that extraEnv names, in their rendered order."""
    for doc in rendered.stand_ins:
        if _labels(doc).get(STAND_IN_LABEL) == "airflow":
            return yaml.safe_load(doc["data"]["extraEnv"]) or []
    (scheduler,) = [d for d in rendered.upstream if d["kind"] == "Deployment"
                    and d["metadata"]["name"].endswith("-scheduler")]
    (container,) = [c for c in scheduler["spec"]["template"]["spec"]["containers"] if c["name"] == "scheduler"]
    named = set(re.findall(r"^\s*- name: (\S+)", yaml.safe_load((UMBRELLA / "values.yaml").read_text())
                                                      ["airflow"]["extraEnv"], flags=re.M))
    return [e for e in container.get("env", []) if e["name"] in named]


def merge_values(*layers: dict | None) -> dict:
    """Values files layered as `helm -f a -f b` layers them: maps merge key by key, a later null
    deletes the key, anything else (lists included) replaces."""
    out: dict = {}
    for layer in layers:
        out = _merge(out, layer or {})
    return out


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def chart_values(*layers: dict | None) -> dict:
    """The umbrella's effective values: values.yaml with ``layers`` on top."""
    return merge_values(yaml.safe_load((UMBRELLA / "values.yaml").read_text()), *layers)


def airflow_volumes_with(volume: str, config_map: str) -> list[dict]:
    """``airflow.volumes`` as values.yaml has it, the entry named ``volume`` mounting ConfigMap ``config_map``
    (a values file must give the whole list: --set of one item replaces it)."""
    volumes = chart_values()["airflow"]["volumes"]
    (entry,) = [v for v in volumes if v["name"] == volume]
    entry["configMap"]["name"] = config_map
    return volumes


class RenderError(Exception):
    """`helm template` failed; the message is helm's stderr."""


def notes(values: dict | None = None) -> str:
    """NOTES.txt as `helm install --dry-run=client` prints it (no cluster contacted)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        handle.write(json.dumps(values or {}))
    try:
        proc = _run_helm(["install", RELEASE, str(_sandbox() / "retailflow"), "--namespace", NAMESPACE,
                          "--dry-run=client", "-f", handle.name])
    finally:
        os.unlink(handle.name)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("NOTES:", 1)[1]


def helm_lint(chart: str, *extra: str) -> subprocess.CompletedProcess:
    return _run_helm(["lint", "--strict", str(_sandbox() / chart), *extra])


def pod_spec(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"]


def containers(doc: dict, *, init: bool = True) -> list[dict]:
    spec = pod_spec(doc)
    return list(spec.get("initContainers", []) if init else []) + list(spec["containers"])


UUID = "3f2c9a4e-1b7d-4c55-9e0a-6d2b8f1a7c3e"

# The variants every render-level check runs on. Remote subcharts are stand-ins in all of them.
VARIANTS: dict[str, dict] = {
    "defaults": {},
    "remote-subcharts-disabled": {
        "airbyte": {"enabled": False}, "airflow": {"enabled": False}, "superset": {"enabled": False},
        "openmetadata": {"enabled": False}, "opensearch": {"enabled": False},
        # without this release's Airbyte, the workspace is the user's to give
        "pipeline": {"workspaceId": UUID},
    },
    "existing-secrets": {
        "global": {
            "retailflow": {
                "mysql": {"existingSecret": "my-mysql"},
                "postgresql": {"existingSecret": "my-postgres"},
                "lake": {"existingSecret": "my-lake"},
            },
            "database": {"secretName": "my-postgres"},
            "storage": {"secretName": "my-lake"},
        },
        "openmetadata": {"openmetadata": {"config": {"database": {"auth": {"password": {"secretRef": "my-postgres"}}}}}},
    },
    "external-s3": {
        "minio": {"enabled": False},
        "global": {
            "retailflow": {"lake": {"endpoint": "https://seaweedfs.storage.svc:8333", "existingSecret": "seaweed-keys"}},
            "storage": {"secretName": "seaweed-keys", "minio": {"endpoint": "https://seaweedfs.storage.svc:8333"}},
        },
    },
    # Airbyte in its own namespace, as the README's Security section installs it
    "airbyte-namespace": yaml.safe_load(AIRBYTE_NAMESPACE_VALUES.read_text()),
    # the lite profile, as `make up PROFILE=lite` installs it (-f values-lite.yaml)
    "lite": yaml.safe_load(LITE_VALUES.read_text()),
    "subset-with-workspace": {
        "airbyte": {"enabled": False}, "superset": {"enabled": False},
        "openmetadata": {"enabled": False}, "opensearch": {"enabled": False},
        "pipeline": {"workspaceId": UUID, "spec": {"engine": "direct"}},
    },
}
