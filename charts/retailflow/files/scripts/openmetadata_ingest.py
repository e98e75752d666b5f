"""Run every OpenMetadata workflow file in /workflows against the in-cluster server.

Waits for the server, logs in as the admin (basic auth) to read the ingestion bot's JWT, expands
$VARIABLES in each workflow from the environment (database passwords come from Secrets) and runs
`metadata ingest` on it. Exits non-zero if any workflow fails, so the Job retries.
"""

import base64
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import requests

SERVER = os.environ["OPENMETADATA_SERVER"].rstrip("/")
DEADLINE = time.monotonic() + float(os.environ.get("OPENMETADATA_WAIT_S", "1200"))


def wait_for_server() -> None:
    while True:
        try:
            if requests.get(f"{SERVER}/api/v1/system/version", timeout=10).ok:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > DEADLINE:
            sys.exit(f"OpenMetadata at {SERVER} did not answer in time")
        print(f"waiting for OpenMetadata at {SERVER}", flush=True)
        time.sleep(10)


def bot_token() -> str:
    password = base64.b64encode(os.environ["OPENMETADATA_ADMIN_PASSWORD"].encode()).decode()
    login = requests.post(
        f"{SERVER}/api/v1/users/login",
        json={"email": os.environ["OPENMETADATA_ADMIN_EMAIL"], "password": password},
        timeout=30,
    )
    login.raise_for_status()
    headers = {"Authorization": f"Bearer {login.json()['accessToken']}"}
    bot = requests.get(
        f"{SERVER}/api/v1/users/name/ingestion-bot",
        params={"fields": "authenticationMechanism"},
        headers=headers,
        timeout=30,
    )
    bot.raise_for_status()
    return bot.json()["authenticationMechanism"]["config"]["JWTToken"]


def main() -> int:
    workflows = sorted(pathlib.Path("/workflows").glob("*.y*ml"))
    if not workflows:
        print("no workflow files given: nothing to ingest")
        return 0
    wait_for_server()
    os.environ["OPENMETADATA_JWT_TOKEN"] = bot_token()
    failed = []
    for workflow in workflows:
        expanded = os.path.expandvars(workflow.read_text())
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
            handle.write(expanded)
        print(f"ingesting {workflow.name}", flush=True)
        if subprocess.run(["metadata", "ingest", "-c", handle.name], check=False).returncode:
            failed.append(workflow.name)
        os.unlink(handle.name)
    if failed:
        print(f"failed workflows: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
