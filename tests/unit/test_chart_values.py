"""The chart's values.schema.json and README values table are what
hack/chart_values.py generates from the configuration models and values.yaml."""

from __future__ import annotations

from typing import Any

import pytest
from hack import chart_values
from pydantic import BaseModel

from vid_operator.api.models import STAGE_NAMES


def test_committed_values_schema_is_the_generated_one() -> None:
    assert chart_values.SCHEMA.read_text() == chart_values.render_schema(), (
        "charts/vid-operator/values.schema.json is stale: run `make chart`"
    )


def test_committed_readme_table_is_the_generated_one() -> None:
    readme = chart_values.README.read_text()

    assert readme == chart_values.render_readme(readme), (
        "the values table of charts/vid-operator/README.md is stale: run `make chart`"
    )


def _fields(key: str, model: type[BaseModel]) -> set[str]:
    """The values paths of a configuration section's fields, those of the
    sections within it (queueing.kueue) in their place."""
    paths: set[str] = set()
    for field in model.model_fields.values():
        path = f"{key}.{field.alias}"
        inner = field.annotation
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            paths |= _fields(path, inner)
        else:
            paths.add(path)
    return paths


def test_values_yaml_documents_every_field_of_the_configuration_sections() -> None:
    documented = {
        path for path, _ in chart_values._documented_keys(chart_values.VALUES.read_text())
    }

    for key, model in chart_values.PASS_THROUGH.items():
        fields = _fields(key, model)
        assert fields <= documented, f"values.yaml lacks {sorted(fields - documented)}"


def test_a_value_without_a_comment_is_refused() -> None:
    text = (
        "image:\n  # -- Documented.\n  repository: x\n  tag: ''\n"
        "nested:\n  # -- All of it.\n  map:\n    a: 1\n"
    )

    with pytest.raises(ValueError, match=r"no `# --` comment for image\.tag$"):
        chart_values._documented_keys(text)


def test_pass_through_sections_take_null_only_where_the_operator_does() -> None:
    schema = chart_values.schema()

    def section(key: str) -> dict[str, Any]:
        ref: str = schema["properties"][key]["$ref"]
        return schema["$defs"][ref.rsplit("/", 1)[1]]  # type: ignore[no-any-return]

    assert section("s3")["required"] == ["region", "bucket", "prefix", "allowedBuckets"]
    assert "activeDeadlineSeconds" not in section("stageDefaults")["required"]
    assert "imagePullTimeoutSeconds" in section("stageDefaults")["required"]
    # Within a section too: queueing.kueue is rendered key by key.
    assert section("queueing")["required"] == ["kueue"]
    assert schema["$defs"]["Kueue"]["required"] == [
        "enabled",
        "namespaceQueueNames",
        "stages",
        "workloadPriorityClasses",
    ]


def test_the_stages_section_has_the_default_pipelines_stages() -> None:
    assert list(chart_values.DefaultStages.model_fields) == list(STAGE_NAMES)
