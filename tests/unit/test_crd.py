"""The committed CRD is what the models generate, and it is a structural schema."""

from pathlib import Path
from typing import Any

import yaml

from vid_operator.api import crd, models

COMMITTED = Path(__file__).resolve().parents[2] / "crds" / "videojobs.vidop.io.yaml"


def test_committed_crd_matches_the_models() -> None:
    assert COMMITTED.read_text() == crd.render(), "crds/ is stale: run `make crds`"


def _walk(node: Any, path: str = "") -> Any:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}[{index}]")


def test_schema_has_no_refs_titles_or_null_types() -> None:
    schema = crd.openapi_schema()

    for path, node in _walk(schema):
        assert "$ref" not in node, path
        assert "title" not in node, path
        assert node.get("type") != "null", path
        if "properties" in node:
            assert "additionalProperties" not in node, path


def test_optional_fields_are_nullable_and_names_are_camel_case() -> None:
    spec = crd.openapi_schema()["properties"]["spec"]

    assert spec["required"] == ["prompt"]
    assert spec["properties"]["ttlSecondsAfterFinished"]["nullable"] is True
    stage = spec["properties"]["stages"]["additionalProperties"]["properties"]
    assert {"nodeSelector", "backoffLimit", "activeDeadlineSeconds", "dependsOn"} <= set(stage)
    assert stage["gpus"]["maximum"] == 8


def test_descriptions_come_from_the_field_docstrings() -> None:
    spec = crd.openapi_schema()["properties"]["spec"]["properties"]

    assert spec["prompt"]["description"] == "What the video is about. Required, not blank."


def test_immutability_rule_covers_every_spec_field_but_the_mutable_ones() -> None:
    (rule,) = crd.openapi_schema()["x-kubernetes-validations"]

    for name, info in models.VideoJobSpec.model_fields.items():
        field = info.alias or name
        assert (f"self.spec.{field} ==" in rule["rule"]) == (
            name not in models.MUTABLE_SPEC_FIELDS
        ), field


def test_committed_file_is_one_crd_document() -> None:
    (document,) = list(yaml.safe_load_all(COMMITTED.read_text()))
    assert document["kind"] == "CustomResourceDefinition"
    assert document["metadata"]["name"] == "videojobs.vidop.io"
