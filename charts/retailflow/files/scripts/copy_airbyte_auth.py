"""Copy the Secret Airbyte's bootloader wrote in Airbyte's namespace into the release namespace.

With Airbyte in a namespace of its own (global.retailflow.airbyte.namespace), its bootloader writes
the instance admin's application credentials there. The operator, Airflow's `retailflow_airbyte`
connection and the pipeline Job read them in the release namespace, by name (a pod's secretKeyRef
cannot name another namespace), so this reads that one Secret (`get`, by name) and server-side
applies a copy of its data into the release namespace (`create` and `patch`, by name), with the label
the operator requires before it reads a Secret (CREDENTIALS_LABEL, see operator/README.md). It runs
after the bootloader on every install and upgrade, so the copy follows the original.
"""

import os

from kubernetes import client, config


def main() -> int:
    name = os.environ["SECRET_NAME"]
    source, target = os.environ["SOURCE_NAMESPACE"], os.environ["TARGET_NAMESPACE"]
    key, _, value = os.environ["CREDENTIALS_LABEL"].partition("=")
    config.load_incluster_config()
    core = client.CoreV1Api()
    secret = core.read_namespaced_secret(name, source)
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": target,
                     "labels": {key: value, "app.kubernetes.io/part-of": "retailflow"}},
        "type": secret.type or "Opaque",
        "data": secret.data or {},
    }
    core.patch_namespaced_secret(name, target, body, field_manager="retailflow-chart", force=True,
                                 _content_type="application/apply-patch+yaml")
    print(f"Secret {source}/{name} copied to {target}/{name} ({len(body['data'])} keys), labelled {key}={value}",
          flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
