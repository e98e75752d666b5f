"""The lake-buckets Job makes the lake's keys a MinIO user limited to the lake's buckets (``support.workloads``).

MinIO's root user lives in its own Secret (``minio.root``), read by MinIO and this Job only; every other
client of the lake holds the lake's Secret, which the Job turns into a MinIO user whose policy allows the
buckets it creates and nothing else. Here the Job's ``buckets`` container runs from the rendered release
(command, environment, Secret keys resolved from the emulated Kubernetes API) with the ``mc`` stand-in
below, against moto's S3 server (a stand-in for MinIO's S3 API). Then the policy the Job handed to
"MinIO" is evaluated by moto with IAM enforced: AWS's policy evaluator standing in for MinIO's, which
implements the same policy language. Rotated keys (new keys in the Secret, another existingSecret): the
old keys' user is removed, found as the other holders of the lake's policy (``TestRotation``).

What it cannot show: the real ``mc`` and MinIO (no reachable registry ships either). MinIO's side of
the admin calls is modelled from its source (minio/minio@07c3a429bfed, tagged RELEASE.2025-09-07T16-13-09Z,
the chart's image), each rule cited where the stand-in applies it; whether MinIO's console lets the lake's user log
in, and what a MinIO restart with a new root does on a real volume, are not run here (see the chart README).
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from support.helm_render import LITE_VALUES, NAMESPACE, REPO, VARIANTS, Rendered, containers, merge_values, render
from support.kube_emulator import CRD_PATH, EmulatedKubernetesAPI
from support.kube_rbac import RBAC
from support.workloads import Peers, Workloads, create_release_secrets
from test_workloads import MC_STUB, moto_server, s3_buckets

JOB = ("Job", "retailflow-lake-buckets")
#: The lite profile upgraded to add Airbyte: MinIO stays an ordinary release resource (datastores.hooksWithAirbyte=false).
LITE_WITH_AIRBYTE = merge_values(yaml.safe_load(LITE_VALUES.read_text()),
                                 {"airbyte": {"enabled": True}, "lake": {"buckets": ["retail-lake", "airbyte-storage"]},
                                  "pipeline": {"enabled": False}})
DAGS_PYTHON = REPO / "dags" / ".venv" / "bin" / "python"
#: What the lake's clients do (the ingestion engine, the seed, Airbyte's S3 destination and storage): list
#: the buckets' objects, read, write and delete them, multipart uploads. Anything else is more than they need.
CONSUMER_ACTIONS = {"s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads", "s3:GetObject",
                    "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"}

#: A stand-in for `mc admin` (no reachable registry ships `mc`), for the calls the lake-buckets Job makes; any
#: other command (`mb`) goes to test_workloads.MC_STUB, the S3 stand-in, unchanged. It records every argv and
#: what "MinIO" was told (users, policies, attachments) in the JSON state file MC_STANDIN_STATE, whose "root"
#: is the root user the stand-in's MinIO runs with. Modelled on mc RELEASE.2025-08-13T08-35-41Z
#: (minio/mc@7394ce0dd2a8, the chart's pinned image) and MinIO RELEASE.2025-09-07T16-13-09Z (minio/minio@07c3a429bfed):
#: - the alias: MC_HOST_<alias> split by mc's expressions (cmd/config.go parseEnvURLStr, as MC_STUB does);
#: - `admin user add ALIAS [ACCESSKEY [SECRETKEY]]` (cmd/admin-user-add.go): 1 to 3 arguments; a missing key is
#:   read from stdin, which is never a terminal here, with bufio.Reader.ReadLine: one line, its "\n" or "\r\n"
#:   dropped, at most the reader's 4096 bytes (fetchUserKeys). MinIO (cmd/admin-handlers-users.go AddUser,
#:   cmd/iam.go CreateUser, internal/auth/credentials.go) refuses the root's access key, an access key shorter
#:   than 3 or holding '=' or ',', a secret key shorter than 8; an existing user gets the new secret key
#:   (cmd/iam-store.go AddUser), its policy mapping kept;
#: - `admin policy create ALIAS NAME FILE` (cmd/admin-policy-create.go): the file read, then MinIO parses it
#:   (policy.ParseConfig: JSON; each action one of minio/pkg policy/action.go's supportedActions) and refuses an
#:   empty Version (AddCannedPolicy); an existing policy is replaced;
#: - `admin policy attach ALIAS POLICY... --user U` (cmd/admin-policy-attach.go): MinIO's "already applied"
#:   answer (XMinioAdminPolicyChangeAlreadyApplied) is no error to mc;
#: - admin calls need the root's keys: MinIO answers another user "Access Denied." and unknown keys "The Access
#:   Key Id you provided does not exist in our records." (cmd/api-errors.go); while its users are loading, any
#:   key but the root's gets "IAM sub-system not initialized yet, please try again." (cmd/signature-v4-utils.go
#:   checkKeyValid): the state's "iam_loading" counts the calls answered so; `admin info` as the root is
#:   served without the object layer (cmd/admin-router.go noObjLayerFlag). mc prints a failed `admin info`
#:   as "Unable to get service info" and the reason (cmd/admin-info.go clusterStruct.String);
#: - `admin policy entities [FLAGS] ALIAS` (cmd/admin-policy-entities.go): exactly one argument, or mc prints its
#:   help and exits 1; `--policy`/`-p` repeatable; only a policy query, only `--json` stood in for. MinIO
#:   (cmd/admin-handlers-users.go ListPolicyMappingEntities, cmd/iam-store.go listPolicyMappings) answers, for each
#:   queried policy held by some user, its users sorted, no error for a policy nobody holds (then no
#:   "policyMappings" at all: omitempty); mc prints madmin.PolicyEntitiesResult (madmin-go@4b504b82db63
#:   idp-commands.go, the version mc's go.mod pins) in {"status":"success","result":...}
#:   (cmd/idp-ldap-policy-subcommands.go policyEntities) through minio/colorjson v1.0.8 MarshalIndent, which
#:   returns the compact form when stdout is not a terminal (always here), "groups" null (a nil slice), strings
#:   escaped as encode.go `string` does: \" \\ \n \r \t, other bytes below 0x20 and < > & as \u00XX, U+2028/9 as
#:   \u202X, ESC and any other character as they are;
#: - `admin user rm|remove ALIAS USER` (cmd/admin-user-remove.go): exactly two arguments, or help and exit 1.
#:   MinIO (cmd/admin-handlers-users.go RemoveUser): a name that is no user (the root included: it is not one of
#:   the users) gets "The specified user does not exist."; the user is removed with its policy mapping
#:   (cmd/iam-store.go DeleteUser); mc prints "Removed user `USER` successfully." (cmd/admin-user-add.go
#:   userMessage);
#: - mc's failures (cmd/error.go fatal): "mc: <ERROR> WHAT. WHY" on stderr; with `--json`, the compact
#:   {"status":"error","error":{"message":WHAT,"cause":{"message":WHY,"error":{...}},"type":"fatal"}} on stdout
#:   (minio/pkg v3.1.0 console.Println) and nothing on stderr; exit code 1 either way;
#: - the state's "faults" ({"policy entities": WHY, "user rm": WHY}) make MinIO answer that call with WHY, as it
#:   does when its storage cannot write (InsufficientWriteQuorum, cmd/api-errors.go ErrSlowDownWrite) or its
#:   object layer is not up yet: a fault put in by a test, not a rule of MinIO's.
MC_ADMIN_STANDIN = r'''#!PYTHON
import datetime, json, os, re, sys

args = sys.argv[1:]
path = os.environ["MC_STANDIN_STATE"]
with open(path) as f:
    state = json.load(f)
state["argv"].append(args)
json_output = False

def save():
    with open(path, "w") as f:
        json.dump(state, f)

def go_json(value):
    """JSON as minio/colorjson v1.0.8 writes it with no terminal: compact, Go's string escapes."""
    if value is None:
        return "null"
    if isinstance(value, str):
        out = []
        for ch in value:
            if ch in '\\"':
                out.append("\\" + ch)
            elif ch in "\n\r\t":
                out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
            elif (ord(ch) < 0x20 and ch != "\x1b") or ch in "<>&\u2028\u2029":
                out.append("\\u%04x" % ord(ch))
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'
    if isinstance(value, list):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    return "{" + ",".join(go_json(k) + ":" + go_json(v) for k, v in value.items()) + "}"

def fail(message, cause=None, code="XMinioStandIn"):
    save()
    if json_output:
        print(go_json({"status": "error", "error": {"message": message, "cause": {"message": cause or message, "error": {
            "Code": code, "Message": cause or message, "BucketName": "", "Key": "", "RequestID": "", "HostID": "",
            "Region": ""}}, "type": "fatal"}}))
        sys.exit(1)
    sys.exit("mc: <ERROR> " + (f"{message}. {cause}" if cause else message))

def usage(command):
    save()
    print(f"NAME:\n  mc admin {command}\n\nUSAGE:\n  (the stand-in's short help)")
    sys.exit(1)

CODES = {"Access Denied.": "AccessDenied",
         "The Access Key Id you provided does not exist in our records.": "InvalidAccessKeyId",
         "IAM sub-system not initialized yet, please try again.": "XMinioIAMNotInitialized"}

if args[:1] != ["admin"]:
    save()
    os.execv(os.environ["MC_STANDIN_S3"], [os.environ["MC_STANDIN_S3"], *args])

# minio/pkg policy/action.go supportedActions
SUPPORTED = set("""s3:AbortMultipartUpload s3:CreateBucket s3:DeleteBucket s3:ForceDeleteBucket s3:DeleteBucketPolicy
s3:DeleteBucketCors s3:DeleteObject s3:GetBucketLocation s3:GetBucketNotification s3:GetBucketPolicy s3:GetBucketCors
s3:GetObject s3:HeadBucket s3:ListAllMyBuckets s3:ListBucket s3:GetBucketPolicyStatus s3:ListBucketVersions
s3:ListBucketMultipartUploads s3:ListenNotification s3:ListenBucketNotification s3:ListMultipartUploadParts
s3:PutLifecycleConfiguration s3:GetLifecycleConfiguration s3:PutBucketNotification s3:PutBucketPolicy
s3:PutBucketCors s3:PutBucketQOS s3:GetBucketQOS s3:PutObject s3:BypassGovernanceRetention s3:PutObjectRetention
s3:GetObjectRetention s3:GetObjectLegalHold s3:PutObjectLegalHold s3:GetBucketObjectLockConfiguration
s3:PutBucketObjectLockConfiguration s3:GetBucketTagging s3:PutBucketTagging s3:GetObjectVersion
s3:GetObjectAttributes s3:GetObjectVersionAttributes s3:GetObjectVersionTagging s3:DeleteObjectVersion
s3:DeleteObjectVersionTagging s3:PutObjectVersionTagging s3:GetObjectTagging s3:PutObjectTagging
s3:DeleteObjectTagging s3:PutEncryptionConfiguration s3:GetEncryptionConfiguration s3:PutBucketVersioning
s3:GetBucketVersioning s3:GetReplicationConfiguration s3:PutReplicationConfiguration s3:ReplicateObject
s3:ReplicateDelete s3:ReplicateTags s3:GetObjectVersionForReplication s3:RestoreObject
s3:ResetBucketReplicationState s3:PutObjectFanOut s3express:CreateSession s3:*""".split())

def read_line(stream):
    line = stream.readline(4096)
    if line.endswith(b"\n"):
        line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
    return line.decode()

def admin_alias(alias, what=None):
    """Signs in as MC_HOST_<alias>'s keys; ``what``: mc's words for the call, before MinIO's reason."""
    value = os.environ.get("MC_HOST_" + alias)
    if value is None:
        fail("no alias " + alias)
    if re.match(r"^(https?://)(.*?):(.*?):(.*)@(.*?)$", value):
        fail("MC_HOST_" + alias + " holds a session token, which this stand-in does not take")
    keys = re.match(r"^(https?://)(.*?):(.*)@(.*?)$", value)
    if not keys:
        fail("MC_HOST_" + alias + " has no keys")
    access, secret = keys.group(2), keys.group(3)
    if [access, secret] == state["root"]:
        return
    if state["iam_loading"] > 0:
        state["iam_loading"] -= 1
        refusal = "IAM sub-system not initialized yet, please try again."
    elif state["users"].get(access) == secret:
        refusal = "Access Denied."
    else:
        refusal = "The Access Key Id you provided does not exist in our records."
    if what is None:
        fail(refusal)
    fail(what, refusal, CODES[refusal])

def fault(call, what):
    if call in state.get("faults", {}):
        fail(what, state["faults"][call], "SlowDownWrite")

command, rest = args[1:3], args[3:]
if command[:1] == ["info"]:
    try:
        admin_alias(args[2])
    except SystemExit as exc:
        sys.exit(str(exc.code).replace("<ERROR> ", "<ERROR> Unable to get service info. ", 1))
    print("●  stand-in MinIO: online")
elif command == ["user", "add"]:
    if not 1 <= len(rest) <= 3:
        fail("mc admin user add takes ALIAS [ACCESSKEY [SECRETKEY]]")
    if os.isatty(0):
        fail("this stand-in models stdin that is not a terminal only")
    access = rest[1] if len(rest) > 1 else read_line(sys.stdin.buffer)
    secret = rest[2] if len(rest) > 2 else read_line(sys.stdin.buffer)
    admin_alias(rest[0])
    if access == state["root"][0]:
        fail("Unable to add new user. User is not allowed to be same as admin access key")
    if len(access) < 3:
        fail("Unable to add new user. access key length should be between 3 and 20")
    if "=" in access or "," in access:
        fail("Unable to add new user. access key contains one of reserved characters '=' or ','")
    if len(secret) < 8:
        fail("Unable to add new user. secret key length should be between 8 and 40")
    state["users"][access] = secret
    print(f"Added user `{access}` successfully.")
elif command == ["policy", "create"]:
    if len(rest) != 3:
        fail("mc admin policy create takes ALIAS NAME FILE")
    try:
        with open(rest[2], "rb") as f:
            text = f.read()
    except OSError as exc:
        fail(f"Unable to get policy. {exc}")
    admin_alias(rest[0])
    try:
        doc = json.loads(text)
        statements = doc["Statement"]
        for statement in statements:
            actions = statement["Action"]
            actions = [actions] if isinstance(actions, str) else actions
            unknown = [a for a in actions if a not in SUPPORTED]
            if unknown or statement["Effect"] not in ("Allow", "Deny"):
                raise ValueError(f"invalid action or effect {unknown or statement['Effect']}")
    except (ValueError, KeyError, TypeError) as exc:
        fail(f"Unable to create new policy. {exc}")
    if not doc.get("Version"):
        fail("Unable to create new policy. Policy has empty 'Version'")
    state["policies"][rest[1]] = doc
    print(f"Created policy `{rest[1]}` successfully.")
elif command == ["policy", "attach"]:
    user = rest[rest.index("--user") + 1] if "--user" in rest else None
    positional = [a for i, a in enumerate(rest) if a != "--user" and (i == 0 or rest[i - 1] != "--user")]
    if user is None or len(positional) < 2:
        fail("mc admin policy attach takes ALIAS POLICY... --user USER here")
    admin_alias(positional[0])
    if user not in state["users"]:
        fail("Unable to make user/group policy association. The specified user does not exist.")
    for name in positional[1:]:
        if name not in state["policies"]:
            fail(f"Unable to make user/group policy association. The canned policy {name} does not exist.")
    attached = state["attached"].setdefault(user, [])
    new = [p for p in positional[1:] if p not in attached]
    state["attach_answers"].append("attached" if new else "already applied")
    attached.extend(new)
    print(f"Attached Policies: {positional[1:]}\nTo User: {user}")
elif command == ["policy", "entities"]:
    query, positional, i = {"policy": [], "user": [], "group": []}, [], 0
    names = {"--policy": "policy", "-p": "policy", "--user": "user", "-u": "user", "--group": "group", "-g": "group"}
    while i < len(rest):
        arg = rest[i]
        if arg == "--json":
            json_output = True
        elif arg in names and i + 1 < len(rest):
            query[names[arg]].append(rest[i + 1])
            i += 1
        elif arg.split("=", 1)[0] in names and "=" in arg:
            query[names[arg.split("=", 1)[0]]].append(arg.split("=", 1)[1])
        elif arg.startswith("-"):
            fail(f"flag provided but not defined: {arg}")
        else:
            positional.append(arg)
        i += 1
    if len(positional) != 1:
        usage("policy entities - list policy association entities")
    if query["user"] or query["group"] or not json_output:
        fail("this stand-in answers `--json --policy` queries only")
    admin_alias(positional[0], "Unable to fetch policy entities")
    fault("policy entities", "Unable to fetch policy entities")
    mappings = []
    for name in sorted(set(query["policy"])):
        users = sorted(u for u, policies in state["attached"].items() if name in policies)
        if users:
            mappings.append({"policy": name, "users": users, "groups": None})
    result = {"timestamp": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    if mappings:
        result["policyMappings"] = mappings
    print(go_json({"status": "success", "result": result}))
elif command == ["user", "rm"] or command == ["user", "remove"]:
    if len(rest) != 2:
        usage("user remove - remove user")
    target = rest[1]
    admin_alias(rest[0], f"Unable to remove {target}")
    fault("user rm", f"Unable to remove {target}")
    if target not in state["users"]:
        fail(f"Unable to remove {target}", "The specified user does not exist.", "XMinioAdminNoSuchUser")
    del state["users"][target]
    state["attached"].pop(target, None)
    print(f"Removed user `{target}` successfully.")
else:
    fail(f"mc admin {' '.join(command)} is not stood in for")
save()
'''


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> Iterator[str]:
    """moto's S3 server: the stand-in for MinIO's S3 API, for this module."""
    with moto_server(tmp_path_factory.mktemp("moto") / "moto_server.log") as url:
        yield url


@pytest.fixture(scope="module")
def release() -> Rendered:
    return render(values={})


#: The keys in the Secrets: the chart's own random ones, or an existing Secret's, whose secret keys (AWS,
#: SeaweedFS) may hold `/`, `+`, `=` and `@` (access key ids stay alphanumeric: moto, like AWS, signs with them).
SECRET_VALUES = {
    "generated": {},
    "existing-secret": {
        "retailflow-lake": {"accessKeyId": "AKIAIOSFODNN7EXAMPLE", "secretAccessKey": "wJalrXUtnFEMI/K7MDENG+bPxRfiCY=EX@MPLE/KEY"},
        "retailflow-minio-root": {"accessKeyId": "ROOTIOSFODNN7EXAMPLE", "secretAccessKey": "r0Ot/K7MDENG+bPxRfiCY=EX@MPLE"},
    },
}


@pytest.fixture(scope="module", params=sorted(SECRET_VALUES))
def kube(release: Rendered, request) -> Iterator[EmulatedKubernetesAPI]:
    """The emulated Kubernetes API (a stand-in) with the release's generated Secrets, with exactly their
    rendered keys (``SECRET_VALUES``)."""
    with EmulatedKubernetesAPI(CRD_PATH, rbac=RBAC(release.docs)) as api:
        api.ensure_namespace(NAMESPACE)
        create_release_secrets(api, release, SECRET_VALUES[request.param])
        yield api


def secret_value(kube: EmulatedKubernetesAPI, ref: dict) -> str:
    import base64

    data = kube.request("GET", f"/api/v1/namespaces/{NAMESPACE}/secrets/{ref['name']}").json()["data"]
    return base64.b64decode(data[ref["key"]]).decode()


def env_refs(container: dict) -> dict[str, dict]:
    return {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container.get("env", [])
            if "secretKeyRef" in (e.get("valueFrom") or {})}


@pytest.fixture(scope="module")
def minio_root(release, kube) -> list[str]:
    """The root user MinIO's StatefulSet starts with: its MINIO_ROOT_USER and MINIO_ROOT_PASSWORD, resolved."""
    (minio,) = containers(release.get("StatefulSet", "retailflow-minio"))
    refs = env_refs(minio)
    return [secret_value(kube, refs["MINIO_ROOT_USER"]), secret_value(kube, refs["MINIO_ROOT_PASSWORD"])]


@pytest.fixture(scope="module")
def lake_keys(release, kube) -> list[str]:
    """The lake's keys, as every other client of the lake reads them (the seed Job's container)."""
    refs = env_refs(containers(release.get("Job", "retailflow-seed"))[-1])
    return [secret_value(kube, refs["RETAILFLOW_LAKE_ACCESS_KEY"]), secret_value(kube, refs["RETAILFLOW_LAKE_SECRET_KEY"])]


class Standin:
    """The `mc` stand-in installed in a folder put first on the Job's PATH, with its state file."""

    def __init__(self, folder: Path, root: list[str], iam_loading: int = 0) -> None:
        self.folder, self.bin = folder, folder / "bin"
        self.bin.mkdir(parents=True)
        python = str(DAGS_PYTHON)
        (self.bin / "mc").write_text(MC_ADMIN_STANDIN.replace("PYTHON", python, 1))
        (folder / "mc-s3").write_text(MC_STUB.format(python=python))
        for program in (self.bin / "mc", folder / "mc-s3"):
            program.chmod(0o755)
        self.state_file = folder / "minio-state.json"
        self.state_file.write_text(json.dumps({"root": root, "users": {}, "policies": {}, "attached": {},
                                               "attach_answers": [], "argv": [], "iam_loading": iam_loading,
                                               "faults": {}}))

    @property
    def state(self) -> dict:
        return json.loads(self.state_file.read_text())

    def change(self, **fields) -> None:
        """Sets fields of the stand-in's MinIO state between runs (another root, a fault)."""
        self.state_file.write_text(json.dumps({**self.state, **fields}))

    def add_user(self, access: str, secret: str, *policies: dict[str, dict]) -> None:
        """A user someone else made in MinIO (`mc admin user add`), each policy created and attached to it."""
        state = self.state
        state["users"][access] = secret
        for policy in policies:
            state["policies"] |= policy
            state["attached"].setdefault(access, []).extend(policy)
        self.state_file.write_text(json.dumps(state))

    def env(self) -> dict[str, str]:
        return {"PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin", "MC_STUB_LOG": str(self.folder / "mc-s3.log"),
                "MC_STANDIN_STATE": str(self.state_file), "MC_STANDIN_S3": str(self.folder / "mc-s3")}

    def made(self) -> list[str]:
        """The buckets this stand-in was asked to make (`mc mb ... lake/BUCKET`), in order."""
        return [argv[-1].split("/", 1)[1] for argv in self.state["argv"] if argv[:1] == ["mb"]]

    def admin_calls(self, *command: str) -> int:
        return sum(1 for argv in self.state["argv"] if argv[:len(command)] == list(command))

    def s3_keys(self) -> list[list[str]]:
        """The keys each S3 call (`mb`) signed with."""
        log = self.folder / "mc-s3.log"
        records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return [r["keys"] for r in records if "keys" in r]


def run_job(release: Rendered, kube, s3: str, standin: Standin, folder: Path, extra_env: dict[str, str] | None = None):
    """The rendered Job's `buckets` container with the stand-in first on its PATH. The runner refuses the
    minio/mc image (nothing stands in for it), so the copy run here names an image the table maps to no
    programs of its own: the script runs in the machine's `sh`, as in the image's."""
    job = copy.deepcopy(release)
    (buckets,) = [c for c in containers(job.get(*JOB), init=False) if c["name"] == "buckets"]
    assert "minio/mc:" in buckets["image"], buckets["image"]
    buckets["image"] = "mysql:8.4"
    peers = Peers()
    peers.add("retailflow-minio", 9000, urlsplit(s3).port, "moto (stand-in for MinIO's S3 API)")
    peers.add("seaweedfs.storage.svc", 8333, urlsplit(s3).port, "moto (stand-in for an external S3 store)")
    return Workloads(job, peers, kube, root=folder / "root").run(*JOB, "buckets", timeout=180,
                                                                 extra_env={**standin.env(), **(extra_env or {})})


def job_buckets(release: Rendered) -> list[str]:
    (buckets,) = containers(release.get(*JOB), init=False)
    return next(e["value"] for e in buckets["env"] if e["name"] == "LAKE_BUCKETS").split()


def resources(policy: dict) -> set[str]:
    return {r for s in policy["Statement"] for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])}


def actions(policy: dict) -> set[str]:
    return {a for s in policy["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}


@pytest.fixture(scope="module")
def installed(release, kube, s3, minio_root, tmp_path_factory) -> tuple[Standin, object]:
    """The Job run once on a fresh MinIO (the stand-in's root is the StatefulSet's)."""
    folder = tmp_path_factory.mktemp("install")
    standin = Standin(folder, minio_root)
    return standin, run_job(release, kube, s3, standin, folder)


class TestLakeUser:
    def test_the_lake_keys_become_a_minio_user_with_the_secrets_secret_key(self, installed, lake_keys, minio_root):
        standin, run = installed
        run.check()
        access, secret = lake_keys
        assert access != minio_root[0]
        assert standin.state["users"] == {access: secret}, "the user is not the lake Secret's keys"

    def test_its_policy_allows_the_jobs_buckets_only_and_no_admin_action(self, installed, release, lake_keys):
        standin, run = installed
        run.check()
        state = standin.state
        (attached,) = state["attached"][lake_keys[0]]
        policy = state["policies"][attached]
        buckets = job_buckets(release)
        assert resources(policy) == {f"arn:aws:s3:::{b}" for b in buckets} | {f"arn:aws:s3:::{b}/*" for b in buckets}
        assert actions(policy) <= CONSUMER_ACTIONS, actions(policy) - CONSUMER_ACTIONS
        assert {s["Effect"] for s in policy["Statement"]} == {"Allow"}

    def test_the_buckets_are_made_as_root_and_no_secret_is_ever_an_argument(self, installed, release, s3, lake_keys,
                                                                            minio_root):
        standin, run = installed
        run.check()
        assert set(job_buckets(release)) <= s3_buckets(s3)
        assert standin.s3_keys() and all(keys == minio_root for keys in standin.s3_keys())
        argvs = standin.state["argv"]
        assert ["admin", "user", "add", "lake", lake_keys[0]] in argvs, argvs
        for argv in argvs:
            for secret in (lake_keys[1], minio_root[1]):
                assert not any(secret in arg for arg in argv), f"a secret key is in mc's argv: {argv[:3]}"
        assert lake_keys[1] not in run.output and minio_root[1] not in run.output

    def test_a_rerun_on_upgrade_succeeds_and_ends_the_same(self, installed, release, kube, s3, tmp_path):
        standin, first = installed
        first.check()
        before = standin.state
        again = run_job(release, kube, s3, standin, tmp_path)
        again.check()
        after = standin.state
        assert {k: after[k] for k in ("users", "policies", "attached")} == \
            {k: before[k] for k in ("users", "policies", "attached")}
        assert after["attach_answers"] == ["attached", "already applied"]

    def test_a_minio_still_run_with_the_lake_keys_as_root_keeps_the_lake_working_and_says_so(
            self, release, kube, s3, lake_keys, tmp_path):
        """An upgrade of a release from before the root Secret: MinIO, a pre-install hook with Airbyte, is
        not upgraded by Helm and still runs with the lake's keys as root. Its users are still loading for the
        first two calls: MinIO's "not initialized" answer is asked again, not taken for a refusal."""
        standin = Standin(tmp_path, lake_keys, iam_loading=2)
        run = run_job(release, kube, s3, standin, tmp_path)
        run.check()
        assert "MinIO still runs with the lake's keys (retailflow-lake) as its root user" in run.output, run.output
        assert standin.state["users"] == {} and standin.state["policies"] == {}
        assert standin.state["iam_loading"] == 0 and standin.admin_calls("admin", "info") == 4  # 3 as root, 1 as the lake
        assert standin.s3_keys() and all(keys == lake_keys for keys in standin.s3_keys())
        assert sorted(standin.made()) == sorted(job_buckets(release))

    def test_minio_a_release_resource_on_its_old_root_fails_until_its_pod_restarts(
            self, kube, s3, lake_keys, minio_root, tmp_path):
        """The lite profile upgraded to add Airbyte: MinIO is a release resource, which this upgrade points at
        the root Secret. A run that meets the old pod (an upgrade without --wait) fails, so that the Job's retries
        wait for the new pod; the retry that meets it creates the lake's user."""
        upgrade = render(values=LITE_WITH_AIRBYTE, is_upgrade=True)
        assert upgrade.get(*JOB)["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
        standin = Standin(tmp_path / "old-pod", lake_keys)
        run = run_job(upgrade, kube, s3, standin, tmp_path / "old-pod")
        assert run.returncode != 0, run.output
        assert "MinIO's pod has not restarted with retailflow-minio-root yet" in run.output, run.output
        assert standin.made() == [] and standin.state["users"] == {}
        state = standin.state
        state["root"] = minio_root  # the restarted pod
        standin.state_file.write_text(json.dumps(state))
        run_job(upgrade, kube, s3, standin, tmp_path / "new-pod").check()
        assert standin.state["users"] == {lake_keys[0]: lake_keys[1]}
        assert sorted(standin.made()) == sorted(job_buckets(upgrade))

    def test_a_root_minio_refuses_fails_naming_the_secret(self, release, kube, s3, tmp_path):
        standin = Standin(tmp_path, ["someone-else", "another-root-password"])
        run = run_job(release, kube, s3, standin, tmp_path)
        assert run.returncode != 0, run.output
        assert "MinIO refused the root user of retailflow-minio-root" in run.output, run.output
        assert "does not exist in our records" in run.output, run.output
        assert standin.state["users"] == {} and standin.s3_keys() == []
        assert standin.admin_calls("admin", "info") == 2, "a refusal is not asked again"

    def test_a_minio_that_never_answers_fails_after_the_bounded_tries(self, release, kube, s3, lake_keys, tmp_path):
        standin = Standin(tmp_path, lake_keys, iam_loading=1000)
        run = run_job(release, kube, s3, standin, tmp_path, {"LAKE_ADMIN_TRIES": "3", "LAKE_ADMIN_DELAY_S": "0"})
        assert run.returncode != 0, run.output
        assert "MinIO's admin API did not answer the root user of retailflow-minio-root after 3 tries" in run.output
        assert "IAM sub-system not initialized yet" in run.output
        assert standin.admin_calls("admin", "info") == 3 and standin.made() == []


#: MinIO's root and lake keys for the rotation runs; the secret keys hold what an existing Secret may.
ROOT_KEYS = ["ROOTIOSFODNN7EXAMPLE", "r0Ot/K7MDENG+bPxRfiCY=EX@MPLE"]
KEYS_2024 = ("AKIA2024LAKEEXAMPLE1", "s3cr3t/2024+lake=key@OLD")
KEYS_2025 = ("AKIA2025LAKEEXAMPLE2", "s3cr3t/2025+lake=key@NEW")
#: A user and a policy of someone else's in the same MinIO: an analyst reading one bucket.
ANALYST = ("analyst", "analyst-s3cret-key", {"analytics-read": {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::retail-lake/marts/*"]}]}})
#: MinIO's answer when its storage cannot write (InsufficientWriteQuorum: cmd/api-errors.go ErrSlowDownWrite).
UNWRITABLE = "Resource requested is unwritable, please reduce your request rate"


def run_with_lake_keys(release: Rendered, s3: str, standin: Standin, folder: Path, keys: tuple[str, str]):
    """The Job run with ``keys`` in the lake's Secret (the generated one, or the existingSecret ``release``
    names) and ROOT_KEYS in MinIO's root Secret, in an emulated Kubernetes API of its own."""
    (buckets,) = containers(release.get(*JOB), init=False)
    lake = next(e["valueFrom"]["secretKeyRef"]["name"] for e in buckets["env"] if e["name"] == "LAKE_ACCESS_KEY_ID")
    generated = {d["metadata"]["name"] for d in release.of_kind("Secret")}
    values = {"retailflow-minio-root": dict(zip(("accessKeyId", "secretAccessKey"), ROOT_KEYS, strict=True))}
    lake_keys = dict(zip(("accessKeyId", "secretAccessKey"), keys, strict=True))
    with EmulatedKubernetesAPI(CRD_PATH, rbac=RBAC(release.docs), set_env=False) as api:
        api.ensure_namespace(NAMESPACE)
        create_release_secrets(api, release, values | ({lake: lake_keys} if lake in generated else {}))
        if lake not in generated:
            api.create_secret(NAMESPACE, lake, lake_keys)
        return run_job(release, api, s3, standin, folder)


def signs_in(standin: Standin, keys: tuple[str, str] | list[str]) -> str:
    """What the stand-in's MinIO answers ``keys`` (`mc admin info`): a user's keys are known ("Access
    Denied.": no admin right), a removed user's are not ("does not exist in our records")."""
    env = {**os.environ, **standin.env(), "MC_HOST_lake": f"http://{keys[0]}:{keys[1]}@127.0.0.1:1"}
    return subprocess.run([str(standin.bin / "mc"), "admin", "info", "lake"], env=env, capture_output=True,
                          text=True, check=False, timeout=30).stderr


class TestRotation:
    """New keys in the lake's Secret (or another existingSecret): the user of the old keys is removed, so
    that rotated keys stop working; a user the chart did not make is never touched."""

    def test_a_rotated_key_is_removed_the_new_one_kept_and_a_rerun_changes_nothing(self, release, s3, tmp_path):
        standin = Standin(tmp_path, ROOT_KEYS)
        run_with_lake_keys(release, s3, standin, tmp_path / "2024", KEYS_2024).check()
        standin.add_user(*ANALYST[:2], ANALYST[2])
        standin.add_user("backup-operator", "backup-s3cret-key")
        rotated = run_with_lake_keys(release, s3, standin, tmp_path / "2025", KEYS_2025)
        rotated.check()
        state = standin.state
        assert state["users"] == {KEYS_2025[0]: KEYS_2025[1], ANALYST[0]: ANALYST[1],
                                  "backup-operator": "backup-s3cret-key"}
        assert state["attached"] == {KEYS_2025[0]: ["retailflow-lake"], ANALYST[0]: ["analytics-read"]}
        assert set(state["policies"]) == {"retailflow-lake", "analytics-read"}
        assert resources(state["policies"]["retailflow-lake"]) == {
            f"arn:aws:s3:::{b}{objects}" for b in job_buckets(release) for objects in ("", "/*")}
        assert f"removed the lake user {KEYS_2024[0]}: its keys are no longer those of retailflow-lake" in rotated.output
        assert "does not exist in our records" in signs_in(standin, KEYS_2024)
        assert "Access Denied." in signs_in(standin, KEYS_2025)

        again = run_with_lake_keys(release, s3, standin, tmp_path / "rerun", KEYS_2025)
        again.check()
        after = standin.state
        assert {k: after[k] for k in ("users", "policies", "attached")} == \
            {k: state[k] for k in ("users", "policies", "attached")}
        assert standin.admin_calls("admin", "user", "rm") == 1, "the rerun removed a user"
        for argv in after["argv"]:
            for secret in (KEYS_2024[1], KEYS_2025[1], ROOT_KEYS[1], ANALYST[1]):
                assert not any(secret in arg for arg in argv), f"a secret key is in mc's argv: {argv[:3]}"
        for run in (rotated, again):
            assert not any(secret in run.output for secret in (KEYS_2024[1], KEYS_2025[1], ROOT_KEYS[1]))

    def test_another_existing_secret_replaces_the_user_of_the_previous_one(self, s3, tmp_path):
        def with_secret(name: str) -> Rendered:
            return render(values={"global": {"retailflow": {"lake": {"existingSecret": name}},
                                             "storage": {"secretName": name}}})

        standin = Standin(tmp_path, ROOT_KEYS)
        run_with_lake_keys(with_secret("lake-keys-2024"), s3, standin, tmp_path / "2024", KEYS_2024).check()
        run_with_lake_keys(with_secret("lake-keys-2025"), s3, standin, tmp_path / "2025", KEYS_2025).check()
        state = standin.state
        assert state["users"] == {KEYS_2025[0]: KEYS_2025[1]}
        assert state["attached"] == {KEYS_2025[0]: ["retailflow-lake"]}
        assert set(state["policies"]) == {"retailflow-lake"}

    def test_names_mc_prints_escaped_are_read_back_exactly(self, release, s3, tmp_path):
        """Access keys MinIO takes (no '=' or ','), which colorjson escapes: the new one is recognised as the
        current user (kept on a rerun), the old one is named to `mc admin user rm` as it is."""
        old, new = ('lake"<old>&\\é', "s3cr3t/old+key=1"), ('lake"<new>&\\é', "s3cr3t/new+key=2")
        standin = Standin(tmp_path, ROOT_KEYS)
        for keys, folder in ((old, "old"), (new, "new"), (new, "rerun")):
            run_with_lake_keys(release, s3, standin, tmp_path / folder, keys).check()
        assert standin.state["users"] == {new[0]: new[1]}
        assert standin.state["attached"] == {new[0]: ["retailflow-lake"]}
        assert standin.admin_calls("admin", "user", "rm", "lake", old[0]) == 1

    def test_a_policy_holder_that_is_no_minio_user_is_left_alone(self, release, s3, tmp_path):
        """MinIO lists the policy mappings of temporary credentials' parents too (cmd/iam-store.go
        listPolicyMappings, policydb/sts-users), which are not users: `mc admin user rm` answers that the
        user does not exist, and the Job goes on."""
        standin = Standin(tmp_path, ROOT_KEYS)
        run_with_lake_keys(release, s3, standin, tmp_path / "2024", KEYS_2024).check()
        state = standin.state
        standin.change(attached={**state["attached"], "openid-parent": ["retailflow-lake"]})
        run = run_with_lake_keys(release, s3, standin, tmp_path / "2025", KEYS_2025)
        run.check()
        assert "openid-parent holds the policy retailflow-lake but is no MinIO user: nothing to remove" in run.output
        assert standin.state["users"] == {KEYS_2025[0]: KEYS_2025[1]}

    def test_a_name_mc_would_take_for_a_flag_fails_the_run_before_any_user_is_removed(self, release, s3, tmp_path):
        """All or nothing: a holder of the policy whose name starts with '-' stops the run before the first
        removal, so the users listed before it are not half removed."""
        standin = Standin(tmp_path, ROOT_KEYS)
        run_with_lake_keys(release, s3, standin, tmp_path / "2024", KEYS_2024).check()
        state = standin.state
        standin.change(users={**state["users"], "-flagged": "flagged-secret-key"},
                       attached={**state["attached"], "-flagged": ["retailflow-lake"]})
        run = run_with_lake_keys(release, s3, standin, tmp_path / "2025", KEYS_2025)
        assert run.returncode != 0, run.output
        assert "the lake user -flagged (policy retailflow-lake) starts with '-'" in run.output, run.output
        assert "nothing removed" in run.output and "removed the lake user" not in run.output, run.output
        assert set(standin.state["users"]) == {KEYS_2024[0], KEYS_2025[0], "-flagged"}

    @pytest.mark.parametrize(("call", "said"), [
        ("policy entities", "MinIO did not list the users of the policy retailflow-lake, so keys rotated out of "
                            "retailflow-lake may still work"),
        ("user rm", f"MinIO refused to remove the lake user {KEYS_2024[0]}, whose keys are no longer those of "
                    "retailflow-lake and still work"),
    ])
    def test_minio_refusing_fails_the_job_saying_the_old_keys_still_work(self, release, s3, tmp_path, call, said):
        standin = Standin(tmp_path, ROOT_KEYS)
        run_with_lake_keys(release, s3, standin, tmp_path / "2024", KEYS_2024).check()
        standin.change(faults={call: UNWRITABLE})
        run = run_with_lake_keys(release, s3, standin, tmp_path / "2025", KEYS_2025)
        assert run.returncode != 0, run.output
        assert said in run.output and UNWRITABLE in run.output, run.output
        state = standin.state
        assert state["users"] == {KEYS_2024[0]: KEYS_2024[1], KEYS_2025[0]: KEYS_2025[1]}
        assert state["attached"][KEYS_2025[0]] == ["retailflow-lake"]


#: An external store's keys as an existing Secret holds them: a secret key may hold `/`, `+`, `=` and `@`.
EXTERNAL_KEYS = ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCY=EX@MPLE/KEY")


def test_with_an_external_store_the_job_makes_the_buckets_with_the_lakes_keys_and_no_admin_call(s3, tmp_path):
    """minio.enabled=false (the external-s3 variant, its endpoint plain HTTP here as moto serves it): no root, no
    user, no policy; the buckets made with the lake's keys, which reach mc in MC_HOST_lake only."""
    endpoint = "http://seaweedfs.storage.svc:8333"
    external = render(values=merge_values(VARIANTS["external-s3"], {
        "global": {"retailflow": {"lake": {"endpoint": endpoint}}, "storage": {"minio": {"endpoint": endpoint}}}}))
    with EmulatedKubernetesAPI(CRD_PATH, rbac=RBAC(external.docs), set_env=False) as api:
        api.ensure_namespace(NAMESPACE)
        create_release_secrets(api, external, {})
        api.create_secret(NAMESPACE, "seaweed-keys", {"accessKeyId": EXTERNAL_KEYS[0],
                                                      "secretAccessKey": EXTERNAL_KEYS[1]})
        standin = Standin(tmp_path, ["no-root-here", "no-root-here"])
        run = run_job(external, api, s3, standin, tmp_path)
    run.check()
    assert sorted(standin.made()) == sorted(job_buckets(external)) and set(job_buckets(external)) <= s3_buckets(s3)
    assert standin.s3_keys() == [list(EXTERNAL_KEYS)] * len(job_buckets(external))
    assert standin.admin_calls("admin") == 0, standin.state["argv"]
    for argv in standin.state["argv"]:
        assert not any(key in arg for key in EXTERNAL_KEYS for arg in argv), f"a key is in mc's argv: {argv[:3]}"
    assert EXTERNAL_KEYS[1] not in run.output


class TestStandin:
    """The stand-in's own rules, where the Job's run does not reach them."""

    def admin(self, standin: Standin, root: list[str], args: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess:
        env = {**os.environ, **standin.env(), "MC_HOST_lake": f"http://{root[0]}:{root[1]}@127.0.0.1:1"}
        return subprocess.run([str(standin.bin / "mc"), "admin", *args], input=stdin, env=env, capture_output=True,
                              check=False, timeout=30)

    def test_user_add_reads_one_line_of_stdin_as_readline_does(self, tmp_path):
        root = ["rootuser", "rootpassword"]
        standin = Standin(tmp_path, root)
        assert self.admin(standin, root, ["user", "add", "lake", "lakeuser"], b"s3cret-key\r\nnext line\n").returncode == 0
        assert standin.state["users"] == {"lakeuser": "s3cret-key"}
        refused = self.admin(standin, root, ["user", "add", "lake", "rootuser"], b"whatever-secret\n")
        assert refused.returncode != 0 and b"same as admin access key" in refused.stderr

    def test_minio_refuses_a_policy_that_is_not_valid(self, tmp_path):
        root = ["rootuser", "rootpassword"]
        standin = Standin(tmp_path, root)
        for name, text in (("broken", '{"Version": "2012-10-17", "Statement": ['),
                           ("unknown-action", '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", '
                                              '"Action": ["s3:GetEverything"], "Resource": ["arn:aws:s3:::b"]}]}'),
                           ("no-version", '{"Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"], '
                                          '"Resource": ["arn:aws:s3:::b/*"]}]}')):
            (tmp_path / f"{name}.json").write_text(text)
            run = self.admin(standin, root, ["policy", "create", "lake", name, str(tmp_path / f"{name}.json")])
            assert run.returncode != 0, name
        assert standin.state["policies"] == {}


    def test_policy_entities_prints_colorjsons_compact_json_and_rm_refuses_a_non_user(self, tmp_path):
        root = ["rootuser", "rootpassword"]
        standin = Standin(tmp_path, root)
        standin.add_user('b"<&>\\\u2028', "secret-key-1", {"p": {"Version": "2012-10-17", "Statement": []}})
        standin.add_user("a-user", "secret-key-2", {"p": {"Version": "2012-10-17", "Statement": []}})
        listed = self.admin(standin, root, ["policy", "entities", "--json", "--policy", "p", "lake"])
        assert listed.returncode == 0 and listed.stderr == b""
        assert listed.stdout.count(b"\n") == 1, listed.stdout
        assert r'"users":["a-user","b\"\u003c\u0026\u003e\\\u2028"],"groups":null' in listed.stdout.decode()
        assert listed.stdout.decode().startswith('{"status":"success","result":{"timestamp":"')
        assert json.loads(listed.stdout)["result"]["policyMappings"] == [
            {"policy": "p", "users": ["a-user", 'b"<&>\\\u2028'], "groups": None}]
        nobody = json.loads(self.admin(standin, root, ["policy", "entities", "--json", "--policy", "q", "lake"]).stdout)
        assert "policyMappings" not in nobody["result"]
        assert self.admin(standin, root, ["policy", "entities", "--json", "--policy", "p"]).returncode == 1
        missing = self.admin(standin, root, ["user", "rm", "lake", "rootuser"])
        assert missing.returncode == 1
        assert missing.stderr == b"mc: <ERROR> Unable to remove rootuser. The specified user does not exist.\n"
        removed = self.admin(standin, root, ["user", "rm", "lake", "a-user"])
        assert removed.stdout == b"Removed user `a-user` successfully.\n"
        assert set(standin.state["users"]) == {'b"<&>\\\u2028'} and set(standin.state["attached"]) == {'b"<&>\\\u2028'}


#: Runs in the dags environment (boto3): the policy given on stdin, evaluated by moto with IAM enforced, for a
#: user of moto's IAM (moto makes its keys: the lake Secret's cannot be given to it). Prints each call's outcome.
IAM_CHECK = r'''
import json, sys
import boto3, requests
from botocore.exceptions import ClientError

job = json.load(sys.stdin)
endpoint, policy, buckets, other = job["endpoint"], job["policy"], job["buckets"], job["other"]
admin = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="admin", aws_secret_access_key="admin")
s3 = boto3.client("s3", **admin)
for bucket in [*buckets, other]:
    s3.create_bucket(Bucket=bucket)
s3.put_object(Bucket=other, Key="theirs.txt", Body=b"not the lake's")
iam = boto3.client("iam", **admin)
iam.create_user(UserName="lake")
iam.put_user_policy(UserName="lake", PolicyName="lake", PolicyDocument=json.dumps(policy))
key = iam.create_access_key(UserName="lake")["AccessKey"]
requests.post(endpoint + "/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
user = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                    aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
results = {}
def attempt(name, call):
    try:
        call()
        results[name] = "allowed"
    except ClientError as exc:
        results[name] = exc.response["Error"]["Code"]
for bucket in buckets:
    attempt(f"put {bucket}", lambda: user.put_object(Bucket=bucket, Key="raw/x.csv", Body=b"a,b\n"))
    attempt(f"get {bucket}", lambda: user.get_object(Bucket=bucket, Key="raw/x.csv")["Body"].read())
    attempt(f"list {bucket}", lambda: user.list_objects_v2(Bucket=bucket, Prefix="raw/"))
    def multipart():
        upload = user.create_multipart_upload(Bucket=bucket, Key="raw/big.parquet")["UploadId"]
        etag = user.upload_part(Bucket=bucket, Key="raw/big.parquet", UploadId=upload, PartNumber=1, Body=b"p")["ETag"]
        user.list_parts(Bucket=bucket, Key="raw/big.parquet", UploadId=upload)
        user.complete_multipart_upload(Bucket=bucket, Key="raw/big.parquet", UploadId=upload,
                                       MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": 1}]})
    attempt(f"multipart {bucket}", multipart)
    attempt(f"delete {bucket}", lambda: user.delete_object(Bucket=bucket, Key="raw/x.csv"))
attempt(f"get {other}", lambda: user.get_object(Bucket=other, Key="theirs.txt"))
attempt(f"put {other}", lambda: user.put_object(Bucket=other, Key="x", Body=b"x"))
attempt(f"list {other}", lambda: user.list_objects_v2(Bucket=other))
attempt("create bucket", lambda: user.create_bucket(Bucket="made-by-the-lake-user"))
attempt(f"delete bucket {buckets[0]}", lambda: user.delete_bucket(Bucket=buckets[0]))
attempt("list all buckets", lambda: user.list_buckets())
print(json.dumps(results))
'''


def test_the_policy_lets_the_lake_user_use_its_buckets_and_refuses_the_rest(installed, release, lake_keys, tmp_path):
    """The policy the Job handed to MinIO, evaluated by moto with IAM enforced (moto's
    INITIAL_NO_AUTH_ACTION_COUNT, reset through its /moto-api/reset-auth endpoint on a server of its own):
    AWS's evaluator standing in for MinIO's. Not evaluated here: HEAD on a bucket, which moto authorises as
    s3:HeadBucket while MinIO falls back to s3:ListBucket (cmd/bucket-handlers.go HeadBucketHandler), and a
    multi-object delete, which moto does not authorise at all (MinIO checks s3:DeleteObject for each key,
    as for the single delete evaluated here)."""
    standin, run = installed
    run.check()
    state = standin.state
    (attached,) = state["attached"][lake_keys[0]]
    buckets = job_buckets(release)
    with moto_server(tmp_path / "moto_server.log") as endpoint:
        checked = subprocess.run([str(DAGS_PYTHON), "-c", IAM_CHECK], capture_output=True, text=True, timeout=120,
                                 check=False, input=json.dumps({"endpoint": endpoint, "policy": state["policies"][attached],
                                                                "buckets": buckets, "other": "not-the-lake"}))
    assert checked.returncode == 0, checked.stderr[-3000:]
    results = json.loads(checked.stdout)
    allowed = {name for name, outcome in results.items() if outcome == "allowed"}
    assert allowed == {f"{op} {b}" for b in buckets for op in ("put", "get", "list", "multipart", "delete")}, results
    refused = set(results) - allowed
    assert refused == {"get not-the-lake", "put not-the-lake", "list not-the-lake", "create bucket",
                       f"delete bucket {buckets[0]}", "list all buckets"}
    assert {results[name] for name in refused} == {"AccessDenied"}, results
