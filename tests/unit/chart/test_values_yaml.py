"""The charts' values files have no duplicate key at any level. Helm keeps the last of two (silently
dropping the first one's settings: `airflow.webserver` twice lost `allowPodLogReading: false`), and
strict YAML tools refuse the file."""

from __future__ import annotations

import pytest
import yaml

from support.helm_render import OPERATOR, UMBRELLA

VALUES_FILES = sorted([*UMBRELLA.glob("values*.yaml"), *OPERATOR.glob("values*.yaml")])


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that raises on a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_strict(text: str):
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)


def test_the_loader_refuses_a_duplicate_at_any_level():
    assert load_strict("a:\n  b: 1\n  c: 2\n") == {"a": {"b": 1, "c": 2}}
    for text in ("a: 1\na: 2\n", "a:\n  b: 1\n  b: 2\n", "a:\n  - {b: 1, b: 2}\n"):
        with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'b'|duplicate key 'a'"):
            load_strict(text)


def test_both_charts_values_files_are_checked():
    names = {f"{path.parent.name}/{path.name}" for path in VALUES_FILES}
    assert {"retailflow/values.yaml", "retailflow-operator/values.yaml"} <= names


@pytest.mark.parametrize("path", VALUES_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_duplicate_keys(path):
    text = path.read_text()
    assert load_strict(text) == yaml.safe_load(text)
