"""What ``kopf run`` may be told to serve: namespace names, or all namespaces; never a namespace pattern.

The operator turns kopf's scanning off (``handlers.configure``), so kopf never lists namespaces and would
drop a pattern (``retail-*``, ``!kube-system``, ``a,b``) without a word, serving nothing. The operator
refuses one at start instead, in one line, before it contacts the cluster. These run the real
``kopf run`` command line in a subprocess, as the image does, with a kubeconfig whose server is a
closed port: a name gets as far as the cluster check, a pattern never does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.kube_emulator import REPO_ROOT

UNREACHABLE = "127.0.0.1:9"


def kopf_run(tmp_path: Path, args: list[str], env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://{UNREACHABLE}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    key = tmp_path / "key"
    key.write_text("k" * 32)
    full_env = {k: v for k, v in os.environ.items() if k != "KOPF_RUN_NAMESPACE"}
    full_env |= {"KUBECONFIG": str(kubeconfig), "RETAILFLOW_HMAC_KEY_FILE": str(key), **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "kopf", "run", "--standalone", *args, "-m", "retailflow_operator"],
        env=full_env, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
    )
    return proc.returncode, [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]


@pytest.mark.parametrize(("args", "env", "refused"), [
    (["--namespace=retail-*"], {}, "'retail-*'"),
    (["--namespace=retailflow", "--namespace=!kube-system"], {}, "'!kube-system'"),
    (["--namespace=retail,staging"], {}, "'retail,staging'"),
    ([], {"KOPF_RUN_NAMESPACE": "retail-?"}, "'retail-?'"),  # kopf's legacy variable for --namespace
], ids=["glob", "negation", "comma-list", "KOPF_RUN_NAMESPACE"])
def test_a_namespace_pattern_is_refused_in_one_line_before_the_cluster_is_contacted(tmp_path, args, env, refused):
    code, lines = kopf_run(tmp_path, args, env)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("retailflow-operator: --namespace takes namespace names, not patterns: "), lines
    assert refused in lines[0] and "--all-namespaces" in lines[0]
    assert "'retailflow'" not in lines[0]  # the name given beside it is not one
    assert UNREACHABLE not in lines[0]


@pytest.mark.parametrize("args", [["--namespace=retailflow", "--namespace=retail-staging"], ["--all-namespaces"]],
                         ids=["names", "all-namespaces"])
def test_names_or_all_namespaces_pass_on_to_the_cluster_check(tmp_path, args):
    code, lines = kopf_run(tmp_path, args)
    assert code == 2 and len(lines) == 1, lines
    assert "cannot reach the Kubernetes API" in lines[0] and UNREACHABLE in lines[0], lines
