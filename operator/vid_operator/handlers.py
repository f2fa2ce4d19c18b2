"""kopf's wiring: settings, the indexes, and events into the controller.

Loaded by :mod:`vid_operator.main` (``kopf run``). Nothing here decides or
remembers: every handler hands its event to the
:class:`~vid_operator.runtime.controller.Controller` made at start-up, with
the indexes (kopf writes them; the controller only reads them).

Only ``on.event`` handlers are used (and the controller's own resync loop,
not a kopf timer), so kopf writes nothing of its own to the VideoJobs (no
progress annotations, no finalizers): deleting a VideoJob is never blocked
by the operator.
"""

from __future__ import annotations

from typing import Any

import kopf
import structlog

from vid_operator import config, naming, status
from vid_operator.api import models
from vid_operator.kube import Kube, api_client
from vid_operator.runtime.controller import Controller, Indexes

log = structlog.get_logger("vid_operator")

OWNED = {naming.MANAGED_BY_LABEL: naming.MANAGED_BY}
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


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
    selector = f"{naming.MANAGED_BY_LABEL}={naming.MANAGED_BY}"
    settings.watching.label_selectors["batch", "jobs"] = selector
    settings.watching.label_selectors["", "pods"] = selector
    controller = Controller(config.load(), Kube(api_client()))
    controller.start()
    memo["controller"] = controller


@kopf.on.cleanup()
async def stop(memo: Any, **_: Any) -> None:
    controller: Controller = memo["controller"]
    await controller.stop()


def _controller_of(meta: kopf.Meta) -> tuple[str, str] | None:
    """(name, uid) of the VideoJob that controls an object, if any."""
    for reference in meta.get("ownerReferences") or []:
        if reference.get("kind") == models.KIND and reference.get("controller"):
            return str(reference["name"]), str(reference["uid"])
    return None


def _controller(memo: Any, indexes: dict[str, Any]) -> Controller:
    controller: Controller = memo["controller"]
    controller.use(
        Indexes(
            jobs=indexes["stage_jobs"], owners=indexes["job_owners"], pods=indexes["stage_pods"]
        )
    )
    return controller


# Indexes, one per lookup. kopf calls each on every event of its kind, and one
# that raised would fail every event of that object: they call only what
# cannot raise (status.observe_*, which read a stage's summary with bounds).


@kopf.index("batch", "v1", "jobs", labels=OWNED)
def stage_jobs(meta: kopf.Meta, body: kopf.Body, **_: Any) -> Any:
    """VideoJob uid -> (stage, its Job). By the owner's uid: a new VideoJob of
    an old one's name must not adopt the old one's Jobs while the garbage
    collector removes them."""
    owner, stage = _controller_of(meta), meta.get("labels", {}).get(naming.STAGE_LABEL)
    if owner is None or stage is None:
        return None
    return {owner[1]: (stage, status.observe_job(body))}


@kopf.index("batch", "v1", "jobs", labels=OWNED)
def job_owners(namespace: str | None, name: str, meta: kopf.Meta, **_: Any) -> Any:
    """(namespace, Job name) -> its VideoJob's uid: where a pod's event leads."""
    owner = _controller_of(meta)
    return None if owner is None else {(namespace, name): owner[1]}


@kopf.index("", "v1", "pods", labels=OWNED)
def stage_pods(namespace: str | None, meta: kopf.Meta, body: kopf.Body, **_: Any) -> Any:
    """(namespace, Job name) -> (creationTimestamp, pod) of each of its pods."""
    job = meta.get("labels", {}).get(JOB_NAME_LABEL)
    if job is None:
        return None
    return {(namespace, job): (meta.get("creationTimestamp", ""), status.observe_pod(body))}


@kopf.on.event(models.GROUP, models.VERSION, models.PLURAL)
async def videojob_changed(type: str, body: kopf.Body, memo: Any, **indexes: Any) -> None:
    await _controller(memo, indexes).videojob_event(type, body)


@kopf.on.event("batch", "v1", "jobs", labels=OWNED)
async def job_changed(
    type: str, name: str, meta: kopf.Meta, body: kopf.Body, memo: Any, **indexes: Any
) -> None:
    owner = _controller_of(meta)
    if owner is not None:
        await _controller(memo, indexes).job_event(type, name, owner, body)


@kopf.on.event("", "v1", "pods", labels=OWNED)
async def pod_changed(
    type: str, name: str, meta: kopf.Meta, body: kopf.Body, memo: Any, **indexes: Any
) -> None:
    job = meta.get("labels", {}).get(JOB_NAME_LABEL)
    if job is not None:
        await _controller(memo, indexes).pod_event(type, name, job, body)
