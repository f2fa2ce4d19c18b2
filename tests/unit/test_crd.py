"""The committed CRD is what the models generate, and it is a structural schema."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from vid_operator.api import crd, models

CRDS = Path(__file__).resolve().parents[2] / "crds"
COMMITTED = CRDS / "videojobs.vidop.io.yaml"


@pytest.mark.parametrize("plural", ["videojobs", "videopipelines"])
def test_committed_crds_match_the_models(plural: str) -> None:
    committed = CRDS / f"{plural}.vidop.io.yaml"
    assert committed.read_text() == crd.render(plural), "crds/ is stale: run `make crds`"


def _walk(node: Any, path: str = "") -> Any:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}[{index}]")


@pytest.mark.parametrize("schema", [crd.openapi_schema(), crd.pipeline_openapi_schema()])
def test_schema_has_no_refs_titles_or_null_types(schema: dict[str, Any]) -> None:
    for path, node in _walk(schema):
        assert "$ref" not in node, path
        assert "title" not in node, path
        assert "propertyNames" not in node, path  # dropped by the API server: a diff on every apply
        assert node.get("type") != "null", path
        if "properties" in node:
            assert "additionalProperties" not in node, path


def test_optional_fields_are_nullable_and_names_are_camel_case() -> None:
    spec = crd.openapi_schema()["properties"]["spec"]

    assert spec["required"] == ["prompt"]
    assert spec["properties"]["ttlSecondsAfterFinished"]["nullable"] is True
    stage = spec["properties"]["stages"]["additionalProperties"]["properties"]
    assert {"nodeSelector", "backoffLimit", "activeDeadlineSeconds", "serviceAccountName"} <= set(
        stage
    )
    assert "dependsOn" not in stage  # the graph is the pipeline author's
    assert stage["gpus"]["maximum"] == 8


def test_every_pipeline_stage_field_is_in_the_schema_with_its_bounds() -> None:
    spec = crd.pipeline_openapi_schema()["properties"]["spec"]
    stages = spec["properties"]["stages"]

    assert spec["required"] == ["stages"]
    assert (stages["minItems"], stages["maxItems"]) == (1, 16)
    stage = stages["items"]["properties"]
    assert set(stage) >= {
        "name",
        "dependsOn",
        "image",
        "command",
        "args",
        "env",
        "envFrom",
        "resources",
        "gpus",
        "nodeSelector",
        "tolerations",
        "affinity",
        "backoffLimit",
        "activeDeadlineSeconds",
        "terminationGracePeriodSeconds",
        "volumes",
        "volumeMounts",
        "serviceAccountName",
        "imagePullSecrets",
        "podLabels",
        "podAnnotations",
    }
    assert stage["name"]["maxLength"] == 32
    assert set(stage["volumes"]["items"]["properties"]) == {
        "name",
        "persistentVolumeClaim",
        "configMap",
        "secret",
        "emptyDir",
        "ephemeral",
    }


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


@pytest.mark.parametrize("plural", ["videojobs", "videopipelines"])
def test_committed_file_is_one_crd_document(plural: str) -> None:
    (document,) = list(yaml.safe_load_all((CRDS / f"{plural}.vidop.io.yaml").read_text()))
    assert document["kind"] == "CustomResourceDefinition"
    assert document["metadata"]["name"] == f"{plural}.vidop.io"
