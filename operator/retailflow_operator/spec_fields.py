"""The fields of a RetailPipeline spec this operator understands, and the ones it received but does not.

An API server prunes fields its CRD does not declare, so a typo (``deletionPolicyy``) normally never
arrives. It does arrive when the installed CRD is newer than this operator or preserves unknown fields;
the operator then reports it in the ``KnownFields`` condition instead of silently ignoring it. The
known fields are those of the CRD this operator was built with (``crd``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from .crd import SPEC_SCHEMA, field_tree

#: field -> subtree (a dict), a one-element list holding the subtree of a list's items, or None (a leaf): the
#: spec schema of the CRD shipped in this package.
SPEC_FIELDS: dict[str, Any] = field_tree(SPEC_SCHEMA)


def unknown_fields(value: Any, tree: Any = SPEC_FIELDS, path: str = "spec") -> list[str]:
    """Paths of the fields in ``value`` that ``tree`` does not declare."""
    out: list[str] = []
    if isinstance(tree, dict) and isinstance(value, Mapping):
        for key, item in value.items():
            if key not in tree:
                out.append(f"{path}.{key}")
            else:
                out += unknown_fields(item, tree[key], f"{path}.{key}")
    elif isinstance(tree, list) and isinstance(value, list):
        for i, item in enumerate(value):
            out += unknown_fields(item, tree[0], f"{path}[{i}]")
    return out


def known_fields_condition(unknown: Sequence[str]) -> tuple[str, str, str]:
    """The ``KnownFields`` condition for the paths ``unknown_fields`` found."""
    if not unknown:
        return ("True", "AllFieldsKnown", "every field of the spec is one this operator knows")
    return (
        "False",
        "UnknownFields",
        f"ignored, not fields this operator knows (a typo, or a CRD newer than the operator?): {', '.join(unknown)}",
    )
