"""kopf's wiring: settings, and events into the controller.

Loaded by :mod:`vid_operator.main` (``kopf run``). Nothing here decides or
remembers: every handler hands its event to the
:class:`~vid_operator.runtime.controller.Controller` made at start-up. No kopf
indexes either: kopf holds every handler back until each listed object of an
indexed kind is indexed, which is quadratic in the objects that exist; the
controller keeps its own views and lists the stage Jobs, pods and
VideoPipelines once at start-up instead (:meth:`~vid_operator.runtime.controller.Controller.load`).

Only ``on.event`` handlers are used (and the controller's own resync loop,
not a kopf timer), so kopf writes nothing of its own to the VideoJobs (no
progress annotations, no finalizers): deleting a VideoJob is never blocked
by kopf. The one finalizer there is, the controller's own, is opt-in
(``artifactRetention.policy: delete``).
"""

from __future__ import annotations

from typing import Any

import kopf
import structlog

from vid_operator import config, naming, queueing
from vid_operator.api import models, pipelines
from vid_operator.kube import Kube, api_client
from vid_operator.runtime.controller import Controller

log = structlog.get_logger("vid_operator")

OWNED = {naming.MANAGED_BY_LABEL: naming.MANAGED_BY}
OWNED_SELECTOR = f"{naming.MANAGED_BY_LABEL}={naming.MANAGED_BY}"


class _NoDiffBase(kopf.DiffBaseStorage):
    """No diff base. kopf deep-copies every object it receives to compare it
    with the last handled state, for change-detecting handlers (on.create,
    on.update, on.field). There are none here, only on.event and indexes, and
    the copies (of Jobs and pods with their managedFields) were a fifth of the
    operator's CPU time."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    # kopf would otherwise turn its own log lines into Events: extra writes.
    settings.posting.enabled = False
    settings.persistence.diffbase_storage = _NoDiffBase()
    # No watching of CRDs and namespaces for new resources: the resources are
    # known, and the chart's RBAC grants nothing of the kind.
    settings.scanning.disabled = True
    # Watch only our own Jobs and pods, filtered by the API server: the labels
    # on the handlers alone filter client-side, after every pod in the
    # cluster has been sent to us.
    settings.watching.label_selectors["batch", "jobs"] = OWNED_SELECTOR
    settings.watching.label_selectors["", "pods"] = OWNED_SELECTOR
    controller = Controller(config.load(), Kube(api_client()))
    # Start-up handlers finish before kopf starts watching.
    await controller.load(OWNED_SELECTOR)
    controller.start()
    memo["controller"] = controller


@kopf.on.cleanup()
async def stop(memo: Any, **_: Any) -> None:
    controller: Controller = memo["controller"]
    await controller.stop()


@kopf.on.event(models.GROUP, models.VERSION, models.PLURAL)
async def videojob_changed(type: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    await memo["controller"].videojob_event(type, body)


@kopf.on.event(models.GROUP, models.VERSION, pipelines.PLURAL)
async def pipeline_changed(type: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    await memo["controller"].pipeline_event(type, body)


@kopf.on.event("batch", "v1", "jobs", labels=OWNED)
async def job_changed(type: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    await memo["controller"].job_event(type, body)


@kopf.on.event("", "v1", "pods", labels=OWNED)
async def pod_changed(type: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    await memo["controller"].pod_event(type, body)


async def workload_changed(type: str, body: kopf.Body, memo: Any, **_: Any) -> None:
    await memo["controller"].workload_event(type, body)


# Kueue's Workloads are watched only where the configuration says Kueue runs:
# elsewhere their API does not exist, and the chart grants no right to it.
if config.load().queueing.kueue.enabled:
    kopf.on.event(queueing.KUEUE_GROUP, queueing.KUEUE_VERSION, "workloads")(workload_changed)
