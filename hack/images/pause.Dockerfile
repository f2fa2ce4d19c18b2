# The pod sandbox ("pause") image of the development cluster's real node:
# Kubernetes' own pause program (build/pause/linux/pause.c of the
# k8s.io/kubernetes module the control plane is built from), compiled static
# by hack/images.sh into the build context. containerd starts every pod with
# it (sandbox_image); nothing is pulled.
FROM scratch
COPY pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]
