# The operator image. `make images` builds it with podman (hack/images.sh),
# from the repository root: podman build -f Dockerfile -t ghcr.io/vid-operator/operator:0.1.0 .
# `make lint` checks this file with hadolint.
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
# The operator package alone: the stages and the development cluster are
# packages of their own, not copied here.
COPY operator/vid_operator ./operator/vid_operator
# Bytecode is compiled here: the chart runs the operator with a read-only root
# filesystem, where it could not be written later, and every start (a new
# leader included) would compile kopf and the kubernetes client again.
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11.11-slim-bookworm
# Same uid/gid as the chart's securityContext.
RUN groupadd --system --gid 10001 vidop \
 && useradd --system --uid 10001 --gid vidop --no-create-home --shell /usr/sbin/nologin vidop
COPY --from=build /install /usr/local
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["vid-operator"]
