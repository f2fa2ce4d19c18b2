"""The progress token on the real API server: the chart's ClusterRole,
ServiceAccount, RoleBinding and ValidatingAdmissionPolicy for in-stage
progress, and a token exactly as the kubelet projects it into a stage pod
(the TokenRequest API, bound to the pod). With it a stage patches its own
pod's progress annotation, and nothing else; once the pod is gone the token
is worthless. The stage side's reporter (vidop_stages.progress) delivers its
annotation with such a token, also from a pod of the local node, which
projects the token as a kubelet does."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml
from kubernetes import client

from tests.support import (
    Cluster,
    LocalNodeProcess,
    ProgressInstall,
    stage_progress_installed,
    wait_until,
)
from vid_operator import contract
from vidop_stages.progress import ProgressReporter, target_from_environment

pytestmark = pytest.mark.cluster


@pytest.fixture
def installed(cluster: Cluster, namespace: str) -> Iterator[ProgressInstall]:
    """The release's progress objects in force in the test's namespace."""
    with stage_progress_installed(cluster, namespace) as install:
        yield install


def _pod(cluster: Cluster, installed: ProgressInstall, name: str) -> dict[str, Any]:
    """A stage-like pod as the progress ServiceAccount that stays Pending
    (no node matches it): the token needs the pod, not a running one."""
    created = client.CoreV1Api(cluster.api).create_namespaced_pod(
        installed.namespace,
        {
            "metadata": {"name": name, "labels": {"app": "stage"}},
            "spec": {
                "serviceAccountName": installed.account,
                "automountServiceAccountToken": False,
                "nodeSelector": {"vidop.io/nowhere": "true"},
                "containers": [{"name": "stage", "image": "registry.example/stage:1"}],
            },
        },
    )
    plain: dict[str, Any] = cluster.api.sanitize_for_serialization(created)
    return plain


def _pod_token(cluster: Cluster, pod: dict[str, Any]) -> str:
    """What the kubelet writes into the projected volume: a token of the
    pod's ServiceAccount, bound to the pod, for PROGRESS_TOKEN_SECONDS."""
    metadata = pod["metadata"]
    answer = client.CoreV1Api(cluster.api).create_namespaced_service_account_token(
        pod["spec"]["serviceAccountName"],
        metadata["namespace"],
        {
            "spec": {
                "expirationSeconds": contract.PROGRESS_TOKEN_SECONDS,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": metadata["name"],
                    "uid": metadata["uid"],
                },
            }
        },
    )
    token: str = answer.status.token
    return token


def _server_and_ca(cluster: Cluster) -> tuple[str, Path]:
    kubeconfig = yaml.safe_load(cluster.kubeconfig.read_text())
    (entry,) = kubeconfig["clusters"]
    return entry["cluster"]["server"], Path(entry["cluster"]["certificate-authority"])


def _as_token(cluster: Cluster, token: str) -> client.ApiClient:
    server, ca = _server_and_ca(cluster)
    configuration = client.Configuration()
    configuration.host = server
    configuration.ssl_ca_cert = str(ca)
    configuration.api_key = {"authorization": token}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    return client.ApiClient(configuration)


def _progress_patch(value: str) -> dict[str, Any]:
    return {"metadata": {"annotations": {contract.PROGRESS_ANNOTATION: value}}}


def _answer(call: Any) -> tuple[int, str]:
    """The HTTP status of ``call`` and the API server's message (200 and
    nothing when it succeeds)."""
    try:
        call()
    except client.ApiException as error:
        return error.status, str(error.body)
    return 200, ""


def _status(call: Any) -> tuple[int, str]:
    """The HTTP status of a refused call and the API server's message."""
    status, body = _answer(call)
    assert status >= 400, "admitted"
    return status, body


def test_the_token_patches_its_own_pods_progress_and_nothing_else(
    cluster: Cluster, installed: ProgressInstall
) -> None:
    namespace = installed.namespace
    admin = client.CoreV1Api(cluster.api)
    own = _pod(cluster, installed, "stage-a")
    _pod(cluster, installed, "stage-b")
    stage = _as_token(cluster, _pod_token(cluster, own))
    core = client.CoreV1Api(stage)

    def refusal(patch: dict[str, Any], pod: str = "stage-a") -> str:
        status, body = _status(lambda: core.patch_namespaced_pod(pod, namespace, patch))
        assert status == 403, body
        assert f"ValidatingAdmissionPolicy '{installed.policy}'" in body, body
        return body

    # A new policy (and RBAC) takes a moment to be in force: until a patch
    # that RBAC allows is refused by the policy.
    wait_until(
        "the progress policy to be in force",
        lambda: (
            f"'{installed.policy}'"
            in _answer(
                lambda: core.patch_namespaced_pod("stage-b", namespace, _progress_patch("{}"))
            )[1]
        ),
        timeout=30,
    )

    # Its own pod's progress: admitted, and there.
    value = contract.encode_progress(42, "rendering scene 3 of 7")
    core.patch_namespaced_pod("stage-a", namespace, _progress_patch(value))
    annotations = admin.read_namespaced_pod("stage-a", namespace).metadata.annotations
    assert annotations[contract.PROGRESS_ANNOTATION] == value
    # As long as the contract allows, not a byte more.
    longest = "x" * contract.MAX_PROGRESS_BYTES
    core.patch_namespaced_pod("stage-a", namespace, _progress_patch(longest))
    assert "at most 256 bytes" in refusal(_progress_patch(longest + "x"))
    assert "at most 256 bytes" in refusal(_progress_patch("é" * 129))

    # Another pod of the same ServiceAccount in the same namespace: no.
    assert "the pod its token is bound to" in refusal(_progress_patch(value), "stage-b")
    # Anything but that annotation of its own pod: no.
    but = "nothing of its pod but the annotation vidop.io/progress"
    assert but in refusal({"metadata": {"annotations": {"example.com/other": "x"}}})
    assert but in refusal(
        {"metadata": {"annotations": {contract.PROGRESS_ANNOTATION: value, "example.com/x": "1"}}}
    )
    assert but in refusal({"metadata": {"labels": {"app": "something-else"}}})
    assert but in refusal({"spec": {"activeDeadlineSeconds": 5}})
    assert but in refusal(
        {"spec": {"containers": [{"name": "stage", "image": "registry.example/evil:1"}]}}
    )
    assert but in refusal({"metadata": {"finalizers": ["example.com/keep"]}})
    seen = admin.read_namespaced_pod("stage-a", namespace)
    assert seen.metadata.labels == {"app": "stage"}
    assert seen.spec.containers[0].image == "registry.example/stage:1"
    assert set(seen.metadata.annotations) == {contract.PROGRESS_ANNOTATION}

    # RBAC: patch pods, nothing else; not even reading its own pod.
    batch = client.BatchV1Api(stage)
    job = {
        "metadata": {"name": "escape"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "registry.example/evil:1"}],
                }
            }
        },
    }
    denied = {
        "get its pod": lambda: core.read_namespaced_pod("stage-a", namespace),
        "list pods": lambda: core.list_namespaced_pod(namespace),
        "delete a pod": lambda: core.delete_namespaced_pod("stage-b", namespace),
        "create a pod": lambda: core.create_namespaced_pod(
            namespace, {"metadata": {"name": "x"}, "spec": job["spec"]["template"]["spec"]}
        ),
        "read a Secret": lambda: core.read_namespaced_secret("anything", namespace),
        "list Secrets": lambda: core.list_namespaced_secret(namespace),
        "create a Job": lambda: batch.create_namespaced_job(namespace, job),
        "patch its pod's status": lambda: core.patch_namespaced_pod_status(
            "stage-a", namespace, {"status": {"phase": "Succeeded"}}
        ),
    }
    for what, call in denied.items():
        status, body = _status(call)
        assert status == 403, (what, body)
    assert admin.read_namespaced_pod("stage-b", namespace).metadata.deletion_timestamp is None
    stage.close()


def test_the_policy_refuses_every_other_write_even_with_wider_rbac(
    cluster: Cluster, installed: ProgressInstall
) -> None:
    """Defence in depth: were the ServiceAccount granted more (a platform's
    mistake), the policy still admits only its progress patch."""
    namespace = installed.namespace
    cluster.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "too-much"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "edit",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": installed.account, "namespace": namespace}
            ],
        },
        namespace,
    )
    own = _pod(cluster, installed, "stage-a")
    _pod(cluster, installed, "stage-b")
    stage = _as_token(cluster, _pod_token(cluster, own))
    core = client.CoreV1Api(stage)
    configmap = {"metadata": {"name": "planted"}, "data": {"x": "y"}}

    def policy_refusal(call: Any) -> str:
        status, body = _status(call)
        assert status == 403, body
        assert f"ValidatingAdmissionPolicy '{installed.policy}'" in body, body
        return body

    only = "may only patch the annotation vidop.io/progress of its own pod"
    wait_until(
        "the progress policy to be in force",
        lambda: (
            only
            in _answer(
                lambda: core.create_namespaced_config_map(namespace, configmap, dry_run="All")
            )[1]
        ),
        timeout=30,
    )
    # Reads are RBAC's business: edit reads pods.
    assert core.read_namespaced_pod("stage-b", namespace).metadata.name == "stage-b"
    assert only in policy_refusal(lambda: core.delete_namespaced_pod("stage-b", namespace))
    assert only in policy_refusal(
        lambda: core.delete_collection_namespaced_pod(namespace, label_selector="app=stage")
    )
    assert only in policy_refusal(
        lambda: core.create_namespaced_pod(
            namespace,
            {
                "metadata": {"name": "x"},
                "spec": {"containers": [{"name": "c", "image": "registry.example/evil:1"}]},
            },
        )
    )
    assert only in policy_refusal(
        lambda: core.create_namespaced_pod_eviction(
            "stage-b", namespace, {"metadata": {"name": "stage-b", "namespace": namespace}}
        )
    )
    assert "bound to" in policy_refusal(
        lambda: core.patch_namespaced_pod(
            "stage-b", namespace, _progress_patch(contract.encode_progress(1))
        )
    )
    core.patch_namespaced_pod("stage-a", namespace, _progress_patch(contract.encode_progress(7)))
    stage.close()


def test_the_token_stops_working_once_its_pod_is_gone(
    cluster: Cluster, installed: ProgressInstall
) -> None:
    namespace = installed.namespace
    own = _pod(cluster, installed, "stage-a")
    stage = _as_token(cluster, _pod_token(cluster, own))
    core = client.CoreV1Api(stage)
    wait_until(
        "the progress RBAC to be in force",
        lambda: _progress_accepted(core, namespace, "stage-a"),
        timeout=30,
    )

    client.CoreV1Api(cluster.api).delete_namespaced_pod(
        "stage-a", namespace, grace_period_seconds=0
    )
    # A pod of the same name is another pod (another uid): still refused.
    _pod(cluster, installed, "stage-a")

    # The API server caches a token's authentication for a few seconds.
    wait_until(
        "the token to be refused as unauthenticated",
        lambda: (
            _answer(
                lambda: core.patch_namespaced_pod(
                    "stage-a", namespace, _progress_patch(contract.encode_progress(9))
                )
            )[0]
            == 401
        ),
        timeout=30,
    )
    stage.close()


def _progress_accepted(core: client.CoreV1Api, namespace: str, pod: str) -> bool:
    try:
        core.patch_namespaced_pod(pod, namespace, _progress_patch(contract.encode_progress(1)))
    except client.ApiException:
        return False
    return True


def test_the_stage_reporter_delivers_its_progress_with_the_projected_token(
    cluster: Cluster, installed: ProgressInstall, tmp_path: Path
) -> None:
    """The reporter as run_stage builds it, from the environment the operator
    gives a stage pod, with the token and CA files the kubelet writes; a
    fake clock stands in for the minimum interval."""
    namespace = installed.namespace
    own = _pod(cluster, installed, "stage-a")
    server, ca = _server_and_ca(cluster)
    token_file = tmp_path / contract.PROGRESS_TOKEN_PATH
    token_file.write_text(_pod_token(cluster, own))
    ca_file = tmp_path / contract.PROGRESS_CA_PATH
    ca_file.write_bytes(ca.read_bytes())
    target = target_from_environment(
        {
            contract.ENV_PROGRESS_TOKEN_FILE: str(token_file),
            contract.ENV_API_CA_FILE: str(ca_file),
            contract.ENV_API_SERVER: server,
            contract.ENV_POD_NAME: "stage-a",
            contract.ENV_JOB_NAMESPACE: namespace,
        }
    )
    assert target is not None
    wait_until(
        "the progress RBAC to be in force",
        lambda: _progress_accepted(
            client.CoreV1Api(_as_token(cluster, token_file.read_text())), namespace, "stage-a"
        ),
        timeout=30,
    )
    now = [0.0]
    report = ProgressReporter(target, structlog.get_logger("test"), clock=lambda: now[0])
    admin = client.CoreV1Api(cluster.api)

    def annotation() -> str | None:
        found = admin.read_namespaced_pod("stage-a", namespace).metadata.annotations or {}
        return found.get(contract.PROGRESS_ANNOTATION)

    report(10, "writing the script")
    landed = contract.read_progress(annotation())
    assert landed == contract.Progress(10, "writing the script")

    # The kubelet rotates the token: the reporter reads the file again.
    token_file.write_text(_pod_token(cluster, own))
    report(50, "too soon")
    assert contract.read_progress(annotation()) == landed
    now[0] += contract.PROGRESS_MIN_INTERVAL_SECONDS
    report(60, "scene 4 of 7")
    assert contract.read_progress(annotation()) == contract.Progress(60, "scene 4 of 7")

    # A token that no longer authenticates fails the report, not the stage.
    token_file.write_text("not-a-token")
    now[0] += contract.PROGRESS_MIN_INTERVAL_SECONDS
    report(70, "lost")
    assert contract.read_progress(annotation()) == contract.Progress(60, "scene 4 of 7")


REPORT_FROM_A_POD = """
import os, sys
import structlog
from vidop_stages.progress import ProgressReporter, target_from_environment
target = target_from_environment(os.environ)
if target is None:
    sys.exit(3)
ProgressReporter(target, structlog.get_logger())(55, "reported from the local node")
"""


def test_the_local_node_projects_the_token_a_stage_reports_with(
    cluster: Cluster, installed: ProgressInstall, local_node: LocalNodeProcess
) -> None:
    """The local node projects the progress volume as a kubelet does (a
    pod-bound token from the TokenRequest API, the cluster's CA from
    kube-root-ca.crt) and gives the pod the API server's address: a process
    there reports its progress with them alone."""
    namespace = installed.namespace
    progress_file = f"{contract.PROGRESS_DIR}/{contract.PROGRESS_TOKEN_PATH}"
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "stage-a"},
            "spec": {
                **local_node.placement(),
                "restartPolicy": "Never",
                "serviceAccountName": installed.account,
                "automountServiceAccountToken": False,
                "containers": [
                    {
                        "name": "stage",
                        "image": "registry.example/stage:1",
                        "command": [sys.executable, "-c", REPORT_FROM_A_POD],
                        "env": [
                            {
                                "name": contract.ENV_POD_NAME,
                                "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                            },
                            {"name": contract.ENV_JOB_NAMESPACE, "value": namespace},
                            {"name": contract.ENV_PROGRESS_TOKEN_FILE, "value": progress_file},
                            {
                                "name": contract.ENV_API_CA_FILE,
                                "value": f"{contract.PROGRESS_DIR}/{contract.PROGRESS_CA_PATH}",
                            },
                        ],
                        "volumeMounts": [
                            {
                                "name": contract.PROGRESS_VOLUME,
                                "mountPath": contract.PROGRESS_DIR,
                                "readOnly": True,
                            }
                        ],
                    }
                ],
                "volumes": [
                    {
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
                                        "items": [
                                            {
                                                "key": contract.PROGRESS_CA_PATH,
                                                "path": contract.PROGRESS_CA_PATH,
                                            }
                                        ],
                                    }
                                },
                            ]
                        },
                    }
                ],
            },
        },
    )

    def ended() -> Any:
        pod = core.read_namespaced_pod("stage-a", namespace)
        return pod if pod.status.phase in ("Succeeded", "Failed") else None

    pod = wait_until("the pod to end", ended, timeout=60)
    log = local_node.folder / "logs" / f"{namespace}_stage-a.log"
    assert pod.status.phase == "Succeeded", log.read_text() if log.exists() else pod.status
    assert contract.read_progress(
        (pod.metadata.annotations or {}).get(contract.PROGRESS_ANNOTATION)
    ) == contract.Progress(55, "reported from the local node")
