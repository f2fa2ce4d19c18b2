"""Generate the VideoJob CustomResourceDefinition from the pydantic models.

``python -m vid_operator.api.crd > crds/videojobs.vidop.io.yaml`` (``make
crds``) writes it; a unit test regenerates it and fails on any difference.
pydantic's JSON Schema is turned into a Kubernetes *structural* schema: every
``$ref`` inlined, ``anyOf [X, null]`` turned into ``X`` + ``nullable``, no
titles, no ``additionalProperties: false`` (structural schemas prune unknown
fields instead). Validation that a schema keyword cannot say is added as CEL
rules with messages a user understands. Pure: no Kubernetes client here.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import yaml
from pydantic import BaseModel

from vid_operator.api import models

_DROPPED_KEYWORDS = {"title", "$defs"}

_STAGE_LIST = ", ".join(models.STAGE_NAMES)
_STAGE_CEL_LIST = "[" + ", ".join(f"'{name}'" for name in models.STAGE_NAMES) + "]"

# CEL rules by the path of the schema node they belong to (camelCase, dotted).
_FIELD_RULES: dict[str, list[dict[str, str]]] = {
    "spec.prompt": [
        {
            "rule": r"self.matches('\\S')",
            "message": "prompt must contain some text, not only spaces",
        }
    ],
    "spec.resolution": [
        {
            # Guarded by the shape check so a malformed value gets only that message.
            "rule": "!self.matches('^[0-9]{1,4}x[0-9]{1,4}$')"
            " || (int(self.split('x')[0]) % 2 == 0 && int(self.split('x')[1]) % 2 == 0)",
            "message": "resolution must be WIDTHxHEIGHT with even numbers (H.264 needs them),"
            " e.g. 1280x720",
        }
    ],
    "spec.stages": [
        {
            "rule": f"self.all(name, name in {_STAGE_CEL_LIST})",
            "message": f"stages may only name the pipeline's stages: {_STAGE_LIST}",
        }
    ],
    "spec.stages.*": [
        {
            # The schema bounds each list and string; this bounds them together,
            # so a VideoJob (and what the operator holds of it) stays small.
            "rule": "(has(self.command) ? self.command.map(s, size(s)).sum() : 0)"
            " + (has(self.args) ? self.args.map(s, size(s)).sum() : 0)"
            " + (has(self.env) ? self.env.map(e, has(e.value) ? size(e.value) : 0).sum() : 0)"
            " + (has(self.podAnnotations)"
            " ? self.podAnnotations.map(k, size(self.podAnnotations[k])).sum() : 0)"
            f" <= {models.MAX_STAGE_OVERRIDE_CHARS}",
            "message": "a stage's command, args, env values and podAnnotations may hold at most"
            f" {models.MAX_STAGE_OVERRIDE_CHARS} characters together",
        }
    ],
    "spec.stages.*.dependsOn": [
        {
            "rule": f"self.all(name, name in {_STAGE_CEL_LIST})",
            "message": f"dependsOn may only name the pipeline's stages: {_STAGE_LIST}",
        }
    ],
}

# Friendlier words for what a bare pattern would report as a regular expression.
_PATTERN_MESSAGES = {
    "spec.resolution": "resolution must look like WIDTHxHEIGHT, e.g. 1280x720",
}


def _immutable_spec_rule() -> dict[str, str]:
    # Plain field access, not CEL optionals: the cost estimator loses the size
    # bounds through `.?` and rejects the rule. Fields with a default are always
    # present; the others compare presence first.
    comparisons = []
    for name, info in models.VideoJobSpec.model_fields.items():
        if name in models.MUTABLE_SPEC_FIELDS:
            continue
        field = info.alias or name
        same = f"self.spec.{field} == oldSelf.spec.{field}"
        always_present = info.is_required() or (
            info.default_factory is None and info.default is not None
        )
        if always_present:
            comparisons.append(same)
        else:
            comparisons.append(
                f"has(self.spec.{field}) == has(oldSelf.spec.{field})"
                f" && (!has(self.spec.{field}) || {same})"
            )
    mutable = " and ".join(
        models.VideoJobSpec.model_fields[name].alias or name
        for name in sorted(models.MUTABLE_SPEC_FIELDS)
    )
    return {
        "rule": "!has(oldSelf.status) || !has(oldSelf.status.startTime) || ("
        + " && ".join(comparisons)
        + ")",
        "message": f"the spec of a started VideoJob cannot change (only {mutable} can);"
        " delete it and create a new one instead",
    }


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """Resolve ``$ref``s, merging the referring node's own keywords
    (its description wins over the referenced model's docstring)."""
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[1]])
        target.update({k: v for k, v in node.items() if k != "$ref"})
        return _inline(target, defs)
    return {k: _inline(v, defs) for k, v in node.items() if k not in _DROPPED_KEYWORDS}


def _structural(node: Any) -> Any:
    """Make a JSON Schema node structural: nullable instead of null unions,
    no additionalProperties beside properties, no null defaults."""
    if isinstance(node, list):
        return [_structural(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    variants = node.get("anyOf")
    if variants and not node.get("x-kubernetes-int-or-string"):
        non_null = [v for v in variants if v.get("type") != "null"]
        if len(non_null) == 1 and len(non_null) < len(variants):
            del node["anyOf"]
            merged = {**non_null[0], **node, "nullable": True}
            node = merged
    if node.get("additionalProperties") in (False, True) and (
        "properties" in node or node.get("x-kubernetes-preserve-unknown-fields")
    ):
        del node["additionalProperties"]
    if "default" in node and node["default"] is None:
        del node["default"]
    return {k: _structural(v) for k, v in node.items()}


def _attach_rules(node: dict[str, Any], path: str) -> None:
    rules = list(_FIELD_RULES.get(path, []))
    if path in _PATTERN_MESSAGES and "pattern" in node:
        # A CEL rule says the same as the pattern, but in words.
        pattern = node.pop("pattern").replace("\\", "\\\\")
        rules.insert(0, {"rule": f"self.matches('{pattern}')", "message": _PATTERN_MESSAGES[path]})
    if rules:
        node["x-kubernetes-validations"] = rules
    for name, child in node.get("properties", {}).items():
        _attach_rules(child, f"{path}.{name}" if path else name)
    if isinstance(node.get("additionalProperties"), dict):
        _attach_rules(node["additionalProperties"], f"{path}.*")
    if isinstance(node.get("items"), dict):
        _attach_rules(node["items"], f"{path}[]")


def _schema_of(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True)
    defs = raw.pop("$defs", {})
    schema: dict[str, Any] = _structural(_inline(raw, defs))
    return schema


def openapi_schema() -> dict[str, Any]:
    """The whole object's schema: spec and status from the models, CEL rules attached."""
    spec = _schema_of(models.VideoJobSpec)
    status = _schema_of(models.VideoJobStatus)
    schema: dict[str, Any] = {
        "type": "object",
        "description": "A video to generate: the operator runs its pipeline as one Job per stage.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        "x-kubernetes-validations": [_immutable_spec_rule()],
    }
    _attach_rules(spec, "spec")
    return schema


def custom_resource_definition() -> dict[str, Any]:
    """The CRD manifest, ready to apply."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{models.PLURAL}.{models.GROUP}",
            "labels": {"app.kubernetes.io/name": "vid-operator"},
        },
        "spec": {
            "group": models.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": models.KIND,
                "listKind": f"{models.KIND}List",
                "plural": models.PLURAL,
                "singular": models.SINGULAR,
                "shortNames": models.SHORT_NAMES,
                "categories": ["all"],
            },
            "versions": [
                {
                    "name": models.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Stage", "type": "string", "jsonPath": ".status.stage"},
                        {"name": "Progress", "type": "string", "jsonPath": ".status.progress"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                        {
                            "name": "Priority",
                            "type": "string",
                            "jsonPath": ".spec.priority",
                            "priority": 1,
                        },
                        {
                            "name": "Prompt",
                            "type": "string",
                            "jsonPath": ".spec.prompt",
                            "priority": 1,
                        },
                    ],
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


_HEADER = "# Generated by `make crds` from vid_operator.api.models; do not edit.\n"


def render() -> str:
    """The CRD as the YAML committed under ``crds/``."""
    return _HEADER + yaml.safe_dump(custom_resource_definition(), sort_keys=False, width=100)


def render_chart_template() -> str:
    """The same CRD as a Helm template of the chart. Templated (not in the
    chart's crds/ folder, which Helm never upgrades) so `helm upgrade` updates
    it; kept on uninstall by default, since deleting it deletes every VideoJob."""
    crd = custom_resource_definition()
    body = yaml.safe_dump(crd, sort_keys=False, width=100)
    marker = "  labels:\n"
    keep = (
        "  {{- if .Values.crds.keep }}\n"
        "  annotations:\n"
        "    helm.sh/resource-policy: keep\n"
        "  {{- end }}\n"
    )
    body = body.replace(marker, keep + marker, 1)
    return _HEADER + "{{- if .Values.crds.install }}\n" + body + "{{- end }}\n"


if __name__ == "__main__":
    sys.stdout.write(render_chart_template() if sys.argv[1:] == ["--chart"] else render())
