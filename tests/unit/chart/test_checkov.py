"""checkov (Kubernetes framework) over the rendered release: a finding not in the committed baseline fails.

The render is the full release when the real upstream charts sit in charts/retailflow/charts/ (test
ids `[full-render]`), else the chart's own templates with stand-ins (`[stand-ins]`), with its default
values and with Airbyte in its own namespace (the airbyte-namespace variant, which adds a Job); the baseline
holds both the upstream charts' findings and the accepted ones of our own templates, each entry with
its reason (tests/unit/chart/checkov-baseline.yaml). checkov runs from its own environment
(hack/envs/checkov, `make checkov-env`, which `make test-chart` runs first).

Offline, checkov reports no severities (Prisma Cloud's API supplies them), so HIGH below is this
repository's choice: the checks whose failure lets a pod escape to its node or widen what a
compromised pod can reach. None of them may fail on our own templates unless OWN_HIGH_ACCEPTED says why.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import tempfile

import pytest
import yaml

from support.helm_render import NAMESPACE, REAL_SUBCHARTS, REPO, VARIANTS, render

CHECKOV = REPO / ".tools" / "checkov" / "bin" / "checkov"
BASELINE = pathlib.Path(__file__).with_name("checkov-baseline.yaml")
MODE = "full-render" if len(REAL_SUBCHARTS) == 4 else "stand-ins"

HIGH = {
    "CKV_K8S_16": "privileged container",
    "CKV_K8S_17": "host PID namespace",
    "CKV_K8S_18": "host IPC namespace",
    "CKV_K8S_19": "host network",
    "CKV_K8S_20": "allowPrivilegeEscalation",
    "CKV_K8S_27": "Docker socket mounted",
    "CKV_K8S_39": "CAP_SYS_ADMIN",
    "CKV_K8S_38": "ServiceAccount token mounted where unneeded",
    "CKV_K8S_49": "wildcard in a Role",
    "CKV_K8S_155": "Role that can escalate", "CKV_K8S_156": "Role that can bind", "CKV_K8S_157": "Role that can impersonate",
    "CKV2_K8S_2": "create on pods/exec", "CKV2_K8S_5": "ServiceAccount that can read all Secrets",
}
#: (check, resource) of our own templates that stay, and why.
OWN_HIGH_ACCEPTED = {
    ("CKV_K8S_38", "Deployment/retailflow-operator"): "the operator watches RetailPipelines and reads Secrets: it needs its token",
    ("CKV_K8S_38", "Job/retailflow-pipeline"): "the Job applies the RetailPipeline and labels airbyte-auth-secrets: it needs its token",
    ("CKV_K8S_38", "Job/retailflow-airbyte-auth-copy"): "the Job copies airbyte-auth-secrets across namespaces through the API: "
                                                       "it needs its token",
    **{(check, f"{kind}/{name}"): "Airbyte's Role as its chart writes it, made here so that an upgrade adding Airbyte "
       "creates it; given only to the Airbyte components that call the API (test_service_accounts.py, README Security)"
       for check, kind in (("CKV_K8S_49", "Role"), ("CKV2_K8S_2", "RoleBinding"), ("CKV2_K8S_5", "RoleBinding"))
       for name in ((f"airbyte-admin-{'role' if kind == 'Role' else 'binding'}"),
                    (f"retailflow-airbyte-bootloader-{'role' if kind == 'Role' else 'binding'}"))},
}


def _as_helm_installs(docs: list[dict]) -> str:
    """`helm template` leaves metadata.namespace out of most upstream documents; `helm install` puts
    them in the release namespace, so checkov must not read them as in `default`."""
    for doc in docs:
        if doc.get("kind") not in ("ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Namespace"):
            doc.setdefault("metadata", {}).setdefault("namespace", NAMESPACE)
    return yaml.safe_dump_all(docs, sort_keys=False)


def _key(result: dict) -> tuple[str, str]:
    kind, _, name = result["resource"].split(".", 2)
    return result["check_id"], f"{kind}/{name}"


#: The renders scanned: the defaults, and Airbyte in its own namespace (its copy Job and Roles).
SCANNED = ("defaults", "airbyte-namespace")


@pytest.fixture(scope="module")
def scan() -> tuple[set[tuple[str, str]], set[str]]:
    """(failed (check, Kind/name) pairs, our own Kind/name) of the renders in SCANNED, together."""
    if not CHECKOV.exists():
        pytest.fail("checkov is missing: run `make checkov-env` (hack/envs/checkov)")
    failed: set[tuple[str, str]] = set()
    own: set[str] = set()
    for variant in SCANNED:
        rendered = render(values=VARIANTS[variant])
        with tempfile.TemporaryDirectory() as folder:
            path = pathlib.Path(folder) / "release.yaml"
            path.write_text(_as_helm_installs([dict(d) for d in rendered.docs]))
            proc = subprocess.run([str(CHECKOV), "--framework", "kubernetes", "-f", str(path), "-o", "json", "--quiet",
                                   "--compact", "--skip-download"], capture_output=True, text=True, check=False)
        assert proc.returncode in (0, 1), proc.stderr[-2000:]
        # Nothing scanned must not read as nothing found: on an empty or unreadable file checkov prints
        # only a summary ({"passed": 0, ..., "resource_count": 0}), without "results".
        assert proc.stdout.strip(), f"[{variant}] checkov printed nothing: {proc.stderr[-2000:]}"
        report = json.loads(proc.stdout)
        report = report[0] if isinstance(report, list) else report
        assert report.get("check_type") == "kubernetes" and "failed_checks" in (report.get("results") or {}), (
            f"[{variant}] checkov's report holds no results: {proc.stdout[:2000]}")
        assert rendered.own, variant
        # checkov counts each document it checked (and each container in a pod template) as a resource
        assert report["summary"]["resource_count"] >= len(rendered.own), (variant, report["summary"], len(rendered.own))
        failed |= {_key(r) for r in report["results"]["failed_checks"]}
        own |= {f"{d['kind']}/{d['metadata']['name']}" for d in rendered.own}
    return failed, own


def baseline() -> dict[tuple[str, str], str]:
    out = {}
    for entry in yaml.safe_load(BASELINE.read_text()):
        assert entry.get("reason"), f"baseline entry without a reason: {entry}"
        for resource in entry["resources"]:
            out[(entry["check"], resource)] = entry["reason"]
    return out


class TestCheckov:
    @pytest.mark.parametrize("mode", [MODE])
    def test_no_finding_outside_the_baseline(self, scan, mode):
        failed, _ = scan
        new = sorted(failed - set(baseline()))
        print(f"[{mode}] checkov: {len(failed)} findings, {len(failed) - len(new)} in the baseline")
        assert not new, "new checkov findings (fix them, or add them to checkov-baseline.yaml with a reason):\n" + \
            "\n".join(f"  {check} {resource}" for check, resource in new)

    @pytest.mark.parametrize("mode", [MODE])
    def test_no_high_finding_on_our_own_templates(self, scan, mode):
        failed, own = scan
        high = sorted((c, r) for c, r in failed if c in HIGH and r in own and (c, r) not in OWN_HIGH_ACCEPTED)
        assert not high, "\n".join(f"{c} ({HIGH[c]}) on {r}" for c, r in high)

    def test_baseline_has_no_stale_entries(self, scan):
        failed, own = scan
        entries = baseline()
        # with stand-ins only our own resources are scanned, so only their entries can be checked
        checkable = entries if MODE == "full-render" else {k: v for k, v in entries.items() if k[1] in own}
        stale = sorted(set(checkable) - failed)
        assert not stale, "baseline entries checkov no longer reports (remove them):\n" + \
            "\n".join(f"  {c} {r}" for c, r in stale)

    def test_own_high_findings_are_not_in_the_baseline_instead(self, scan):
        _, own = scan
        hidden = sorted((c, r) for c, r in baseline() if c in HIGH and r in own and (c, r) not in OWN_HIGH_ACCEPTED)
        assert not hidden, hidden
