"""Build the batch/v1 Job that runs one stage of a VideoJob.

Called by the reconciler when a stage's dependencies have succeeded; the
result is created as is. Pure: a manifest (dict) in, nothing sent anywhere,
so every field is unit-tested without a cluster.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from vid_operator import contract, naming, queueing
from vid_operator.api import models
from vid_operator.api.models import VideoJobSpec
from vid_operator.config import OperatorConfig
from vid_operator.pipeline import Stage, literal

CONTAINER_NAME = "stage"
# Stage images run as this user (their Dockerfiles create it).
STAGE_UID = 10001


@dataclass(frozen=True)
class Owner:
    """The VideoJob a Job belongs to."""

    name: str
    namespace: str
    uid: str


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": f"{models.GROUP}/{models.VERSION}",
        "kind": models.KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        # Foreground deletion of the VideoJob waits for its Jobs.
        "blockOwnerDeletion": True,
    }


def pod_failure_policy() -> dict[str, Any]:
    return {
        "rules": [
            # Bad input fails the same way every time: retrying wastes GPU hours.
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": CONTAINER_NAME,
                    "operator": "In",
                    "values": [contract.EXIT_INVALID_INPUT],
                },
            },
            # An eviction or preemption is not the stage's fault: retry, uncounted.
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]
    }


def _environment(
    owner: Owner,
    spec: VideoJobSpec,
    stage: Stage,
    config: OperatorConfig,
    cache_key: str | None,
    items: int | None,
) -> list[dict[str, Any]]:
    bucket, prefix = _location(spec, config)
    params = models.job_params(spec)
    env: list[dict[str, Any]] = [
        {"name": contract.ENV_JOB_NAME, "value": owner.name},
        {"name": contract.ENV_JOB_NAMESPACE, "value": owner.namespace},
        {"name": contract.ENV_JOB_UID, "value": owner.uid},
        {"name": contract.ENV_STAGE, "value": stage.name},
        # The prompt is the tenant's text.
        {"name": contract.ENV_PARAMS, "value": literal(json.dumps(params, sort_keys=True))},
        {
            "name": contract.ENV_ARTIFACT_PREFIX,
            "value": contract.artifact_prefix(
                bucket, prefix, owner.namespace, owner.name, owner.uid
            ),
        },
        {"name": contract.ENV_SCRATCH_DIR, "value": contract.SCRATCH_DIR},
        {"name": contract.ENV_TERMINATION_MESSAGE_PATH, "value": contract.TERMINATION_MESSAGE_PATH},
    ]
    env.extend(_s3_environment(config))
    if cache_key is not None:
        location = contract.cache_location(bucket, prefix, owner.namespace, cache_key)
        env.append({"name": contract.ENV_CACHE_KEY, "value": cache_key})
        env.append({"name": contract.ENV_CACHE_LOCATION, "value": location})
    if items is not None:
        env.append({"name": contract.ENV_ITEMS, "value": str(items)})
    if reports_progress(stage, config):
        env.extend(_progress_environment(config))
    env.extend(e.model_dump(by_alias=True, exclude_none=True) for e in stage.env)
    return env


def reports_progress(stage: Stage, config: OperatorConfig) -> bool:
    """The stage's pod gets a progress token: the configuration names the
    progress ServiceAccount, the pipeline names none of its own for the
    stage (whose token would carry that account's rights instead), and the
    stage does not fan out (its progress is its items done)."""
    return (
        config.stage_progress.service_account_name is not None
        and stage.service_account_name is None
        and stage.fan_out is None
    )


def _progress_environment(config: OperatorConfig) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": contract.ENV_POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {
            "name": contract.ENV_PROGRESS_TOKEN_FILE,
            "value": f"{contract.PROGRESS_DIR}/{contract.PROGRESS_TOKEN_PATH}",
        },
        {
            "name": contract.ENV_API_CA_FILE,
            "value": f"{contract.PROGRESS_DIR}/{contract.PROGRESS_CA_PATH}",
        },
    ]
    if config.stage_progress.api_server:
        env.append({"name": contract.ENV_API_SERVER, "value": config.stage_progress.api_server})
    return env


def _progress_volume() -> dict[str, Any]:
    """The token that may patch one annotation of its own pod (the chart's
    admission policy holds it to that), short-lived and bound to the pod, and
    the CA to check the API server with: what a kubelet projects for a
    ServiceAccount, but never automounted and with nothing else."""
    return {
        "name": contract.PROGRESS_VOLUME,
        "projected": {
            "sources": [
                {
                    "serviceAccountToken": {
                        "path": contract.PROGRESS_TOKEN_PATH,
                        "expirationSeconds": contract.PROGRESS_TOKEN_SECONDS,
                    }
                },
                {
                    "configMap": {
                        "name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": contract.PROGRESS_CA_PATH}],
                    }
                },
            ]
        },
    }


def _fan_out(stage: Stage, items: int) -> dict[str, Any]:
    """The Indexed Job's settings: one completion per item, each retried
    alone up to its own limit, the whole Job failed once one item is out of
    retries (the others would be wasted: the stage fails anyway)."""
    assert stage.fan_out is not None
    per_item = stage.fan_out.backoff_limit_per_index
    per_item = stage.backoff_limit if per_item is None else per_item
    return {
        "completionMode": "Indexed",
        "completions": items,
        "parallelism": min(items, stage.fan_out.parallelism or items),
        "backoffLimitPerIndex": per_item,
        "maxFailedIndexes": 0,
        # Every item may use all its retries; the per-item limit decides.
        "backoffLimit": items * (per_item + 1),
    }


def build_cleanup_job(owner: Owner, spec: VideoJobSpec, config: OperatorConfig) -> dict[str, Any]:
    """The Job that deletes the artifacts of the deleted VideoJob ``owner``
    (``artifactRetention.policy: delete``): the stage runtime's
    ``vidop-artifacts-cleanup`` on the VideoJob's prefix, with the stages' S3
    credentials, as hardened as a stage. It has no owner: the VideoJob it
    cleans up after is gone, and its TTL removes it."""
    bucket, prefix = _location(spec, config)
    env = [
        {
            "name": contract.ENV_ARTIFACT_PREFIX,
            "value": contract.artifact_prefix(
                bucket, prefix, owner.namespace, owner.name, owner.uid
            ),
        },
        *_s3_environment(config),
    ]
    labels = {
        naming.MANAGED_BY_LABEL: naming.MANAGED_BY,
        naming.VIDEOJOB_LABEL: naming.label_value(owner.name),
        naming.CLEANUP_LABEL: "true",
    }
    container = {
        "name": CONTAINER_NAME,
        "image": config.artifact_retention.image,
        "command": ["vidop-artifacts-cleanup"],
        "env": env,
        "resources": {
            "requests": {"cpu": "50m", "memory": "128Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"},
        },
        "securityContext": _container_security(),
    }
    job_spec: dict[str, Any] = {
        "backoffLimit": 3,
        "activeDeadlineSeconds": 600,
        "podFailurePolicy": pod_failure_policy(),
        "podReplacementPolicy": "Failed",
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "securityContext": _pod_security(),
                "containers": [container],
                **_cleanup_placement(config),
            },
        },
    }
    metadata = {
        "name": naming.cleanup_job_name(owner.name, owner.uid),
        "namespace": owner.namespace,
        "labels": labels,
    }
    return _job(metadata, job_spec, config)


def _job(
    metadata: dict[str, Any], job_spec: dict[str, Any], config: OperatorConfig
) -> dict[str, Any]:
    """A Job of the operator's: finished, it goes after the configured TTL."""
    if config.finished_jobs.succeeded_ttl_seconds is not None:
        job_spec["ttlSecondsAfterFinished"] = config.finished_jobs.succeeded_ttl_seconds
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}


def _cleanup_placement(config: OperatorConfig) -> dict[str, Any]:
    """Where the cleanup pod runs, and the pull secrets of the registry its
    image comes from (the stages')."""
    retention = config.artifact_retention
    placement: dict[str, Any] = {}
    if retention.node_selector:
        placement["nodeSelector"] = dict(retention.node_selector)
    if retention.tolerations:
        placement["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True) for t in retention.tolerations
        ]
    if pull_secrets := config.stage_defaults.image_pull_secrets:
        placement["imagePullSecrets"] = [secret.model_dump() for secret in pull_secrets]
    return placement


def _location(spec: VideoJobSpec, config: OperatorConfig) -> tuple[str, str]:
    """The bucket and prefix of the VideoJob's artifacts."""
    bucket = (spec.output and spec.output.bucket) or config.s3.bucket
    prefix = (
        spec.output.prefix if spec.output and spec.output.prefix is not None else config.s3.prefix
    )
    return bucket, prefix


def _s3_environment(config: OperatorConfig) -> list[dict[str, Any]]:
    """Where the store is and the credentials for it (by reference: they never
    pass through the operator)."""
    env: list[dict[str, Any]] = [{"name": contract.ENV_S3_REGION, "value": config.s3.region}]
    if config.s3.endpoint_url:
        env.append({"name": contract.ENV_S3_ENDPOINT, "value": config.s3.endpoint_url})
    if config.s3.credentials_secret:
        for variable in (contract.ENV_S3_ACCESS_KEY, contract.ENV_S3_SECRET_KEY):
            env.append(
                {
                    "name": variable,
                    "valueFrom": {
                        "secretKeyRef": {"name": config.s3.credentials_secret, "key": variable}
                    },
                }
            )
    return env


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": STAGE_UID,
        "runAsGroup": STAGE_UID,
        "fsGroup": STAGE_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _resources(stage: Stage, config: OperatorConfig) -> dict[str, Any]:
    resources = stage.resources.model_dump(exclude_none=True)
    if stage.gpus:
        # Extended resources are set as limits; requests default to them.
        limits = dict(resources.get("limits", {}))
        limits[config.gpu.resource_name] = stage.gpus
        resources["limits"] = limits
    return {kind: {k: str(v) for k, v in amounts.items()} for kind, amounts in resources.items()}


def _placement(stage: Stage, config: OperatorConfig) -> dict[str, Any]:
    node_selector = dict(stage.node_selector)
    tolerations = [t.model_dump(by_alias=True, exclude_none=True) for t in stage.tolerations]
    if stage.gpus:
        node_selector = {**config.gpu.node_selector, **node_selector}
        for toleration in config.gpu.tolerations:
            dumped = toleration.model_dump(by_alias=True, exclude_none=True)
            if dumped not in tolerations:
                tolerations.append(dumped)
    placement: dict[str, Any] = {}
    if stage.affinity:
        placement["affinity"] = stage.affinity
    if node_selector:
        placement["nodeSelector"] = node_selector
    if tolerations:
        placement["tolerations"] = tolerations
    return placement


def build_stage_job(
    owner: Owner,
    spec: VideoJobSpec,
    stage: Stage,
    config: OperatorConfig,
    run: int = 0,
    *,
    cache_key: str | None = None,
    items: int | None = None,
) -> dict[str, Any]:
    """The Job for ``stage`` of the VideoJob ``owner``; ``run`` counts the
    stage's Jobs before this one (see :func:`naming.stage_job_name`); with a
    ``cache_key`` (:mod:`vid_operator.cache`) the stage may reuse a stored
    result; with ``items`` (a stage that fans out) it is an Indexed Job of
    that many completions."""
    labels = naming.labels(owner.name, stage.name)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": stage.image,
        "env": _environment(owner, spec, stage, config, cache_key, items),
        "resources": _resources(stage, config),
        "terminationMessagePath": contract.TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "File",
        "volumeMounts": [
            {"name": contract.SCRATCH_VOLUME, "mountPath": contract.SCRATCH_DIR},
            *(m.model_dump(by_alias=True, exclude_none=True) for m in stage.volume_mounts),
        ],
        "securityContext": _container_security(),
    }
    progress = reports_progress(stage, config)
    if progress:
        container["volumeMounts"].append(
            {"name": contract.PROGRESS_VOLUME, "mountPath": contract.PROGRESS_DIR, "readOnly": True}
        )
    if stage.env_from:
        container["envFrom"] = [
            e.model_dump(by_alias=True, exclude_none=True) for e in stage.env_from
        ]
    if stage.command:
        container["command"] = stage.command
    if stage.args:
        container["args"] = stage.args
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # A stage gets an API token only when its pipeline names the account
        # (the progress token is projected, never automounted).
        "automountServiceAccountToken": stage.service_account_name is not None,
        "enableServiceLinks": False,
        "securityContext": _pod_security(),
        "containers": [container],
        "volumes": [
            {"name": contract.SCRATCH_VOLUME, "emptyDir": {}},
            *(v.model_dump(by_alias=True, exclude_none=True) for v in stage.volumes),
            *([_progress_volume()] if progress else []),
        ],
        **_placement(stage, config),
    }
    if stage.service_account_name is not None:
        pod_spec["serviceAccountName"] = stage.service_account_name
    elif progress:
        pod_spec["serviceAccountName"] = config.stage_progress.service_account_name
    if stage.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": name} for name in stage.image_pull_secrets]
    if stage.termination_grace_period_seconds is not None:
        pod_spec["terminationGracePeriodSeconds"] = stage.termination_grace_period_seconds
    if priority_class := config.priority_classes.get(spec.priority):
        pod_spec["priorityClassName"] = priority_class
    queued = queueing.kueue_labels(spec, owner.namespace, config, gpus=stage.gpus)
    job_spec: dict[str, Any] = {
        "backoffLimit": stage.backoff_limit,
        "podFailurePolicy": pod_failure_policy(),
        # With a podFailurePolicy a replacement pod starts only once the old
        # one is fully gone, so two never run side by side.
        "podReplacementPolicy": "Failed",
        # Kueue admits a Job by resuming it: created suspended, it waits for that.
        "suspend": spec.suspend or bool(queued),
        "template": {
            "metadata": {
                # The operator's labels last: they are how it finds its pods.
                "labels": {**stage.pod_labels, **labels},
                **({"annotations": dict(stage.pod_annotations)} if stage.pod_annotations else {}),
            },
            "spec": pod_spec,
        },
    }
    if items is not None:
        job_spec.update(_fan_out(stage, items))
    if stage.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = stage.active_deadline_seconds
    metadata: dict[str, Any] = {
        "name": naming.stage_job_name(owner.name, stage.name, run, indexed=items is not None),
        "namespace": owner.namespace,
        "labels": {**queued, **labels, **({naming.RUN_LABEL: str(run)} if run else {})},
        "ownerReferences": [owner_reference(owner)],
    }
    if queued and items is not None and job_spec["parallelism"] > 1:
        # Kueue may admit a fanned-out stage on fewer GPUs than it has items
        # (partial admission): its items then take turns on them. Kueue
        # refuses the annotation unless it is below the Job's parallelism.
        metadata["annotations"] = {queueing.MIN_PARALLELISM_ANNOTATION: "1"}
    return _job(metadata, job_spec, config)
