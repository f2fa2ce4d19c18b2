"""A real Kubernetes control plane on loopback for vid-operator's tests and demo.

``python -m vid_operator.devcluster up|down|status`` (``make cluster-up``)
and the pytest fixtures share :class:`DevCluster`.
"""

from vid_operator.devcluster.cluster import ClusterError, DevCluster, tools_bin_dir

__all__ = ["ClusterError", "DevCluster", "tools_bin_dir"]
