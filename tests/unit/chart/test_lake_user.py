"""MinIO's root Secret against the lake's: who reads which, and the lake user's policy the Job creates.

MinIO's root (``minio.root``) is read by MinIO and the lake-buckets Job only; every other client of the
lake (Airflow, Airbyte, the seed Job, the RetailPipeline the operator hands to Airbyte) holds the lake's
Secret, which the Job makes a MinIO user limited to ``lake.buckets``. The Job's script itself runs in
``tests/integration/workloads/test_lake_user_job.py``.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from support.helm_render import (HELM, LITE_VALUES, NAMESPACE, RELEASE, VARIANTS, RenderError, _sandbox,
                                  airflow_extra_env, containers, merge_values, notes, render)

ROOT = "retailflow-minio-root"
LAKE_KEYS = {"accessKeyId", "secretAccessKey"}
#: The S3 actions the lake's clients need on its buckets (see the workloads test for who does what).
CONSUMER_ACTIONS = {"s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads", "s3:GetObject",
                    "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"}
WITH_MINIO = sorted(v for v in VARIANTS if VARIANTS[v].get("minio", {}).get("enabled", True))


def mentions(node, text: str) -> bool:
    if isinstance(node, dict):
        return any(mentions(v, text) for v in node.values())
    if isinstance(node, list):
        return any(mentions(v, text) for v in node)
    return isinstance(node, str) and text in node


def lake_key_refs(rendered, airflow: bool = True) -> list[tuple[str, str, str]]:
    """(workload, container, Secret) for every environment variable read from an access key id or a secret
    access key, in the release's own workloads and Airflow's extraEnv."""
    found = []
    for doc in rendered.workloads():
        for container in containers(doc):
            for env in container.get("env", []):
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref and ref["key"] in LAKE_KEYS:
                    found.append((f"{doc['kind']}/{doc['metadata']['name']}", container["name"], ref["name"]))
    for env in airflow_extra_env(rendered) if airflow else []:
        ref = (env.get("valueFrom") or {}).get("secretKeyRef")
        if ref and ref["key"] in LAKE_KEYS:
            found.append(("airflow.extraEnv", env["name"], ref["name"]))
    return found


def job_env(rendered) -> dict[str, str]:
    (buckets,) = containers(rendered.get("Job", "retailflow-lake-buckets"), init=False)
    return {e["name"]: e.get("value") for e in buckets["env"]}


def policy(rendered) -> dict:
    (buckets,) = containers(rendered.get("Job", "retailflow-lake-buckets"), init=False)
    return json.loads(next(e["value"] for e in buckets["env"] if e["name"] == "LAKE_POLICY"))


class TestRootSecret:
    @pytest.mark.parametrize("variant", WITH_MINIO)
    def test_only_minio_and_the_lake_buckets_job_name_the_root_secret(self, variant):
        rendered = render(values=VARIANTS[variant])
        naming = {f"{d['kind']}/{d['metadata']['name']}" for d in [*rendered.docs, *rendered.stand_ins]
                  if mentions({k: v for k, v in d.items() if k != "metadata"}, ROOT)}
        assert naming == {"StatefulSet/retailflow-minio", "Job/retailflow-lake-buckets"}

    @pytest.mark.parametrize("variant", sorted(VARIANTS))
    def test_every_other_client_of_the_lake_reads_the_lake_secret(self, variant):
        rendered = render(values=VARIANTS[variant])
        lake = VARIANTS[variant].get("global", {}).get("retailflow", {}).get("lake", {}).get("existingSecret") \
            or "retailflow-lake"
        airflow = VARIANTS[variant].get("airflow", {}).get("enabled", True)
        refs = lake_key_refs(rendered, airflow)
        root_readers = {(w, c) for w, c, name in refs if name == ROOT}
        expected_root = {("StatefulSet/retailflow-minio", "minio"), ("Job/retailflow-lake-buckets", "buckets")}
        assert root_readers == (expected_root if variant in WITH_MINIO else set())
        others = {(w, c, name) for w, c, name in refs if (w, c) not in expected_root}
        assert {w for w, _, _ in others} >= {"Job/retailflow-seed", *(["airflow.extraEnv"] if airflow else [])}
        assert {name for _, _, name in others} == {lake}, others
        assert ("Job/retailflow-lake-buckets", "buckets", lake) in refs  # the user the Job creates

    def test_the_retailpipeline_hands_airbyte_the_lake_secret(self, defaults):
        body = yaml.safe_load(defaults.get("ConfigMap", "retailflow-pipeline")["data"]["retailpipeline.yaml"])
        assert body["spec"]["lake"]["credentialsSecretRef"]["name"] == "retailflow-lake"

    def test_the_root_secret_is_generated_apart_from_the_lakes_and_unlabelled_for_the_operator(self, defaults):
        root, lake = (defaults.get("Secret", name)["stringData"] for name in (ROOT, "retailflow-lake"))
        assert set(root) == LAKE_KEYS
        assert root["accessKeyId"] != lake["accessKeyId"] and root["secretAccessKey"] != lake["secretAccessKey"]
        assert len(root["accessKeyId"]) == 20 and len(root["secretAccessKey"]) == 40
        labels = defaults.get("Secret", ROOT)["metadata"]["labels"]
        assert "retailflow.io/credentials" not in labels
        assert defaults.get("Secret", ROOT)["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"

    def test_an_existing_root_secret_replaces_the_generated_one(self):
        rendered = render(values={"minio": {"root": {"existingSecret": "my-minio-root"}}})
        assert ROOT not in rendered.names("Secret")
        readers = {(w, c) for w, c, name in lake_key_refs(rendered) if name == "my-minio-root"}
        assert readers == {("StatefulSet/retailflow-minio", "minio"), ("Job/retailflow-lake-buckets", "buckets")}

    @pytest.mark.parametrize("values", [
        {"minio": {"root": {"existingSecret": "retailflow-lake"}}},
        {"minio": {"root": {"existingSecret": "my-lake"}}, **VARIANTS["existing-secrets"]},
    ])
    def test_the_root_secret_cannot_be_the_lakes(self, values):
        with pytest.raises(RenderError, match="MinIO's root Secret and the lake's are both"):
            render(values=values)

    def test_without_minio_there_is_no_root_and_the_job_only_makes_buckets(self):
        rendered = render(values=VARIANTS["external-s3"])
        assert ROOT not in rendered.names("Secret")
        (buckets,) = containers(rendered.get("Job", "retailflow-lake-buckets"), init=False)
        assert not {e["name"] for e in buckets["env"]} & {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "LAKE_POLICY"}


class TestLakeUserPolicy:
    def test_resources_are_exactly_the_buckets_the_job_creates(self):
        rendered = render(values={"lake": {"buckets": ["retail-lake", "airbyte-storage", "retail-lake", "archive"]}})
        (buckets,) = containers(rendered.get("Job", "retailflow-lake-buckets"), init=False)
        created = next(e["value"] for e in buckets["env"] if e["name"] == "LAKE_BUCKETS").split()
        assert sorted(created) == ["airbyte-storage", "archive", "retail-lake"]
        statements = policy(rendered)["Statement"]
        resources = {r for s in statements for r in s["Resource"]}
        assert resources == {f"arn:aws:s3:::{b}" for b in created} | {f"arn:aws:s3:::{b}/*" for b in created}

    def test_only_the_consumers_actions_and_no_admin(self, defaults):
        document = policy(defaults)
        assert document["Version"] == "2012-10-17"
        assert {s["Effect"] for s in document["Statement"]} == {"Allow"}
        assert {a for s in document["Statement"] for a in s["Action"]} == CONSUMER_ACTIONS
        assert "Condition" not in json.dumps(document) and "NotAction" not in json.dumps(document)

    def test_bucket_actions_name_buckets_and_object_actions_name_objects(self, defaults):
        for statement in policy(defaults)["Statement"]:
            objects = {r.endswith("/*") for r in statement["Resource"]}
            assert len(objects) == 1
            object_actions = {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                              "s3:ListMultipartUploadParts"}
            assert (set(statement["Action"]) <= object_actions) == objects.pop(), statement


class TestLakePolicyName:
    """The policy is how the Job finds the users of keys rotated out of the lake's Secret (the others holding it):
    one name, the same when the keys move to another Secret and for every release name (MinIO is the
    release's own), and the name earlier revisions gave it with the generated Secret, so an upgrade keeps it."""

    def test_the_same_whatever_secret_holds_the_lakes_keys(self):
        names = {job_env(render(values=values))["LAKE_POLICY_NAME"] for values in (
            {}, VARIANTS["existing-secrets"],
            {"global": {"retailflow": {"lake": {"existingSecret": "lake-2025"}}, "storage": {"secretName": "lake-2025"}}},
            {"global": {"retailflow": {"lake": {"secretName": "lake-keys"}}, "storage": {"secretName": "lake-keys"}}})}
        assert names == {"retailflow-lake"}

    def test_the_same_for_another_release_name(self):
        (buckets,) = containers(render(values={}, release="analytics").get("Job", "analytics-retailflow-lake-buckets"),
                                init=False)
        assert {e["name"]: e.get("value") for e in buckets["env"]}["LAKE_POLICY_NAME"] == "retailflow-lake"


class TestNotes:
    def test_the_console_login_is_the_lake_user_and_root_is_named_for_administration(self, defaults):
        from test_wiring import notes

        text = notes()
        assert "get secret retailflow-lake -o jsonpath='{.data.secretAccessKey}'" in text
        assert "the lake's user, for the console" in text
        assert f"MinIO's root ({ROOT}, same keys) is for administering users and policies only" in text
        assert f"get secret {ROOT}" not in text


#: The lite profile upgraded to add Airbyte (the README's scale-out snippet, reduced to what decides the timing):
#: MinIO stays an ordinary release resource (datastores.hooksWithAirbyte=false).
LITE_WITH_AIRBYTE = merge_values(yaml.safe_load(LITE_VALUES.read_text()),
                                 {"airbyte": {"enabled": True}, "lake": {"buckets": ["retail-lake", "airbyte-storage"]},
                                  "pipeline": {"enabled": False}})


class TestJobTiming:
    """Early (before Airbyte's bootloader) only while MinIO is an early hook itself; after the upgrade when MinIO is
    a release resource the upgrade may restart with a new root. Only a hook MinIO may stay on the old layout."""

    @pytest.mark.parametrize(("values", "is_upgrade", "hook", "old_root_accepted"), [
        ({}, False, "pre-install,pre-upgrade", "yes"),
        ({}, True, "pre-install,pre-upgrade", "yes"),
        (yaml.safe_load(LITE_VALUES.read_text()), False, "post-install,post-upgrade", ""),
        (LITE_WITH_AIRBYTE, True, "post-install,post-upgrade", ""),
        (VARIANTS["external-s3"], False, "post-install,post-upgrade", None),
    ], ids=["airbyte-install", "airbyte-upgrade", "lite", "lite-adding-airbyte", "external-s3"])
    def test_hook_phase_and_old_layout_follow_whether_minio_is_a_hook(self, values, is_upgrade, hook, old_root_accepted):
        rendered = render(values=values, is_upgrade=is_upgrade)
        annotations = rendered.get("Job", "retailflow-lake-buckets")["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == hook
        assert job_env(rendered).get("LAKE_OLD_ROOT_ACCEPTED") == old_root_accepted


class TestValidation:
    def test_minio_without_the_job_that_makes_its_lake_user_is_refused(self):
        with pytest.raises(RenderError, match="jobs.lakeBuckets.enabled=false with minio.enabled=true: .*retailflow-lake"):
            render(values={"jobs": {"lakeBuckets": {"enabled": False}}})

    def test_an_external_store_may_go_without_the_job(self):
        rendered = render(values=merge_values(VARIANTS["external-s3"], {"jobs": {"lakeBuckets": {"enabled": False}}}))
        assert "retailflow-lake-buckets" not in rendered.names("Job")

    @pytest.mark.parametrize("key", ["log", "state", "workloadOutput", "activityPayload", "auditLogging"])
    def test_every_airbyte_storage_bucket_must_be_one_the_job_creates(self, key):
        with pytest.raises(RenderError, match=f'lake.buckets must list "elsewhere" \\(global.storage.bucket.{key}\\)'):
            render(values={"global": {"storage": {"bucket": {key: "elsewhere"}}}})
        render(values={"global": {"storage": {"bucket": {key: "elsewhere"}}},
                       "lake": {"buckets": ["retail-lake", "airbyte-storage", "elsewhere"]}})


class TestReusedValuesWithoutRoot:
    """`helm upgrade --reuse-values` of a release from before minio.root: that release's values have no minio.root
    (a null in a values file deletes the default, as the reused values lack it)."""

    def test_the_default_root_secret_is_generated_and_read(self):
        rendered = render(values={"minio": {"root": None}}, is_upgrade=True)
        assert ROOT in rendered.names("Secret")
        readers = {(w, c) for w, c, name in lake_key_refs(rendered) if name == ROOT}
        assert readers == {("StatefulSet/retailflow-minio", "minio"), ("Job/retailflow-lake-buckets", "buckets")}
        assert f"MinIO's root ({ROOT}, same keys)" in notes({"minio": {"root": None}})


def old_root_note(values: dict, sts: dict | None, tmp_path) -> str:
    """NOTES.txt's old-root warning for the StatefulSet ``lookup`` would find (``helm template`` and
    ``--dry-run=client`` answer every lookup with nothing, and no API server here serves StatefulSets): the
    helper NOTES.txt calls, rendered by a probe template in a copy of the chart, given ``sts`` in place of lookup,
    as `helm upgrade` renders it. The probe's value is not in the chart's schema, hence no schema validation."""
    chart = tmp_path / "retailflow"
    shutil.copytree(_sandbox() / "retailflow", chart)
    (chart / "templates" / "probe-old-root-note.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: probe-old-root-note}\ndata:\n  note: "
        '{{ include "retailflow.minio.oldRootNote" (dict "ctx" . "sts" (.Values.probeStatefulSet | default dict)) | quote }}\n')
    (tmp_path / "values.json").write_text(json.dumps({**values, "probeStatefulSet": sts}))
    proc = subprocess.run([HELM, "template", RELEASE, str(chart), "--namespace", NAMESPACE, "-f",
                           str(tmp_path / "values.json"), "--show-only", "templates/probe-old-root-note.yaml",
                           "--is-upgrade", "--skip-schema-validation"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)["data"]["note"]


def minio_statefulset(root_secret: str) -> dict:
    ref = {"name": root_secret}
    return {"spec": {"template": {"spec": {"containers": [{"name": "minio", "env": [
        {"name": "MINIO_ROOT_USER", "valueFrom": {"secretKeyRef": {**ref, "key": "accessKeyId"}}},
        {"name": "MINIO_ROOT_PASSWORD", "valueFrom": {"secretKeyRef": {**ref, "key": "secretAccessKey"}}}]}]}}}}


class TestOldRootNote:
    def test_a_hook_minio_still_on_the_lakes_keys_is_reported(self, tmp_path):
        note = old_root_note({}, minio_statefulset("retailflow-lake"), tmp_path)
        assert "MinIO still runs with the lake's keys as its root user" in note
        assert "Helm does not upgrade MinIO's StatefulSet while it is a hook" in note

    @pytest.mark.parametrize(("values", "sts"), [
        ({}, minio_statefulset(ROOT)),
        ({}, None),
        (LITE_WITH_AIRBYTE, minio_statefulset("retailflow-lake")),
        (yaml.safe_load(LITE_VALUES.read_text()), minio_statefulset("retailflow-lake")),
    ], ids=["hook-on-its-root", "first-install", "release-resource-with-airbyte", "release-resource-lite"])
    def test_nothing_is_said_otherwise(self, values, sts, tmp_path):
        """A MinIO that is a release resource: lookup shows it before this upgrade, which points it at its root."""
        assert old_root_note(values, sts, tmp_path) == ""

    def test_notes_calls_the_helper_with_minios_statefulset(self):
        from support.helm_render import UMBRELLA

        text = (UMBRELLA / "templates" / "NOTES.txt").read_text()
        assert ('include "retailflow.minio.oldRootNote" (dict "ctx" . "sts" (lookup "apps/v1" "StatefulSet" $ns '
                '((split ":" (urlParse $g.lake.endpoint).host)._0)))') in text
