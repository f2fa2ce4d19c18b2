"""vid-operator: runs video-generation pipelines as one Kubernetes Job per stage."""

__version__ = "0.1.0"
