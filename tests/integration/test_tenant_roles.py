"""Tenant RBAC from the chart: its ClusterRoles aggregate into the built-in
edit, admin and view roles, so a team bound to edit in its namespace manages
VideoJobs and VideoPipelines there, one bound to view reads them, and neither
writes a VideoJob's status (it holds the pinned pipeline) nor touches the
operator's own objects. On the real API server, whose controller-manager runs
the clusterrole-aggregation controller."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.support import Cluster, get_videojob, render_chart, wait_until

pytestmark = pytest.mark.cluster


@pytest.fixture
def release(cluster: Cluster, namespace: str) -> Iterator[str]:
    """The chart's CRDs and aggregated ClusterRoles of a release installed in
    ``namespace``, with a stand-in for each of the operator's own objects
    there (Deployment, ConfigMap, leader Lease); removed afterwards."""
    name = f"t{namespace[-6:]}"
    documents = render_chart(cluster.bin_dir, release=name, namespace=namespace)
    aggregated = [
        d
        for d in documents
        if d["kind"] == "ClusterRole"
        and any(
            k.startswith("rbac.authorization.k8s.io/aggregate-to-") for k in d["metadata"]["labels"]
        )
    ]
    crds = [d for d in documents if d["kind"] == "CustomResourceDefinition"]
    own = [d for d in documents if d["kind"] in ("ConfigMap", "Deployment")]
    for deployment in (d for d in own if d["kind"] == "Deployment"):
        deployment["spec"]["replicas"] = 0  # there to be reached for, not to run
    assert len(aggregated) == 2 and len(own) == 2
    wanted = [*crds, *aggregated, *own]
    cluster.apply(
        {"apiVersion": "v1", "kind": "List", "items": wanted},
        namespace,
        "--server-side",
        "--force-conflicts",
    )
    client.CoordinationV1Api(cluster.api).create_namespaced_lease(
        namespace, {"metadata": {"name": f"{name}-vid-operator"}}
    )
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/videojobs.vidop.io", "--timeout=30s"
    )
    try:
        yield name
    finally:
        cluster.kubectl(
            "delete", "clusterrole", "-l", f"app.kubernetes.io/instance={name}", "--wait=false"
        )


def test_edit_manages_videojobs_view_reads_them_and_neither_reaches_the_operator(
    cluster: Cluster, namespace: str, release: str
) -> None:
    core = client.CoreV1Api(cluster.api)
    team = core.create_namespace(
        {"metadata": {"generateName": "team-", "labels": {"vidop.io/test": "true"}}}
    ).metadata.name
    try:
        rbac = client.RbacAuthorizationV1Api(cluster.api)
        for user, role in (("alice", "edit"), ("bob", "view")):
            rbac.create_namespaced_role_binding(
                team,
                {
                    "metadata": {"name": f"{user}-{role}"},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": role,
                    },
                    "subjects": [
                        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
                    ],
                },
            )

        def can(user: str, *args: str) -> bool:
            result = cluster.kubectl("auth", "can-i", f"--as={user}", *args, check=False)
            return result.stdout.strip() == "yes"

        wait_until(
            "the aggregation into edit and view",
            lambda: (
                can("alice", "create", "videojobs.vidop.io", "-n", team)
                and can("bob", "list", "videopipelines.vidop.io", "-n", team)
            ),
            timeout=30,
        )
        # The built-in admin role gets them too.
        admin = rbac.read_cluster_role("admin")
        assert any(
            "videojobs" in (rule.resources or []) and "delete" in rule.verbs for rule in admin.rules
        )

        # alice applies a VideoJob and a VideoPipeline as a team would.
        videojob = {
            "apiVersion": "vidop.io/v1alpha1",
            "kind": "VideoJob",
            "metadata": {"name": "cat", "namespace": team},
            "spec": {"prompt": "a cat", "suspend": True},
        }
        pipeline = {
            "apiVersion": "vidop.io/v1alpha1",
            "kind": "VideoPipeline",
            "metadata": {"name": "short", "namespace": team},
            "spec": {"stages": [{"name": "only", "image": "registry.example/only:1"}]},
        }
        for manifest in (videojob, pipeline):
            cluster.kubectl("apply", "--as=alice", "-f", "-", input=json.dumps(manifest))
        assert get_videojob(cluster, team, "cat") is not None
        for verb in ("get", "list", "watch", "update", "patch", "delete"):
            assert can("alice", verb, "videojobs.vidop.io", "-n", team)
            assert can("alice", verb, "videopipelines.vidop.io", "-n", team)
        # Not the status: only the operator writes it (the pinned pipeline).
        for resource in ("videojobs.vidop.io", "videopipelines.vidop.io"):
            for verb in ("update", "patch"):
                assert not can("alice", verb, resource, "--subresource=status", "-n", team)
        refused = cluster.kubectl(
            "patch",
            "--as=alice",
            "vj",
            "cat",
            "-n",
            team,
            "--subresource=status",
            "--type=merge",
            "-p",
            '{"status":{"phase":"Succeeded"}}',
            check=False,
        )
        assert refused.returncode != 0 and "forbidden" in refused.stderr

        # bob reads, and writes nothing.
        assert cluster.kubectl("get", "--as=bob", "vj", "cat", "-n", team).returncode == 0
        for verb in ("create", "update", "patch", "delete"):
            assert not can("bob", verb, "videojobs.vidop.io", "-n", team)
            assert not can("bob", verb, "videopipelines.vidop.io", "-n", team)

        # Neither reaches the operator's own objects, in its namespace.
        operator = f"{release}-vid-operator"
        for user in ("alice", "bob"):
            for verb in ("get", "patch", "delete"):
                for resource in ("deployments.apps", "configmaps", "leases.coordination.k8s.io"):
                    assert not can(user, verb, f"{resource}/{operator}", "-n", namespace)
            assert not can(user, "create", "jobs.batch", "-n", namespace)
            assert not can(user, "list", "videojobs.vidop.io", "--all-namespaces")
    finally:
        core.delete_namespace(team)
