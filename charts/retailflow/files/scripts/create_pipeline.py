"""Create or update the default RetailPipeline once Airbyte's default workspace id is known.

The RetailPipeline CRD requires spec.airbyte.workspaceId, which Airbyte only creates when its
bootloader first runs. This reads it from Airbyte's public API with the instance admin's
application credentials, then server-side-applies /pipeline/retailpipeline.yaml with it. First it
labels the Secret Airbyte's bootloader wrote (the instance admin's credentials) with the label the
operator requires before it reads a Secret (CREDENTIALS_LABEL, see operator/README.md).
"""

import os
import sys
import time

import requests
import yaml
from kubernetes import client, config

DEADLINE = time.monotonic() + float(os.environ.get("AIRBYTE_WAIT_S", "1500"))
# The ConfigMap's mount in the Job; a test runs this script outside a pod with another path.
PIPELINE_FILE = os.environ.get("RETAILPIPELINE_FILE", "/pipeline/retailpipeline.yaml")


def refuse_redirect(reply: requests.Response) -> None:
    if reply.is_redirect:
        sys.exit(f"Airbyte answered {reply.request.method} {reply.url} with a redirect (HTTP {reply.status_code}),"
                 " not followed, since it would take the credentials elsewhere: give the server's own URL")


def workspace_id(api_url: str, token_url: str, client_id: str, client_secret: str) -> str:
    while True:
        try:
            token = requests.post(
                token_url,
                json={"client_id": client_id, "client_secret": client_secret, "grant-type": "client_credentials"},
                timeout=30,
                allow_redirects=False,  # a redirect would carry the client secret to another host
            )
            refuse_redirect(token)
            token.raise_for_status()
            headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
            answer = requests.get(f"{api_url}/workspaces", headers=headers, timeout=30, allow_redirects=False)
            refuse_redirect(answer)
            answer.raise_for_status()
            workspaces = answer.json().get("data", [])
            if workspaces:
                return workspaces[0]["workspaceId"]
            print("Airbyte has no workspace yet", flush=True)
        except requests.RequestException as error:
            print(f"waiting for Airbyte at {api_url}: {error}", flush=True)
        if time.monotonic() > DEADLINE:
            sys.exit("Airbyte did not answer with a workspace in time")
        time.sleep(10)


def label_credentials_secret(core: "client.CoreV1Api", namespace: str, name: str, label: str) -> None:
    key, _, value = label.partition("=")
    core.patch_namespaced_secret(name, namespace, {"metadata": {"labels": {key: value}}})
    print(f"Secret {namespace}/{name} labelled {key}={value}", flush=True)


def main() -> int:
    with open(PIPELINE_FILE, encoding="utf-8") as handle:
        body = yaml.safe_load(handle)
    airbyte = body["spec"]["airbyte"]
    api_url = airbyte["apiUrl"]
    token_url = airbyte.get("tokenUrl") or f"{api_url}/applications/token"
    airbyte["workspaceId"] = workspace_id(
        api_url, token_url, os.environ["AIRBYTE_CLIENT_ID"], os.environ["AIRBYTE_CLIENT_SECRET"]
    )
    config.load_incluster_config()
    namespace = body["metadata"]["namespace"]
    if os.environ.get("CREDENTIALS_SECRET_NAME"):
        label_credentials_secret(
            client.CoreV1Api(), namespace, os.environ["CREDENTIALS_SECRET_NAME"], os.environ["CREDENTIALS_LABEL"]
        )
    client.CustomObjectsApi().patch_namespaced_custom_object(
        group="retailflow.io",
        version="v1alpha1",
        namespace=namespace,
        plural="retailpipelines",
        name=body["metadata"]["name"],
        body=body,
        field_manager="retailflow-chart",
        force=True,
        _content_type="application/apply-patch+yaml",
    )
    print(f"RetailPipeline {namespace}/{body['metadata']['name']} applied, workspace {airbyte['workspaceId']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
