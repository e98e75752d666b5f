"""Run the OpenMetadata workflows named in $OPENMETADATA_WORKFLOWS against the in-cluster server.

Waits for the server, gets a bot token, then runs `metadata ingest -c /workflows/<name>.yaml` for
each workflow in order. The workflow files name their settings as $VARIABLES, which `metadata
ingest` expands from this process's environment (database passwords come from Secrets), so no file
holding a password is written. Exits non-zero if any workflow fails, so the Job retries.

The token: $OPENMETADATA_JWT_TOKEN when the Secret carries a bot's JWT; otherwise the Job logs in
as the basic-auth admin with the Secret's admin-password and reads the ingestion bot's JWT. On the
first install the admin still has OpenMetadata's built-in password: the Job logs in with it once and
changes it to the Secret's, so the built-in password does not survive the install.
"""

import base64
import os
import subprocess
import sys
import time
from pathlib import Path

import requests

SERVER = os.environ["OPENMETADATA_SERVER"].rstrip("/")
EMAIL = os.environ.get("OPENMETADATA_ADMIN_EMAIL", "admin@open-metadata.org")
#: OpenMetadata's built-in basic-auth admin password, replaced on first login.
BUILT_IN_PASSWORD = "admin"
DEADLINE = time.monotonic() + float(os.environ.get("OPENMETADATA_WAIT_S", "1200"))
WORKFLOWS = Path(os.environ.get("OPENMETADATA_WORKFLOWS_DIR", "/workflows"))
#: The `metadata` subcommand of a workflow: profiler workflows run under `metadata profile`.
COMMAND = {"postgres-profiler": "profile"}


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


def login(password: str) -> str | None:
    encoded = base64.b64encode(password.encode()).decode()
    response = requests.post(f"{SERVER}/api/v1/users/login", json={"email": EMAIL, "password": encoded}, timeout=30)
    if response.status_code in (400, 401):
        return None
    response.raise_for_status()
    return response.json()["accessToken"]


def admin_token(password: str) -> str:
    token = login(password)
    if token:
        return token
    token = login(BUILT_IN_PASSWORD)
    if not token:
        sys.exit("the OpenMetadata admin accepts neither the Secret's admin-password nor the built-in one")
    print("replacing the OpenMetadata admin's built-in password with the Secret's", flush=True)
    changed = requests.put(
        f"{SERVER}/api/v1/users/changePassword",
        json={"username": EMAIL.split("@")[0], "oldPassword": BUILT_IN_PASSWORD, "newPassword": password,
              "confirmPassword": password, "requestType": "SELF"},
        headers={"Authorization": f"Bearer {token}"}, timeout=30,
    )
    changed.raise_for_status()
    return login(password) or sys.exit("the admin password was changed but the new one is refused")


def bot_token() -> str:
    headers = {"Authorization": f"Bearer {admin_token(os.environ['OPENMETADATA_ADMIN_PASSWORD'])}"}
    bot = requests.get(f"{SERVER}/api/v1/users/name/ingestion-bot", params={"fields": "authenticationMechanism"},
                       headers=headers, timeout=30)
    bot.raise_for_status()
    return bot.json()["authenticationMechanism"]["config"]["JWTToken"]


def main() -> int:
    names = [n for n in os.environ.get("OPENMETADATA_WORKFLOWS", "").split(",") if n]
    missing = [n for n in names if not (WORKFLOWS / f"{n}.yaml").exists()]
    if missing:
        print(f"no workflow file for {', '.join(missing)} in {WORKFLOWS}", file=sys.stderr)
        return 1
    if not names:
        print("no workflows to run")
        return 0
    wait_for_server()
    if not os.environ.get("OPENMETADATA_JWT_TOKEN"):
        os.environ["OPENMETADATA_JWT_TOKEN"] = bot_token()
    failed = []
    for name in names:
        print(f"ingesting {name}", flush=True)
        command = COMMAND.get(name, "ingest")
        if subprocess.run(["metadata", command, "-c", str(WORKFLOWS / f"{name}.yaml")], check=False).returncode:
            failed.append(name)
    if failed:
        print(f"failed workflows: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
