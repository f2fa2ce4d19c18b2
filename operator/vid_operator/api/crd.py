"""Generate the VideoJob and VideoPipeline CRDs from the pydantic models.

``python -m vid_operator.api.crd <plural> > crds/<plural>.vidop.io.yaml``
(``make crds``) writes one; a unit test regenerates each and fails on any
difference.
pydantic's JSON Schema is turned into a Kubernetes *structural* schema: every
``$ref`` inlined, ``anyOf [X, null]`` turned into ``X`` + ``nullable``, no
titles, no ``additionalProperties: false`` (structural schemas prune unknown
fields instead). Validation that a schema keyword cannot say is added as CEL
rules with messages a user understands. Pure: no Kubernetes client here.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml
from pydantic import BaseModel

from vid_operator import contract, naming
from vid_operator.api import models, pipelines

# propertyNames is not part of structural schemas: the API server drops it, and a
# CRD applied with it differs from the stored one on every apply (a conflict
# for Helm, a diff for Argo CD). The Job's own validation checks label keys.
_DROPPED_KEYWORDS = {"title", "$defs", "propertyNames"}

_STAGE_LIST = ", ".join(models.STAGE_NAMES)


def _cel_list(items: Iterable[str]) -> str:
    return "[" + ", ".join(f"'{item}'" for item in items) + "]"


def _total_chars_rule(limit: int) -> dict[str, str]:
    # The schema bounds each list and string; this bounds them together, so a
    # resource (and what the operator holds of it) stays small.
    return {
        "rule": "(has(self.command) ? self.command.map(s, size(s)).sum() : 0)"
        " + (has(self.args) ? self.args.map(s, size(s)).sum() : 0)"
        " + (has(self.env) ? self.env.map(e, has(e.value) ? size(e.value) : 0).sum() : 0)"
        " + (has(self.podAnnotations)"
        " ? self.podAnnotations.map(k, size(self.podAnnotations[k])).sum() : 0)"
        f" <= {limit}",
        "message": "a stage's command, args, env values and podAnnotations may hold at most"
        f" {limit} characters together",
    }


def _exactly_one(*fields: str) -> str:
    present = ", ".join(f"has(self.{field})" for field in fields)
    return f"[{present}].filter(x, x).size() == 1"


_OPERATOR_LABELS = (naming.MANAGED_BY_LABEL, naming.VIDEOJOB_LABEL, naming.STAGE_LABEL)
_CONTROLLER_LABELS = ("job-name", "controller-uid")

# CEL rules of the VideoJob by the path of the schema node they belong to
# (camelCase, dotted; `*` for a map's values, `[]` for a list's items).
_VIDEOJOB_RULES: dict[str, list[dict[str, str]]] = {
    "spec": [
        {
            "rule": f"has(self.pipeline) || !has(self.stages) || self.stages.all(name, name in"
            f" {_cel_list(models.STAGE_NAMES)})",
            "message": f"without spec.pipeline, stages may only name the default pipeline's"
            f" stages: {_STAGE_LIST}",
        }
    ],
    "spec.prompt": [
        {
            # RE2's \S is ASCII-only: a prompt of no-break or ideographic
            # spaces would pass it. Separators (Z) and controls (C) by class.
            "rule": r"self.matches('[^\\s\\p{Z}\\p{C}]')",
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
    "spec.output.prefix": [
        {
            "rule": "!self.split('/').exists(p, p == '.' || p == '..')",
            "message": "prefix may not have . or .. segments",
        }
    ],
    "spec.stages.*": [_total_chars_rule(models.MAX_STAGE_OVERRIDE_CHARS)],
    "spec.stages.*.env[].name": [
        {
            "rule": f"!(self.upperAscii() in {_cel_list(models.TENANT_RESERVED_ENV_NAMES)})"
            f" && !{_cel_list(models.TENANT_RESERVED_ENV_PREFIXES)}"
            ".exists(p, self.upperAscii().startsWith(p))",
            "message": "this variable is reserved for the operator and the platform: a VideoJob"
            f" may not set {', '.join(models.TENANT_RESERVED_ENV_NAMES)} or names starting with"
            f" {', '.join(models.TENANT_RESERVED_ENV_PREFIXES)}",
        }
    ],
}

_PIPELINE_STAGE_RULES: list[dict[str, str]] = [
    _total_chars_rule(pipelines.MAX_STAGE_CHARS),
    {
        "rule": "!has(self.volumeMounts) || self.volumeMounts.all(m,"
        " has(self.volumes) && self.volumes.exists(v, v.name == m.name))",
        "message": "every volumeMounts entry must name one of the stage's volumes",
    },
    {
        "rule": "!has(self.maxGpus) || !has(self.gpus) || self.maxGpus >= self.gpus",
        "message": "maxGpus must be at least gpus",
    },
    {
        "rule": "!has(self.fanOut) || (has(self.dependsOn) && self.fanOut.over in self.dependsOn)",
        "message": "fanOut.over must be one of the stage's dependsOn",
    },
    {
        "rule": "!has(self.fanOut) || !has(self.onOOM)",
        "message": "fanOut and onOOM cannot be used together (yet)",
    },
]

# The VideoPipeline's rules, as above.
_PIPELINE_RULES: dict[str, list[dict[str, str]]] = {
    "spec.stages": [
        {
            # `_` and `-` give the same Job name, so they count as the same.
            "rule": "self.all(a, self.filter(b, b.name.replace('_', '-')"
            " == a.name.replace('_', '-')).size() == 1)",
            "message": "stage names must be unique (a - and a _ count as the same character)",
        },
        {
            "rule": "self.all(s, !has(s.dependsOn) || s.dependsOn.all(d,"
            " d != s.name && self.exists(t, t.name == d)))",
            "message": "dependsOn may only name other stages of this pipeline",
        },
    ],
    "spec.stages[]": _PIPELINE_STAGE_RULES,
    "spec.stages[].env[]": [
        {
            "rule": "!(has(self.value) && has(self.valueFrom))",
            "message": "an env entry has either value or valueFrom, not both",
        }
    ],
    "spec.stages[].env[].name": [
        {
            "rule": f"!self.startsWith('{contract.CONTRACT_ENV_PREFIX}') && !(self in"
            f" {_cel_list(sorted(contract.CONTRACT_ENV))})",
            "message": "the stage contract sets this variable: names starting with"
            f" {contract.CONTRACT_ENV_PREFIX} and the S3 client's"
            f" {', '.join(sorted(n for n in contract.CONTRACT_ENV if n.startswith('AWS_')))}"
            " are reserved",
        }
    ],
    "spec.stages[].env[].valueFrom": [
        {
            "rule": _exactly_one("secretKeyRef", "configMapKeyRef", "fieldRef"),
            "message": "valueFrom takes exactly one of secretKeyRef, configMapKeyRef, fieldRef",
        }
    ],
    "spec.stages[].envFrom[]": [
        {
            "rule": _exactly_one("configMapRef", "secretRef"),
            "message": "an envFrom entry takes exactly one of configMapRef, secretRef",
        }
    ],
    "spec.stages[].volumes[]": [
        {
            "rule": _exactly_one(
                "persistentVolumeClaim", "configMap", "secret", "emptyDir", "ephemeral"
            ),
            "message": "a volume takes exactly one of persistentVolumeClaim, configMap, secret,"
            " emptyDir, ephemeral",
        },
        {
            "rule": f"self.name != '{contract.SCRATCH_VOLUME}'"
            f" && self.name != '{contract.PROGRESS_VOLUME}'",
            "message": f"the volume names {contract.SCRATCH_VOLUME} and"
            f" {contract.PROGRESS_VOLUME} are the stage contract's",
        },
    ],
    "spec.stages[].volumeMounts[].mountPath": [
        {
            "rule": f"self != '{contract.SCRATCH_DIR}'"
            f" && !self.startsWith('{contract.SCRATCH_DIR}/')"
            f" && self != '{contract.TERMINATION_MESSAGE_PATH}'"
            f" && !self.startsWith('{contract.PROGRESS_DIR.rsplit('/', 1)[0]}')",
            "message": f"{contract.SCRATCH_DIR}, {contract.TERMINATION_MESSAGE_PATH} and"
            f" {contract.PROGRESS_DIR.rsplit('/', 1)[0]} are the stage contract's",
        }
    ],
    "spec.stages[].podLabels": [
        {
            "rule": f"self.all(k, !(k in {_cel_list(_OPERATOR_LABELS + _CONTROLLER_LABELS)})"
            " && !k.startsWith('batch.kubernetes.io/'))",
            "message": "podLabels may not set the operator's or the Job controller's labels",
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
    no additionalProperties beside properties, no null defaults, exclusive
    bounds as flags."""
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
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        # JSON Schema 2020-12's numeric exclusive bound is OpenAPI v3.0's flag.
        if not isinstance(node.get(exclusive, False), bool):
            node[bound], node[exclusive] = node[exclusive], True
    return {k: _structural(v) for k, v in node.items()}


def _attach_rules(
    node: dict[str, Any], path: str, table: Mapping[str, list[dict[str, str]]]
) -> None:
    rules = list(table.get(path, []))
    if path in _PATTERN_MESSAGES and "pattern" in node:
        # A CEL rule says the same as the pattern, but in words.
        pattern = node.pop("pattern").replace("\\", "\\\\")
        rules.insert(0, {"rule": f"self.matches('{pattern}')", "message": _PATTERN_MESSAGES[path]})
    if rules:
        node["x-kubernetes-validations"] = node.get("x-kubernetes-validations", []) + rules
    for name, child in node.get("properties", {}).items():
        _attach_rules(child, f"{path}.{name}" if path else name, table)
    if isinstance(node.get("additionalProperties"), dict):
        _attach_rules(node["additionalProperties"], f"{path}.*", table)
    if isinstance(node.get("items"), dict):
        _attach_rules(node["items"], f"{path}[]", table)


def _schema_of(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True)
    defs = raw.pop("$defs", {})
    schema: dict[str, Any] = _structural(_inline(raw, defs))
    return schema


def _object_schema(
    description: str,
    spec_model: type[BaseModel],
    status_model: type[BaseModel],
    rules: Mapping[str, list[dict[str, str]]],
) -> dict[str, Any]:
    spec = _schema_of(spec_model)
    _attach_rules(spec, "spec", rules)
    return {
        "type": "object",
        "description": description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": _schema_of(status_model),
        },
    }


def openapi_schema() -> dict[str, Any]:
    """The VideoJob's schema: spec and status from the models, CEL rules attached."""
    schema = _object_schema(
        "A video to generate: the operator runs its pipeline as one Job per stage.",
        models.VideoJobSpec,
        models.VideoJobStatus,
        _VIDEOJOB_RULES,
    )
    schema["x-kubernetes-validations"] = [_immutable_spec_rule()]
    return schema


def pipeline_openapi_schema() -> dict[str, Any]:
    """The VideoPipeline's schema, as above."""
    return _object_schema(
        "A pipeline VideoJobs in this namespace can run: its stages, their containers and"
        " what the VideoJobs may override.",
        pipelines.VideoPipelineSpec,
        pipelines.VideoPipelineStatus,
        _PIPELINE_RULES,
    )


def _crd(
    kind: str,
    plural: str,
    singular: str,
    short_names: list[str],
    printer_columns: list[dict[str, Any]],
    schema: dict[str, Any],
    selectable_fields: Sequence[str] = (),
) -> dict[str, Any]:
    version: dict[str, Any] = {
        "name": models.VERSION,
        "served": True,
        "storage": True,
        "subresources": {"status": {}},
        "additionalPrinterColumns": printer_columns,
    }
    if selectable_fields:
        version["selectableFields"] = [{"jsonPath": path} for path in selectable_fields]
    version["schema"] = {"openAPIV3Schema": schema}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{models.GROUP}",
            "labels": {"app.kubernetes.io/name": "vid-operator"},
        },
        "spec": {
            "group": models.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": singular,
                "shortNames": short_names,
                "categories": ["all"],
            },
            "versions": [version],
        },
    }


SELECTABLE_FIELDS = (".status.phase", ".spec.priority", ".spec.pipeline")
"""VideoJob fields ``kubectl get --field-selector`` filters on."""

_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def custom_resource_definition() -> dict[str, Any]:
    """The VideoJob CRD manifest, ready to apply."""
    return _crd(
        models.KIND,
        models.PLURAL,
        models.SINGULAR,
        models.SHORT_NAMES,
        [
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Stage", "type": "string", "jsonPath": ".status.stage"},
            {"name": "Progress", "type": "string", "jsonPath": ".status.progress"},
            _AGE,
            {"name": "Pipeline", "type": "string", "jsonPath": ".spec.pipeline", "priority": 1},
            {"name": "Priority", "type": "string", "jsonPath": ".spec.priority", "priority": 1},
            {
                "name": "Position",
                "type": "integer",
                "jsonPath": ".status.queuePosition",
                "priority": 1,
            },
            {"name": "Retries", "type": "integer", "jsonPath": ".status.retries", "priority": 1},
            {"name": "Prompt", "type": "string", "jsonPath": ".spec.prompt", "priority": 1},
        ],
        openapi_schema(),
        # kubectl get vj --field-selector status.phase=Failed: the failed
        # ones (the queues' dead letters), filtered by the API server.
        SELECTABLE_FIELDS,
    )


def pipeline_custom_resource_definition() -> dict[str, Any]:
    """The VideoPipeline CRD manifest, ready to apply."""
    return _crd(
        pipelines.KIND,
        pipelines.PLURAL,
        pipelines.SINGULAR,
        pipelines.SHORT_NAMES,
        [
            {
                "name": "Ready",
                "type": "string",
                "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
            },
            {"name": "Stages", "type": "integer", "jsonPath": ".status.stageCount"},
            {
                "name": "Reason",
                "type": "string",
                "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
            },
            _AGE,
        ],
        pipeline_openapi_schema(),
    )


DEFINITIONS = {
    models.PLURAL: custom_resource_definition,
    pipelines.PLURAL: pipeline_custom_resource_definition,
}
"""Each CRD by its plural, as ``make crds`` names the files."""

_HEADER = "# Generated by `make crds` from vid_operator.api; do not edit.\n"


def render(plural: str = models.PLURAL) -> str:
    """One CRD as the YAML committed under ``crds/<plural>.vidop.io.yaml``."""
    return _HEADER + yaml.safe_dump(DEFINITIONS[plural](), sort_keys=False, width=100)


def render_chart_template() -> str:
    """Both CRDs as one Helm template of the chart. Templated (not in the
    chart's crds/ folder, which Helm never upgrades) so `helm upgrade` updates
    them; kept on uninstall by default, since deleting a CRD deletes every
    object of its kind."""
    marker = "  labels:\n"
    keep = (
        "  {{- if .Values.crds.keep }}\n"
        "  annotations:\n"
        "    helm.sh/resource-policy: keep\n"
        "  {{- end }}\n"
    )
    bodies = [
        yaml.safe_dump(build(), sort_keys=False, width=100).replace(marker, keep + marker, 1)
        for build in DEFINITIONS.values()
    ]
    return _HEADER + "{{- if .Values.crds.install }}\n" + "---\n".join(bodies) + "{{- end }}\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--chart"]:
        sys.stdout.write(render_chart_template())
    else:
        sys.stdout.write(render(*sys.argv[1:2]))
