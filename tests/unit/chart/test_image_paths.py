"""image-paths.yaml, the table the workloads runner (tests/support/workloads.py) maps image paths with,
against the Dockerfiles it describes: every COPY is in it, verbatim, and nothing else is."""

import re
import shlex
from pathlib import PurePosixPath

import pytest

from support.helm_render import REPO, containers, render
from support.workloads import image_entry, image_table


def copies(dockerfile: str) -> list[list[str]]:
    """Each COPY of the Dockerfile as [source..., destination]; `--from` (another stage or image) left out."""
    text = (REPO / dockerfile).read_text().replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        match = re.match(r"(?i)^\s*COPY\s+(.*)$", line)
        if not match:
            continue
        words = shlex.split(match.group(1))
        if any(w.startswith("--from") for w in words):
            continue
        found.append([w for w in words if not w.startswith("--")])
    return found


BUILT = {name: entry for name, entry in image_table().items() if "dockerfile" in entry}


class TestImagePaths:
    @pytest.mark.parametrize("image", sorted(BUILT))
    def test_every_copy_of_the_dockerfile_is_in_the_table_and_only_those(self, image):
        entry = BUILT[image]
        assert copies(entry["dockerfile"]) == entry["copies"]

    @pytest.mark.parametrize("image", sorted(BUILT))
    def test_every_copied_source_exists_in_the_build_context(self, image):
        entry = BUILT[image]
        for *sources, _ in entry["copies"]:
            for source in sources:
                assert (REPO / entry["context"] / source).exists(), source

    @pytest.mark.parametrize("image", sorted(BUILT))
    def test_every_mapped_image_path_is_copied_or_built(self, image):
        entry = BUILT[image]
        workdir = entry.get("workdir", "/")
        destinations = {str(PurePosixPath(workdir) / c[-1]).rstrip("/") for c in entry["copies"]}
        for image_path in entry["paths"]:
            assert image_path in destinations | set(entry.get("built", [])), \
                f"{image_path}: neither a COPY destination nor listed under built"

    def test_every_image_our_workloads_run_has_an_entry(self):
        release = render()
        for doc in release.own_workloads():  # the real upstream charts' too, when present: not ours
            if doc["kind"] == "StatefulSet":  # the data stores: upstream images, their own entry points
                continue
            for container in containers(doc):
                image_entry(container["image"])  # raises, naming the image, when it is missing
