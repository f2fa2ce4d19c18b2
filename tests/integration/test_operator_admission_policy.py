"""The chart's ValidatingAdmissionPolicy on the operator's own rights, on the
real API server with the chart's ServiceAccount token and cluster-wide RBAC:
what a leaked token (or a bug) could do with those rights is refused, naming
the policy, and everything the operator itself writes still goes through,
shown by running the operator under that token to each of its Job writes."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from tests.support import (
    Cluster,
    Operator,
    get_videojob,
    render_chart,
    videojob_manifest,
    wait_for_phase,
    wait_until,
)
from vid_operator import config as operator_config
from vid_operator import contract, jobs, kube, naming, pipeline, queueing
from vid_operator.api.models import VideoJobSpec
from vid_operator.api.pipelines import VideoPipelineSpec

pytestmark = pytest.mark.cluster

FAILED_TTL = 604800  # the chart's finishedJobs.failedTtlSeconds
PULL_LIMIT = 4


@dataclasses.dataclass
class Installed:
    """The chart's cluster-wide RBAC and policy for one release, and the
    operator's identity."""

    release: str
    policy: str
    kubeconfig: Path
    api: client.ApiClient
    configuration: dict[str, Any]


def _render(
    cluster: Cluster, release: str, namespace: str, extra: dict[str, Any]
) -> list[dict[str, Any]]:
    values = {
        "s3": {"credentialsSecret": ""},
        "stageDefaults": {"imagePullTimeoutSeconds": PULL_LIMIT},
        "overridePolicy": {"allowedPodAnnotations": ["kwok.vidop.io/"]},
        "artifactRetention": {"policy": "delete"},
        "admissionPolicy": {"stageServiceAccounts": ["renderer"]},
        **extra,
    }
    return render_chart(cluster.bin_dir, release=release, namespace=namespace, values=values)


@pytest.fixture
def installed(
    cluster: Cluster, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Installed]:
    """The release's cluster-wide RBAC, ServiceAccount, CRDs and admission
    policy applied, in force, and removed afterwards (they are cluster-scoped);
    with the values a test gives as the fixture's parameter (indirect)."""
    release = f"p{namespace[-6:]}"
    documents = _render(cluster, release, namespace, getattr(request, "param", {}))
    wanted = [d for d in documents if d["kind"] not in ("Deployment", "ConfigMap")]
    cluster.apply(
        {"apiVersion": "v1", "kind": "List", "items": wanted},
        None,
        "--server-side",
        "--force-conflicts",
    )
    # The operator's own policy (with stageProgress, the progress token's is
    # applied beside it: it judges only that ServiceAccount's requests).
    (policy,) = [
        d["metadata"]["name"]
        for d in wanted
        if d["kind"] == "ValidatingAdmissionPolicy"
        and d["metadata"]["name"].endswith("-operator-writes")
    ]
    (account,) = [d["metadata"]["name"] for d in wanted if d["kind"] == "ServiceAccount"]
    (configmap,) = [d for d in documents if d["kind"] == "ConfigMap"]
    configuration = yaml.safe_load(configmap["data"]["config.yaml"])
    # Cluster-wide rights, but this operator serves only the test's namespace.
    configuration["watchNamespaces"] = [namespace]
    kubeconfig = cluster.kubeconfig_of(namespace, account, tmp_path / "operator.kubeconfig")
    api = config.new_client_from_config(config_file=str(kubeconfig))
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/videojobs.vidop.io", "--timeout=30s"
    )
    found = Installed(release, policy, kubeconfig, api, configuration)
    # A new policy (and binding) takes a moment to be in force: until a
    # known-bad Job is refused by it (not by RBAC, also still settling).
    bad = _stage_job(namespace)
    bad["spec"]["template"]["spec"]["hostPID"] = True
    wait_until(
        "the policy to be in force",
        lambda: f"ValidatingAdmissionPolicy '{policy}'" in (_refusal(found, bad) or ""),
        timeout=30,
    )
    try:
        yield found
    finally:
        api.close()
        cluster.kubectl(
            "delete",
            "validatingadmissionpolicybinding,validatingadmissionpolicy,"
            "clusterrolebinding,clusterrole",
            "-l",
            f"app.kubernetes.io/instance={release}",
            "--wait=false",
        )


def _stage_job(namespace: str, uid: str = "0000-test") -> dict[str, Any]:
    """A stage Job exactly as the operator builds it."""
    configured = operator_config.OperatorConfig()
    spec = VideoJobSpec.model_validate({"prompt": "a cat"})
    (stage, *_) = pipeline.resolve(spec, configured)
    return jobs.build_stage_job(jobs.Owner("cat", namespace, uid), spec, stage, configured)


def _refusal(installed: Installed, job: dict[str, Any]) -> str | None:
    """The API server's message when it refuses a server-side dry-run create
    of ``job`` with the operator's token; None when it admits it."""
    try:
        client.BatchV1Api(installed.api).create_namespaced_job(
            job["metadata"]["namespace"], job, dry_run="All"
        )
    except client.ApiException as error:
        return str(error.body)
    return None


def _changed(namespace: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    job = _stage_job(namespace)
    change(job)
    return job


def _pod(job: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = job["spec"]["template"]["spec"]
    return pod


def _container(job: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = _pod(job)["containers"][0]
    return container


def test_what_a_leaked_token_would_create_is_refused_and_the_operators_jobs_are_not(
    cluster: Cluster, namespace: str, installed: Installed
) -> None:
    # The example: a Job in kube-system as one of its accounts, with
    # the host's filesystem and processes. RBAC alone allows it.
    attack = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "escape", "namespace": "kube-system"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": "clusterrole-aggregation-controller",
                    "hostPID": True,
                    "containers": [
                        {
                            "name": "c",
                            "image": "busybox",
                            "volumeMounts": [{"name": "host", "mountPath": "/host"}],
                        }
                    ],
                    "volumes": [{"name": "host", "hostPath": {"path": "/"}}],
                }
            }
        },
    }
    refusals = {
        "in kube-system": (attack, "control-plane namespaces"),
        "a stage Job in kube-node-lease": (
            _changed("kube-node-lease", lambda job: None),
            "control-plane namespaces",
        ),
        "without the managed-by label": (
            _changed(namespace, lambda job: job["metadata"]["labels"].pop(naming.MANAGED_BY_LABEL)),
            "app.kubernetes.io/managed-by",
        ),
        "without the VideoJob ownerReference": (
            _changed(namespace, lambda job: job["metadata"].pop("ownerReferences")),
            "controller ownerReference to a VideoJob",
        ),
        "owned by something else": (
            _changed(
                namespace,
                lambda job: job["metadata"]["ownerReferences"][0].update(
                    apiVersion="apps/v1", kind="Deployment"
                ),
            ),
            "controller ownerReference to a VideoJob",
        ),
        "with host PID": (
            _changed(namespace, lambda job: _pod(job).update(hostPID=True)),
            "no host namespaces",
        ),
        "with the host network": (
            _changed(namespace, lambda job: _pod(job).update(hostNetwork=True)),
            "no host namespaces",
        ),
        "with a hostPath volume": (
            _changed(
                namespace,
                lambda job: _pod(job)["volumes"].append(
                    {"name": "host", "hostPath": {"path": "/var/run"}}
                ),
            ),
            "never hostPath",
        ),
        "with an added capability": (
            _changed(
                namespace,
                lambda job: _container(job)["securityContext"]["capabilities"].update(
                    add=["SYS_ADMIN"]
                ),
            ),
            "every capability dropped",
        ),
        "with privilege escalation": (
            _changed(
                namespace,
                lambda job: _container(job)["securityContext"].update(
                    allowPrivilegeEscalation=True
                ),
            ),
            "no privilege escalation",
        ),
        "as root": (
            _changed(namespace, lambda job: _pod(job)["securityContext"].update(runAsUser=0)),
            "stage securityContext",
        ),
        "with an init container": (
            _changed(
                namespace,
                lambda job: _pod(job).update(initContainers=[dict(_container(job), name="init")]),
            ),
            "one container",
        ),
        "on a node of its choosing": (
            _changed(namespace, lambda job: _pod(job).update(nodeName="kwok-cpu-0")),
            "nodeName",
        ),
        "with a token it did not ask for": (
            _changed(namespace, lambda job: _pod(job).update(automountServiceAccountToken=True)),
            "mounts no token",
        ),
        "as a ServiceAccount the platform did not list": (
            _changed_pipeline_job(namespace, lambda pod: pod.update(serviceAccountName="admin")),
            "(one of renderer)",
        ),
        "the cleanup Job with another image": (
            _cleanup_job(installed, namespace, "registry.example/anything:1"),
            "artifacts cleanup Job",
        ),
    }
    for case, (job, words) in refusals.items():
        message = _refusal(installed, job)
        assert message is not None, f"admitted: a Job {case}"
        assert f"ValidatingAdmissionPolicy '{installed.policy}'" in message, (case, message)
        assert words in message, (case, message)

    # What the operator builds is admitted: a stage Job (also one whose
    # pipeline gives it a ServiceAccount and every volume kind a stage may
    # have) and the artifacts cleanup Job.
    assert _refusal(installed, _stage_job(namespace)) is None
    assert _refusal(installed, _cleanup_job(installed, namespace)) is None
    assert _refusal(installed, _pipeline_job(namespace)) is None
    # Other users are not the policy's business.
    admin = _changed(namespace, lambda job: _pod(job).update(hostPID=True))
    client.BatchV1Api(cluster.api).create_namespaced_job(namespace, admin, dry_run="All")


def _changed_pipeline_job(
    namespace: str, change: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    job = _pipeline_job(namespace)
    change(_pod(job))
    return job


def _cleanup_job(installed: Installed, namespace: str, image: str | None = None) -> dict[str, Any]:
    """The artifacts cleanup Job as the operator builds it (with ``image``
    instead of the configured one, if given)."""
    configured = operator_config.from_mapping(installed.configuration)
    spec = VideoJobSpec.model_validate({"prompt": "a cat"})
    job = jobs.build_cleanup_job(jobs.Owner("cat", namespace, "0000-test"), spec, configured)
    if image is not None:
        _container(job)["image"] = image
    return job


def _pipeline_job(namespace: str) -> dict[str, Any]:
    """A stage Job of a VideoPipeline that names a ServiceAccount, pull
    secrets and every volume kind a stage may have."""
    source = pipeline.pipeline_source(
        "models",
        VideoPipelineSpec.model_validate(
            {
                "stages": [
                    {
                        "name": "render",
                        "image": "registry.example/render:1",
                        "serviceAccountName": "renderer",
                        "imagePullSecrets": [{"name": "pull"}],
                        "volumes": [
                            {"name": "models", "persistentVolumeClaim": {"claimName": "models"}},
                            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
                            {"name": "settings", "configMap": {"name": "settings"}},
                            {"name": "keys", "secret": {"secretName": "keys"}},
                            {
                                "name": "tmp",
                                "ephemeral": {
                                    "volumeClaimTemplate": {
                                        "spec": {
                                            "accessModes": ["ReadWriteOnce"],
                                            "resources": {"requests": {"storage": "1Gi"}},
                                        }
                                    }
                                },
                            },
                        ],
                        "volumeMounts": [{"name": "models", "mountPath": "/models"}],
                    }
                ]
            }
        ),
    )
    spec = VideoJobSpec.model_validate({"prompt": "a cat", "pipeline": "models"})
    configured = operator_config.OperatorConfig()
    (stage,) = pipeline.resolve(spec, configured, source)
    return jobs.build_stage_job(jobs.Owner("cat", namespace, "0000-test"), spec, stage, configured)


PROGRESS = {"stageProgress": {"enabled": True}}
"""Values of an install whose stages report progress (vid_operator.contract)."""
PROGRESS_ACCOUNT = "vidop-stage-progress"
"""The chart's default stageProgress.serviceAccountName."""


def _progress_job(namespace: str, account: str = PROGRESS_ACCOUNT) -> dict[str, Any]:
    """A stage Job exactly as the operator builds it when stages report
    progress (``stageProgress.serviceAccountName``): the progress
    ServiceAccount, no automounted token, the projected pod-bound token and
    the cluster's CA, and the contract's variables."""
    configured = operator_config.from_mapping({"stageProgress": {"serviceAccountName": account}})
    spec = VideoJobSpec.model_validate({"prompt": "a cat"})
    (stage, *_) = pipeline.resolve(spec, configured)
    return jobs.build_stage_job(jobs.Owner("cat", namespace, "0000-test"), spec, stage, configured)


def _with_progress(job: dict[str, Any], account: str = PROGRESS_ACCOUNT) -> dict[str, Any]:
    """``job`` given what the operator adds to a stage that reports progress
    (taken from :func:`_progress_job`), for Jobs the operator never builds."""
    progress = _progress_job(job["metadata"]["namespace"], account)
    pod, progress_pod = _pod(job), _pod(progress)
    pod.update(serviceAccountName=account, automountServiceAccountToken=False)
    pod.setdefault("volumes", []).extend(
        v for v in progress_pod["volumes"] if v["name"] == contract.PROGRESS_VOLUME
    )
    container, progress_container = _container(job), _container(progress)
    container.setdefault("volumeMounts", []).extend(
        m for m in progress_container["volumeMounts"] if m["name"] == contract.PROGRESS_VOLUME
    )
    names = {e["name"] for e in container.get("env", [])}
    container.setdefault("env", []).extend(
        e for e in progress_container["env"] if e["name"] not in names
    )
    return job


def _progress_sources(job: dict[str, Any]) -> list[dict[str, Any]]:
    (volume,) = [v for v in _pod(job)["volumes"] if v["name"] == contract.PROGRESS_VOLUME]
    sources: list[dict[str, Any]] = volume["projected"]["sources"]
    return sources


@pytest.mark.parametrize("installed", [PROGRESS], indirect=True)
def test_with_stage_progress_a_stage_job_may_carry_exactly_the_progress_token(
    namespace: str, installed: Installed
) -> None:
    def progress_job(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        job = _progress_job(namespace)
        change(job)
        return job

    def renamed(job: dict[str, Any]) -> None:
        _pod(job)["volumes"][-1]["name"] = "tokens"
        _container(job)["volumeMounts"][-1]["name"] = "tokens"

    # As the operator builds it: admitted; so is a pipeline's own account.
    assert _refusal(installed, _progress_job(namespace)) is None
    assert _refusal(installed, _pipeline_job(namespace)) is None
    refusals = {
        "with the token automounted too": (
            progress_job(lambda job: _pod(job).update(automountServiceAccountToken=True)),
            "its token not automounted",
        ),
        "for another audience": (
            progress_job(
                lambda job: _progress_sources(job)[0]["serviceAccountToken"].update(
                    audience="vault"
                )
            ),
            "only projected volume is vidop-progress",
        ),
        "for longer": (
            progress_job(
                lambda job: _progress_sources(job)[0]["serviceAccountToken"].update(
                    expirationSeconds=86400
                )
            ),
            "only projected volume is vidop-progress",
        ),
        "with a Secret beside it": (
            progress_job(
                lambda job: _progress_sources(job).append({"secret": {"name": "s3-keys"}})
            ),
            "only projected volume is vidop-progress",
        ),
        "with another ConfigMap": (
            progress_job(
                lambda job: _progress_sources(job)[1]["configMap"].update(name="settings")
            ),
            "only projected volume is vidop-progress",
        ),
        "under another name": (
            progress_job(renamed),
            "only projected volume is vidop-progress",
        ),
        "of a pipeline's own ServiceAccount": (
            _with_progress(_pipeline_job(namespace), account="renderer"),
            "only projected volume is vidop-progress",
        ),
        "as a ServiceAccount the platform did not list": (
            _changed_pipeline_job(namespace, lambda pod: pod.update(serviceAccountName="admin")),
            "(one of renderer)",
        ),
    }
    for case, (job, words) in refusals.items():
        message = _refusal(installed, job)
        assert message is not None, f"admitted: a Job {case}"
        assert f"ValidatingAdmissionPolicy '{installed.policy}'" in message, (case, message)
        assert words in message, (case, message)


def test_without_stage_progress_no_stage_job_carries_the_progress_token(
    namespace: str, installed: Installed
) -> None:
    def without_volume(job: dict[str, Any]) -> None:
        _pod(job)["volumes"].pop()
        _container(job)["volumeMounts"].pop()

    whole = _refusal(installed, _progress_job(namespace))
    account_only = _refusal(
        installed, _changed(namespace, lambda job: without_volume(_with_progress(job)))
    )

    assert whole is not None and "(never hostPath)" in whole, whole
    assert account_only is not None and "(one of renderer)" in account_only, account_only


def test_the_operator_changes_only_what_it_changes_of_a_job_and_a_videojob(
    cluster: Cluster, namespace: str, installed: Installed
) -> None:
    cluster.apply(
        {
            "apiVersion": "vidop.io/v1alpha1",
            "kind": "VideoJob",
            "metadata": {"name": "cat"},
            "spec": {"prompt": "a cat", "suspend": True},
        },
        namespace,
    )
    videojob = get_videojob(cluster, namespace, "cat")
    assert videojob is not None
    uid = videojob["metadata"]["uid"]
    writes = kube.Kube(installed.api)
    job = _stage_job(namespace, uid)
    job["spec"]["suspend"] = True
    name = job["metadata"]["name"]
    assert writes.create_job(job) is not None
    batch = client.BatchV1Api(installed.api)

    def refused(patch: dict[str, Any]) -> str:
        with pytest.raises(client.ApiException) as caught:
            batch.patch_namespaced_job(name, namespace, patch)
        assert f"ValidatingAdmissionPolicy '{installed.policy}'" in str(caught.value.body)
        return str(caught.value.body)

    # A suspended Job's pod template may change (its scheduling directives):
    # not by the operator, which never does.
    assert "spec.suspend" in refused(
        {"spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/hostname": "x"}}}}}
    )
    assert "spec.suspend" in refused({"spec": {"parallelism": 4}})
    assert "spec.suspend" in refused({"spec": {"activeDeadlineSeconds": 86400}})
    assert "vidop.io/ended" in refused({"metadata": {"labels": {naming.MANAGED_BY_LABEL: "me"}}})
    assert "vidop.io/ended" in refused({"metadata": {"annotations": {"example.com/x": "y"}}})
    assert "vidop.io/ended" in refused({"metadata": {"ownerReferences": None}})

    # Each write of vid_operator.kube: suspend and resume, a longer TTL, the end.
    writes.set_job_suspend(namespace, name, False)
    writes.set_job_suspend(namespace, name, True)
    writes.set_job_ttl(namespace, name, FAILED_TTL)
    writes.end_job(namespace, name, "PendingTimeout: a test")
    seen = client.BatchV1Api(cluster.api).read_namespaced_job(name, namespace)
    assert seen.spec.ttl_seconds_after_finished == FAILED_TTL
    assert seen.spec.active_deadline_seconds == 1
    assert seen.metadata.annotations[naming.ENDED_ANNOTATION] == "PendingTimeout: a test"

    # Jobs that are not the operator's are not its to change.
    other = client.BatchV1Api(cluster.api).create_namespaced_job(
        namespace,
        {
            "metadata": {"name": "teams-own"},
            "spec": {
                "suspend": True,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "c", "image": "busybox"}],
                    }
                },
            },
        },
    )
    with pytest.raises(client.ApiException) as caught:
        batch.patch_namespaced_job(other.metadata.name, namespace, {"spec": {"suspend": False}})
    assert "only its own Jobs" in str(caught.value.body)

    # A VideoJob: its finalizer, nothing else.
    custom = client.CustomObjectsApi(installed.api)
    with pytest.raises(client.ApiException) as caught:
        custom.patch_namespaced_custom_object(
            "vidop.io",
            "v1alpha1",
            namespace,
            "videojobs",
            "cat",
            {"metadata": {"labels": {"team": "someone-else"}}},
        )
    assert "finalizer vidop.io/artifacts" in str(caught.value.body)
    writes.set_videojob_finalizers(
        namespace, "cat", [naming.ARTIFACTS_FINALIZER], videojob["metadata"]["resourceVersion"]
    )
    now = get_videojob(cluster, namespace, "cat")
    assert now is not None and now["metadata"]["finalizers"] == [naming.ARTIFACTS_FINALIZER]
    writes.set_videojob_finalizers(namespace, "cat", [], now["metadata"]["resourceVersion"])

    # Events: about a VideoJob, yes; about anything else, no.
    core = client.CoreV1Api(installed.api)
    about = {"apiVersion": "v1", "kind": "Pod", "name": "x", "namespace": namespace}
    with pytest.raises(client.ApiException) as caught:
        core.create_namespaced_event(
            namespace,
            {
                "metadata": {"generateName": "x."},
                "involvedObject": about,
                "reason": "R",
                "message": "m",
                "type": "Normal",
            },
            dry_run="All",
        )
    assert "only about VideoJobs and VideoPipelines" in str(caught.value.body)
    events_before = len(core.list_namespaced_event(namespace).items)
    writes.post_event(videojob, "Normal", "Checked", "by the admission policy test")
    assert len(core.list_namespaced_event(namespace).items) == events_before + 1


KUEUE = {"queueing": {"kueue": {"enabled": True}}}
"""Values of an install whose operator hands stage Jobs to Kueue."""
WORKLOADS = "workloads.kueue.x-k8s.io"


def _workload_crd() -> dict[str, Any]:
    """The least of Kueue's Workload API the policy needs: its group, version
    and kind, an open spec and a status subresource."""
    open_object = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": WORKLOADS},
        "spec": {
            "group": queueing.KUEUE_GROUP,
            "scope": "Namespaced",
            "names": {"plural": "workloads", "singular": "workload", "kind": "Workload"},
            "versions": [
                {
                    "name": queueing.KUEUE_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": open_object, "status": open_object},
                        }
                    },
                }
            ],
        },
    }


@pytest.fixture
def workload_api(cluster: Cluster) -> Iterator[bool]:
    """Kueue's Workload API: Kueue's own CRD where the cluster has one (True),
    else the minimal one above (False), removed afterwards. No Kueue needs to
    run behind it: the policy judges the operator's requests, not what Kueue
    makes of them."""
    kueue_installed = cluster.kubectl("get", "crd", WORKLOADS, check=False).returncode == 0
    if not kueue_installed:
        cluster.apply(_workload_crd(), None, "--server-side")
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{WORKLOADS}", "--timeout=30s")
    try:
        yield kueue_installed
    finally:
        if not kueue_installed:
            cluster.kubectl("delete", "crd", WORKLOADS, "--timeout=60s")


def _workload(name: str, owner: dict[str, Any] | None) -> dict[str, Any]:
    """A Workload as Kueue makes one for a Job (``owner``), or a standalone one."""
    container = {"name": "stage", "image": "registry.example/stage:1"}
    return {
        "apiVersion": f"{queueing.KUEUE_GROUP}/{queueing.KUEUE_VERSION}",
        "kind": "Workload",
        "metadata": {"name": name, **({"ownerReferences": [owner]} if owner else {})},
        "spec": {
            "queueName": "team-a",
            "podSets": [
                {
                    "name": "main",
                    "count": 1,
                    "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
                }
            ],
        },
    }


@pytest.mark.parametrize("installed", [KUEUE], indirect=True)
def test_with_kueue_the_operator_sets_only_spec_active_of_its_jobs_workloads(
    cluster: Cluster, namespace: str, workload_api: bool, installed: Installed
) -> None:
    cluster.apply(videojob_manifest("cat", priority="high", suspend=True), namespace)
    videojob = get_videojob(cluster, namespace, "cat")
    assert videojob is not None
    configured = operator_config.from_mapping(
        {
            **installed.configuration,
            "queueing": {
                "kueue": {
                    "enabled": True,
                    "defaultQueueName": "team-a",
                    "workloadPriorityClasses": {"high": "videos-high"},
                }
            },
        }
    )
    spec = VideoJobSpec.model_validate({"prompt": "a cat", "priority": "high"})
    (stage, *_) = pipeline.resolve(spec, configured)
    owner = jobs.Owner("cat", namespace, videojob["metadata"]["uid"])
    job = jobs.build_stage_job(owner, spec, stage, configured)
    labels = job["metadata"]["labels"]

    # A stage Job that Kueue admits is created like any other: with Kueue's
    # labels, suspended until Kueue resumes it.
    assert (labels[queueing.QUEUE_NAME_LABEL], job["spec"]["suspend"]) == ("team-a", True)
    assert labels[queueing.WORKLOAD_PRIORITY_LABEL] == "videos-high"
    assert _refusal(installed, job) is None
    # The one created for real names no WorkloadPriorityClass, which a real
    # Kueue would look for.
    del labels[queueing.WORKLOAD_PRIORITY_LABEL]
    created = kube.Kube(installed.api).create_job(job)
    assert created is not None
    name = job["metadata"]["name"]

    # Its Workload: Kueue's own where Kueue runs, else one made as Kueue makes it.
    custom = client.CustomObjectsApi(cluster.api)

    def workload_of_the_job() -> str | None:
        for found in custom.list_namespaced_custom_object(
            queueing.KUEUE_GROUP, queueing.KUEUE_VERSION, namespace, "workloads"
        )["items"]:
            for reference in found["metadata"].get("ownerReferences") or []:
                if reference["kind"] == "Job" and reference["name"] == name:
                    return str(found["metadata"]["name"])
        return None

    by_kueue = None
    deadline = time.monotonic() + (15 if workload_api else 0)
    while by_kueue is None and time.monotonic() < deadline:
        by_kueue = workload_of_the_job()
        time.sleep(0.2)
    workload = by_kueue or f"job-{name}"
    if by_kueue is None:
        reference = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": name,
            "uid": created["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
        custom.create_namespaced_custom_object(
            queueing.KUEUE_GROUP,
            queueing.KUEUE_VERSION,
            namespace,
            "workloads",
            _workload(workload, reference),
        )
    standalone = custom.create_namespaced_custom_object(
        queueing.KUEUE_GROUP,
        queueing.KUEUE_VERSION,
        namespace,
        "workloads",
        _workload("standalone", None),
    )

    as_operator = client.CustomObjectsApi(installed.api)

    def refused(workload_name: str, patch: dict[str, Any]) -> str:
        with pytest.raises(client.ApiException) as caught:
            as_operator.patch_namespaced_custom_object(
                queueing.KUEUE_GROUP,
                queueing.KUEUE_VERSION,
                namespace,
                "workloads",
                workload_name,
                patch,
            )
        assert f"ValidatingAdmissionPolicy '{installed.policy}'" in str(caught.value.body)
        return str(caught.value.body)

    def active() -> Any:
        found = custom.get_namespaced_custom_object(
            queueing.KUEUE_GROUP, queueing.KUEUE_VERSION, namespace, "workloads", workload
        )
        return found["spec"].get("active")

    # Kube.set_workload_active, both ways: admitted.
    writes = kube.Kube(installed.api)
    writes.set_workload_active(namespace, workload, False)
    assert active() is False
    writes.set_workload_active(namespace, workload, True)
    assert active() is True
    # Anything else of a Workload, or any Workload not a Job's: refused.
    but_active = "nothing of a Workload but its spec.active"
    assert but_active in refused(workload, {"spec": {"queueName": "team-b"}})
    assert but_active in refused(workload, {"spec": {"active": False, "queueName": "team-b"}})
    assert but_active in refused(workload, {"metadata": {"labels": {"team": "b"}}})
    assert but_active in refused(workload, {"metadata": {"ownerReferences": None}})
    assert "only the Workloads of Jobs" in refused(
        standalone["metadata"]["name"], {"spec": {"active": False}}
    )
    assert active() is True

    # RBAC: list, watch and patch; nothing else.
    operator_kubectl = dataclasses.replace(cluster, kubeconfig=installed.kubeconfig).kubectl

    def can(verb: str) -> bool:
        answer = operator_kubectl("auth", "can-i", verb, WORKLOADS, "-n", namespace, check=False)
        return answer.stdout.strip() == "yes"

    assert [verb for verb in ("list", "watch", "patch") if not can(verb)] == []
    assert [v for v in ("get", "create", "update", "delete", "deletecollection") if can(v)] == []


def test_the_operator_runs_its_videojobs_with_the_policy_in_force(
    cluster: Cluster, namespace: str, installed: Installed, tmp_path: Path
) -> None:
    as_operator = dataclasses.replace(cluster, kubeconfig=installed.kubeconfig)
    operator = Operator(as_operator, tmp_path, installed.configuration)
    batch = client.BatchV1Api(cluster.api)

    def videojob(name: str, spec: dict[str, Any]) -> None:
        cluster.apply(
            {
                "apiVersion": "vidop.io/v1alpha1",
                "kind": "VideoJob",
                "metadata": {"name": name},
                "spec": {"prompt": "a cat", **spec},
            },
            namespace,
        )

    def job(name: str) -> Any:
        try:
            return batch.read_namespaced_job(name, namespace)
        except client.ApiException as error:
            if error.status == 404:
                return None
            raise

    operator.start()
    try:
        # Succeeds: every create, status patch, Event and the finalizer.
        videojob("fine", {})
        wait_for_phase(cluster, namespace, "fine", "Succeeded")
        # A failing stage: its Job is kept longer (the TTL patch).
        fails = {"podAnnotations": {"kwok.vidop.io/exit-code": "1"}, "backoffLimit": 0}
        videojob("fails", {"stages": {"script_gen": fails}})
        wait_for_phase(cluster, namespace, "fails", "Failed")
        wait_until(
            "the failed Job's longer TTL",
            lambda: job("fails-script-gen").spec.ttl_seconds_after_finished == FAILED_TTL,
        )
        # An image that cannot be pulled: its Job is ended (the end patch).
        stuck = {"podAnnotations": {"kwok.vidop.io/waiting-reason": "ErrImagePull"}}
        videojob("stuck", {"stages": {"script_gen": stuck}})
        wait_for_phase(cluster, namespace, "stuck", "Failed", timeout=PULL_LIMIT + 40)
        ended = job("stuck-script-gen")
        assert ended.spec.active_deadline_seconds == 1
        assert ended.metadata.annotations[naming.ENDED_ANNOTATION].startswith("ErrImagePull")
        # Suspended and resumed while a stage runs (the suspend patches).
        slow = {"podAnnotations": {"kwok.vidop.io/run-time": "30s"}}
        videojob("paused", {"stages": {"script_gen": slow}})
        wait_until("the stage Job", lambda: job("paused-script-gen"))
        for suspend in (True, False):
            patch = json.dumps({"spec": {"suspend": suspend}})
            cluster.kubectl("patch", "vj", "paused", "-n", namespace, "--type=merge", "-p", patch)
            wait_until(
                f"the Job's suspend to be {suspend}",
                lambda wanted=suspend: job("paused-script-gen").spec.suspend is wanted,
            )
        # Deleted (artifactRetention delete): the stages still running are
        # suspended, each gets its cleanup Job, then loses the finalizer.
        cluster.kubectl("delete", "vj", "--all", "-n", namespace, "--wait=false")
        wait_until(
            "the VideoJobs gone",
            lambda: (
                not client.CustomObjectsApi(cluster.api)
                .list_namespaced_custom_object("vidop.io", "v1alpha1", namespace, "videojobs")
                .get("items")
            ),
        )
        cleanups = batch.list_namespaced_job(
            namespace, label_selector=f"{naming.CLEANUP_LABEL}=true"
        ).items
        assert sorted(j.metadata.labels[naming.VIDEOJOB_LABEL] for j in cleanups) == [
            "fails",
            "fine",
            "paused",
            "stuck",
        ]
    finally:
        operator.stop()
    log = operator.log.read_text()
    assert "ValidatingAdmissionPolicy" not in log and "denied request" not in log, log


@pytest.mark.parametrize(
    ("values", "policy", "roles"),
    [
        ({}, True, True),
        ({"admissionPolicy": {"enabled": False}}, False, True),
        ({"rbac": {"aggregateToDefaultRoles": False}}, True, False),
    ],
)
def test_the_policy_and_the_tenant_roles_are_rendered_unless_turned_off(
    cluster: Cluster, values: dict[str, Any], policy: bool, roles: bool
) -> None:
    documents = render_chart(cluster.bin_dir, namespace="media", values=values)
    policies = [d for d in documents if d["kind"] == "ValidatingAdmissionPolicy"]
    bindings = [d for d in documents if d["kind"] == "ValidatingAdmissionPolicyBinding"]
    aggregated = sorted(
        d["metadata"]["name"]
        for d in documents
        if d["kind"] == "ClusterRole" and d["metadata"]["name"] != "vidop-vid-operator"
    )

    assert len(policies) == len(bindings) == int(policy)
    if policy:
        (condition,) = policies[0]["spec"]["matchConditions"]
        expected = "'system:serviceaccount:media:vidop-vid-operator'"
        assert condition["expression"] == f"request.userInfo.username == {expected}"
        assert bindings[0]["spec"]["validationActions"] == ["Deny"]
        assert bindings[0]["spec"]["policyName"] == policies[0]["metadata"]["name"]
    assert aggregated == (["vidop-vid-operator-edit", "vidop-vid-operator-view"] if roles else [])


@pytest.mark.parametrize("kueue", [False, True])
def test_the_policy_matches_workloads_only_with_kueue(cluster: Cluster, kueue: bool) -> None:
    values = {"queueing": {"kueue": {"enabled": kueue}}}
    (policy,) = [
        d
        for d in render_chart(cluster.bin_dir, values=values)
        if d["kind"] == "ValidatingAdmissionPolicy"
    ]
    matched = {
        (group, resource, tuple(rule["operations"]))
        for rule in policy["spec"]["matchConstraints"]["resourceRules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    messages = " ".join(v["message"] for v in policy["spec"]["validations"])

    assert (("kueue.x-k8s.io", "workloads", ("UPDATE",)) in matched) is kueue
    assert ("Workload" in messages) is kueue
