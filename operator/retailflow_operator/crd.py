"""The RetailPipeline CRD this operator was built with, read from the package.

``retailpipelines.yaml`` in this package is a symlink to charts/retailflow-operator/crds/retailpipelines.yaml,
the one copy (a built wheel and the image carry the real file). Its ``openAPIV3Schema`` gives the spec's
defaults (applied by ``spec_model.parse``) and the fields the operator knows (``spec_fields``).
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Iterator

import yaml

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

CRD: dict[str, Any] = yaml.load(resources.files(__package__).joinpath("retailpipelines.yaml").read_text(), _Loader)
(_VERSION,) = CRD["spec"]["versions"]
#: The API group, version and plural the operator watches and patches.
GROUP: str = CRD["spec"]["group"]
VERSION: str = _VERSION["name"]
PLURAL: str = CRD["spec"]["names"]["plural"]
#: The schema of ``spec``, as the API server validates it.
SPEC_SCHEMA: dict[str, Any] = _VERSION["schema"]["openAPIV3Schema"]["properties"]["spec"]


def _defaults(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, Any]]:
    if "default" in node:
        yield path, node["default"]
    for key, child in (node.get("properties") or {}).items():
        yield from _defaults(child, f"{path}.{key}" if path else key)
    if "items" in node:
        yield from _defaults(node["items"], path)  # a list item's fields: "mysql.streams.syncMode"


#: dotted path (list items add no index) -> the schema's default, e.g. ``"mysql.port": 3306``.
DEFAULTS: dict[str, Any] = dict(_defaults(SPEC_SCHEMA))


def field_tree(node: dict[str, Any]) -> Any:
    """The fields a schema node declares: a dict of subtrees, a one-element list for a list's items, or None."""
    if node.get("type") == "array":
        return [field_tree(node["items"])]
    if "properties" in node:
        return {key: field_tree(child) for key, child in node["properties"].items()}
    return None
