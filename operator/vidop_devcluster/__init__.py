"""A real Kubernetes control plane on loopback for vid-operator's tests and demo.

``python -m vidop_devcluster up|down|status`` (``make cluster-up``)
and the pytest fixtures share :class:`DevCluster`.
"""

from vidop_devcluster.cluster import ClusterError, DevCluster, built_images, tools_bin_dir

__all__ = ["ClusterError", "DevCluster", "built_images", "tools_bin_dir"]
