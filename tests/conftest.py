"""Fixtures shared by every test: the real control plane and a namespace per test.

The control plane starts once per session (:class:`DevCluster` in a temporary
folder), or, with ``VIDOP_USE_EXISTING_CLUSTER=1``, the one ``KUBECONFIG``
points at is used as it is (``make cluster-up`` then ``make test-integration``
saves the start-up on every run). When it cannot start, tests that need it
skip, unless ``VIDOP_REQUIRE_CLUSTER=1`` (set by ``.ci/run``): then they fail.

Kueue's manager runs only for the tests that ask for the ``kueue`` fixture: it
is added to the session's cluster the first time, and stopped at the end. The
real node (containerd and a kubelet, running the images ``hack/images.sh``
builds) likewise, for the tests that ask for ``real_node``.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.support import Cluster, LocalNodeProcess, RealNode, wait_until
from vidop_devcluster import ClusterError, DevCluster, built_images, realnode, tools_bin_dir
from vidop_devcluster.s3 import S3Server, S3ServerError


def _unavailable(what: str, reason: str) -> None:
    """Skip the test for want of ``what``; fail it under VIDOP_REQUIRE_CLUSTER=1."""
    if os.environ.get("VIDOP_REQUIRE_CLUSTER") == "1":
        pytest.fail(f"{what} is required (VIDOP_REQUIRE_CLUSTER=1) but {reason}", pytrace=False)
    pytest.skip(f"{what} is not available: {reason}")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if os.environ.get("VIDOP_USE_EXISTING_CLUSTER") == "1":
        kubeconfig = Path(os.environ.get("KUBECONFIG", ".cluster/kubeconfig")).resolve()
        if not kubeconfig.exists():
            _unavailable(
                "the control plane", f"VIDOP_USE_EXISTING_CLUSTER=1 and {kubeconfig} does not exist"
            )
        api = config.new_client_from_config(config_file=str(kubeconfig))
        yield Cluster(api, kubeconfig, tools_bin_dir(), None)
        api.close()
        return
    dev = DevCluster(tmp_path_factory.mktemp("cluster"), detach=False)
    started = time.monotonic()
    try:
        dev.up()
    except ClusterError as error:
        _unavailable("the control plane", str(error))
    print(f"\ncontrol plane up in {time.monotonic() - started:.1f} s ({dev.root})")
    api = dev.api_client()
    try:
        yield Cluster(api, dev.kubeconfig, dev.bin_dir, dev)
    finally:
        api.close()
        dev.down()


@pytest.fixture(scope="session")
def kueue(cluster: Cluster) -> Iterator[Cluster]:
    """The session's cluster with Kueue's manager running (``batch/job``
    integration, Jobs with the queue-name label only). Started here when the
    session started the cluster, and stopped at the end of the session. An
    existing cluster (``VIDOP_USE_EXISTING_CLUSTER=1``) must run it already
    (``make cluster-up KUEUE=1``): this fixture does not change it."""
    if cluster.dev is None:
        existing = DevCluster(cluster.kubeconfig.parent)
        if not existing.kueue_running():
            pytest.fail(
                f"VIDOP_USE_EXISTING_CLUSTER=1, but the cluster in {existing.root} does not run "
                "Kueue: start it with `make cluster-up KUEUE=1`",
                pytrace=False,
            )
        yield cluster
        return
    already_running = cluster.dev.kueue_running()
    started = time.monotonic()
    try:
        cluster.dev.start_kueue()
    except ClusterError as error:
        _unavailable("Kueue", str(error))
    print(f"\nKueue up in {time.monotonic() - started:.1f} s")
    try:
        yield cluster
    finally:
        if not already_running:
            cluster.dev.stop_kueue()


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, with its default ServiceAccount in place
    (pods cannot be created before the controller makes it)."""
    core = client.CoreV1Api(cluster.api)
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{slug}-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": name, "labels": {"vidop.io/test": "true"}}})

    def has_default_sa() -> bool:
        return any(
            sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items
        )

    wait_until(f"the default ServiceAccount in {name}", has_default_sa)
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def local_node(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalNodeProcess]:
    """The local node (one simulated GPU), for tests whose pods must really run."""
    node = LocalNodeProcess(cluster, tmp_path_factory.mktemp("local-node"))
    node.start()
    yield node
    node.stop()


@pytest.fixture(scope="session")
def real_node(cluster: Cluster, images: realnode.ImageArchive) -> Iterator[RealNode]:
    """A real node in the session's cluster (one simulated GPU), added the
    first time a test asks and stopped at the end of the session. Its images
    are built (or found) by ``hack/images.sh``. An existing cluster must run
    one already (``make cluster-up REAL_NODE=1``)."""
    if cluster.dev is None:
        running = DevCluster(cluster.kubeconfig.parent).running_node()
        if running is None:
            pytest.fail(
                "VIDOP_USE_EXISTING_CLUSTER=1, but that cluster has no real node: start it "
                "with `make cluster-up REAL_NODE=1`",
                pytrace=False,
            )
        yield RealNode(running[0], running[1].gateway)
        return
    shape = realnode.DEV_NODE
    started = time.monotonic()
    try:
        cluster.dev.start_node(shape, images)
    except ClusterError as error:
        _unavailable("the real node", str(error))
    running = cluster.dev.running_node()
    assert running is not None
    print(f"\nreal node up in {time.monotonic() - started:.1f} s (pods reach {running[1].gateway})")
    try:
        yield RealNode(shape, running[1].gateway)
    finally:
        cluster.dev.stop_node()


@pytest.fixture(scope="session")
def node_s3(real_node: RealNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server on the real node's bridge address, which stage
    containers reach (127.0.0.1 is their own loopback, not the host's)."""
    try:
        server = S3Server(tmp_path_factory.mktemp("node-s3"), host=real_node.gateway)
        server.start()
    except S3ServerError as error:
        _unavailable("the S3 server", str(error))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """The session's real S3 server (SeaweedFS on loopback). A test may stop
    and start it again: it comes back with the same endpoint, keys and data.
    When it cannot start, tests skip, or fail with VIDOP_REQUIRE_CLUSTER=1."""
    started = time.monotonic()
    try:
        server = S3Server(tmp_path_factory.mktemp("s3"))
        server.start()
    except S3ServerError as error:
        _unavailable("the S3 server", str(error))
    print(f"\nS3 server up in {time.monotonic() - started:.1f} s ({server.endpoint_url})")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3: S3Server, request: pytest.FixtureRequest) -> str:
    """A fresh bucket per test, named after the test."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{slug or 'bucket'}-{secrets.token_hex(3)}"
    s3.create_bucket(name)
    return name


@pytest.fixture(scope="session")
def images() -> realnode.ImageArchive:
    """The repository's images, built by hack/images.sh (``make images``), or
    found in podman's layer cache (seconds). Cold, the build takes about three
    minutes: a test module that uses this fixture needs a timeout that allows
    for it. Without root or podman, tests skip, or fail with
    VIDOP_REQUIRE_CLUSTER=1; so does a failed build."""
    if os.geteuid() != 0:
        _unavailable("an image build", "it takes root")
    missing = [tool for tool in ("podman", "mmdebstrap") if shutil.which(tool) is None]
    if missing:
        _unavailable("an image build", f"missing {', '.join(missing)} (hack/system-deps.sh)")
    started = time.monotonic()
    try:
        built = built_images()
    except ClusterError as error:
        _unavailable("an image build", str(error))
    print(f"\nimages ready in {time.monotonic() - started:.1f} s")
    return built
