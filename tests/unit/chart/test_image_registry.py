"""global.retailflow.imageRegistry is the registry of the images built from this repository (those of
image-paths.yaml with a Dockerfile: what `make images` builds) wherever the release runs them, and of
no third-party image. The Airflow and OpenMetadata charts take our images as literal values (no tpl):
the chart refuses to render until those copies are what images.* and the registry make."""

from __future__ import annotations

import copy

import pytest

from support.helm_render import REAL_SUBCHARTS, RenderError, chart_values, merge_values, render
from support.workloads import image_table

REGISTRY = "reg.example.com"
#: the images built from this repository (hack/images.sh: the root Dockerfile and operator/Dockerfile)
BUILT = sorted(name for name, entry in image_table().items() if "dockerfile" in entry)


def repository(image: str) -> str:
    """``image`` without its tag."""
    return image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image


def jwt_keys_init(values: dict, image: str) -> list[dict]:
    """openmetadata.preMigrateInitContainers as values.yaml has it, with the jwt-keys container's image."""
    containers = copy.deepcopy(values["openmetadata"]["preMigrateInitContainers"])
    (init,) = [c for c in containers if c["name"] == "jwt-keys"]
    init["image"] = image
    return containers


def with_registry(values: dict, registry: str = REGISTRY) -> dict:
    """The registry, with the two literal copies the subcharts take written as the README says."""
    images = values["images"]
    return {
        "global": {"retailflow": {"imageRegistry": registry}},
        "airflow": {"defaultAirflowRepository": f"{registry}/{images['airflow']['repository']}"},
        "openmetadata": {"preMigrateInitContainers": jwt_keys_init(
            values, f"{registry}/{images['pipelineJob']['repository']}:{images['pipelineJob']['tag']}")},
    }


def container_images(node) -> list[str]:
    """Every container's and init container's image in a rendered document, wherever its pod spec is."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers", "ephemeralContainers") and isinstance(value, list):
                found += [c["image"] for c in value if isinstance(c, dict) and "image" in c]
            else:
                found += container_images(value)
    elif isinstance(node, list):
        for item in node:
            found += container_images(item)
    return found


def release_images(layer: dict) -> list[str]:
    """Every image the release runs with ``layer``: the rendered documents' (the real upstream charts'
    too, when present), and what the stand-in Airflow and OpenMetadata charts would run from the values
    they are given."""
    rendered = render(values=layer)
    images = [image for doc in rendered.docs for image in container_images(doc)]
    values = chart_values(layer)
    if "airflow" not in REAL_SUBCHARTS and values["airflow"]["enabled"]:
        images.append(f"{values['airflow']['defaultAirflowRepository']}:{values['airflow']['defaultAirflowTag']}")
    if "openmetadata" not in REAL_SUBCHARTS and values["openmetadata"]["enabled"]:
        images += [c["image"] for c in values["openmetadata"]["preMigrateInitContainers"]]
    return images


class TestImageRegistry:
    def test_the_built_images_are_the_two_hack_images_builds(self):
        assert BUILT == ["retailflow/airflow", "retailflow/operator"]

    def test_every_image_built_here_is_prefixed_and_no_other(self, values):
        images = release_images(with_registry(values))
        ours = [i for i in images if repository(i).removeprefix(f"{REGISTRY}/") in BUILT]
        theirs = [i for i in images if i not in ours]
        assert not [i for i in ours if not i.startswith(f"{REGISTRY}/")], "images built here without the registry"
        assert not [i for i in theirs if i.startswith(f"{REGISTRY}/")], "third-party images given our registry"
        # not vacuous: both of ours run, prefixed, and the hook Jobs' third-party clients run as written
        assert {repository(i) for i in ours} == {f"{REGISTRY}/{name}" for name in BUILT}
        for client in ("minioClient", "mysqlClient"):
            image = values["images"][client]
            assert f"{image['repository']}:{image['tag']}" in theirs

    def test_the_operator_deployment_takes_the_registry(self, values):
        rendered = render(values=with_registry(values))
        (operator,) = [d for d in rendered.own_of_kind("Deployment") if d["metadata"]["name"] == "retailflow-operator"]
        image = values["operator"]["image"]
        assert container_images(operator) == [f"{REGISTRY}/{image['repository']}:{image['tag']}"]

    def test_without_a_registry_every_image_is_as_written(self):
        assert not [i for i in release_images({}) if i.startswith(f"{REGISTRY}/")]

    def test_airflows_literal_image_must_carry_the_registry(self, values):
        layer = merge_values(with_registry(values), {"airflow": {"defaultAirflowRepository": "retailflow/airflow"}})
        with pytest.raises(RenderError, match=f"airflow.defaultAirflowRepository={REGISTRY}/retailflow/airflow "):
            render(values=layer)

    def test_the_jwt_keys_init_container_must_carry_the_registry(self, values):
        layer = merge_values(with_registry(values), {"openmetadata": {"preMigrateInitContainers": jwt_keys_init(
            values, f"retailflow/operator:{values['images']['pipelineJob']['tag']}")}})
        with pytest.raises(RenderError, match=f"jwt-keys.*image: {REGISTRY}/retailflow/operator:"):
            render(values=layer)


class TestTheJwtKeysInitContainerFollowsThePipelineJobImage:
    """OpenMetadata's jwt-keys init container runs images.pipelineJob (standard-library Python)."""

    def test_a_changed_tag_alone_is_refused(self):
        with pytest.raises(RenderError, match="jwt-keys init container runs retailflow/operator:0.1.0.*"
                                              "image: retailflow/operator:0.2.0"):
            render(values={"images": {"pipelineJob": {"tag": "0.2.0"}}})

    def test_the_changed_tag_written_there_too_renders(self, values):
        layer = {"images": {"pipelineJob": {"tag": "0.2.0"}}, "operator": {"image": {"tag": "0.2.0"}},  # as make up sets
                 "openmetadata": {"preMigrateInitContainers": jwt_keys_init(values, "retailflow/operator:0.2.0")}}
        assert "retailflow/operator:0.2.0" in release_images(layer)
        assert not [i for i in release_images(layer) if repository(i) == "retailflow/operator" and not i.endswith(":0.2.0")]

    def test_without_openmetadata_the_tag_is_free(self):
        render(values={"images": {"pipelineJob": {"tag": "0.2.0"}},
                       "openmetadata": {"enabled": False}, "opensearch": {"enabled": False}})
