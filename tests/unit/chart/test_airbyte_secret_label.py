"""Airbyte's bootloader writes its auth Secret (airbyte-auth-secrets) without the label the operator
requires before it reads a Secret; a Job of this chart adds it: the pipeline Job (no workspace id
given) or, with Airbyte in its own namespace, the copy Job. A RetailPipeline of the release that
names that Secret with neither Job would fail with SecretNotLabelled, so the chart refuses to render
it (pipeline.workspaceId with this release's Airbyte in the release namespace)."""

from __future__ import annotations

import pytest
import yaml

from support.helm_render import UUID, VARIANTS, RenderError, chart_values, containers, merge_values, render

AUTH_SECRET = "airbyte-auth-secrets"

#: every variant, and a given workspace with this release's Airbyte (in the release namespace, then in its own)
LAYERS = {
    **VARIANTS,
    "workspace-with-airbyte": {"pipeline": {"workspaceId": UUID}},
    "workspace-with-airbyte-namespace": merge_values(VARIANTS["airbyte-namespace"], {"pipeline": {"workspaceId": UUID}}),
    "workspace-with-own-airbyte-secret": {"pipeline": {"workspaceId": UUID, "spec": {"airbyte": {
        "credentialsSecretRef": {"name": "my-airbyte-app"}}}}},
}

#: layers with this release's Airbyte whose RetailPipeline names another Secret than AUTH_SECRET (every
#: other such layer must name AUTH_SECRET)
OWN_AIRBYTE_SECRET = {"workspace-with-own-airbyte-secret": "my-airbyte-app"}


def pipeline_specs(rendered) -> list[dict]:
    """The RetailPipeline's spec: the release resource, or what the pipeline Job applies."""
    specs = [d["spec"] for d in rendered.of_kind("RetailPipeline")]
    for config in rendered.own_of_kind("ConfigMap"):
        if "retailpipeline.yaml" in config.get("data", {}):
            specs.append(yaml.safe_load(config["data"]["retailpipeline.yaml"])["spec"])
    return specs


def labelled_by_a_job(rendered, secret: str) -> bool:
    """A Job of the release adds the operator's label to ``secret`` (CREDENTIALS_LABEL, with the Secret
    named in CREDENTIALS_SECRET_NAME, the pipeline Job's, or SECRET_NAME, the copy Job's)."""
    for job in rendered.own_of_kind("Job"):
        for container in containers(job):
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            if "CREDENTIALS_LABEL" in env and secret in (env.get("CREDENTIALS_SECRET_NAME"), env.get("SECRET_NAME")):
                return True
    return False


class TestAirbytesSecretIsLabelled:
    @pytest.mark.parametrize("layer", sorted(LAYERS))
    def test_a_rendered_pipeline_naming_airbytes_secret_has_a_job_that_labels_it(self, layer):
        try:
            rendered = render(values=LAYERS[layer])
        except RenderError as error:
            assert layer == "workspace-with-airbyte", error  # the only combination refused (below)
            return
        if not chart_values(LAYERS[layer])["airbyte"]["enabled"]:
            return  # not this release's Airbyte: its Secret is the user's (labelled by them, README)
        named = {s["airbyte"]["credentialsSecretRef"]["name"] for s in pipeline_specs(rendered) if s.get("airbyte")}
        if layer in OWN_AIRBYTE_SECRET:
            assert named == {OWN_AIRBYTE_SECRET[layer]}, named
        else:  # with this release's Airbyte, the pipeline reads Airbyte's own Secret: the loop below must run
            assert AUTH_SECRET in named, (layer, named)
        for secret in named & {AUTH_SECRET}:
            assert labelled_by_a_job(rendered, secret), f"{secret}: named by the RetailPipeline, labelled by no Job"

    def test_a_given_workspace_with_this_releases_airbyte_is_refused_saying_what_to_do(self):
        with pytest.raises(RenderError) as error:
            render(values=LAYERS["workspace-with-airbyte"])
        message = str(error.value)
        assert f"no Job runs to label {AUTH_SECRET}" in message and "SecretNotLabelled" in message
        assert "Leave pipeline.workspaceId empty" in message
        assert "pipeline.spec.airbyte.credentialsSecretRef.name" in message

    def test_the_copy_job_labels_it_when_airbyte_has_its_own_namespace(self):
        rendered = render(values=LAYERS["workspace-with-airbyte-namespace"])
        (pipeline,) = rendered.of_kind("RetailPipeline")
        assert pipeline["spec"]["airbyte"]["workspaceId"] == UUID
        assert labelled_by_a_job(rendered, AUTH_SECRET)
