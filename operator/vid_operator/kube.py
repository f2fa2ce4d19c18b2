"""The thin layer that talks to the Kubernetes API for the reconciler.

Called by :mod:`vid_operator.runtime.controller`, from worker threads (the
client blocks). Every write the operator makes goes through here, so the count per VideoJob
is easy to read off: one create per stage Job, one status patch per change
the user can see, an Event for each failure, and a suspend patch per Job when
the user flips ``spec.suspend``, a VideoPipeline's status when its verdict
changes; and only where a stage fails in those ways: an end patch per stage
Job the operator ends (a limit, an OOM kill), one create per OOM successor
or retried stage; and only under ``artifactRetention.policy: delete``: the
finalizer's patches and the cleanup Job's create. Reads come from the
watches, except the one listing of stage Jobs, pods and VideoPipelines at
start-up (:meth:`Kube.list_owned`) and the FailedCreate Events of a stage Job
that has no pod
(:meth:`Kube.pod_creation_refusal`). Each request is counted
(:class:`CountedApiClient`).
"""

from __future__ import annotations

import datetime
import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import structlog
from kubernetes import client, config
from kubernetes.client import rest
from kubernetes.client.exceptions import ApiException

from vid_operator import metrics, naming, queueing
from vid_operator.api import models, pipelines

log = structlog.get_logger("vid_operator")

_BAD_REQUEST = 400
_CONFLICT = 409
_UNPROCESSABLE = 422
# No call may hang a reconcile (and its VideoJob's lock) for good.
_TIMEOUT_SECONDS = 30
_PAGE = 500


class JobRejected(ValueError):
    """The API server refused a stage Job as invalid; retrying cannot help."""


class StatusRefused(ValueError):
    """The API server refused a status patch as malformed or invalid (400,
    422); the same patch again would be refused again."""


_NOT_FOUND = 404
_FORBIDDEN = 403


def request_labels(method: str, url: str) -> tuple[str, str]:
    """The verb and resource of a request, as the API server's audit log
    names them: ``list``/``get``/``create``/``patch``/``delete``, and
    ``jobs``, ``videojobs/status``, ... (never an object's name)."""
    parts = urllib.parse.urlsplit(url).path.strip("/").split("/")
    # /api/v1/... or /apis/GROUP/VERSION/..., then namespaces/NS/ if namespaced.
    rest_of = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if rest_of[:1] == ["namespaces"] and len(rest_of) > 2:
        rest_of = rest_of[2:]
    resource = "/".join([rest_of[0], *rest_of[2:3]]) if rest_of else "?"
    named = len(rest_of) > 1
    verb = {
        "GET": "get" if named else "list",
        "POST": "create",
        "PATCH": "patch",
        "PUT": "update",
        "DELETE": "delete",
    }.get(method.upper(), method.lower())
    return verb, resource


class CountedApiClient(client.ApiClient):
    """The API client with every request counted in
    ``vidop_api_requests_total``: by the generated methods and by
    :meth:`Kube._send_json` alike, all of which send through ``call_api``."""

    def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> rest.RESTResponse:
        verb, resource = request_labels(method, url)
        try:
            response: rest.RESTResponse = super().call_api(method, url, *args, **kwargs)
        except ApiException as error:
            metrics.api_request(verb, resource, str(error.status or "<error>"))
            raise
        except Exception:
            metrics.api_request(verb, resource, "<error>")  # no answer: unreachable, timed out
            raise
        metrics.api_request(verb, resource, str(response.status))
        return response


def api_client() -> client.ApiClient:
    """In-cluster credentials when running in a pod, else the local kubeconfig."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return CountedApiClient()


def _status_message(error: ApiException) -> str:
    """The API server's own explanation of a refusal (a metav1.Status message)."""
    try:
        return str(json.loads(error.body or "{}").get("message") or error.reason)
    except ValueError:
        return str(error.reason)


class Kube:
    """Writes to the API, each one idempotent."""

    def __init__(self, api: client.ApiClient) -> None:
        self._batch = client.BatchV1Api(api)
        self._custom = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)

    def _send_json(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        content_type: str = "application/json",
        query: list[tuple[str, str]] | None = None,
    ) -> dict[str, Any]:
        """One request with a JSON body, through the client's connection pool
        and credentials. The generated methods validate every argument with
        pydantic and pass a dict body through the model classes and back; on
        the two writes of every stage (Job create, status patch) that was a
        tenth of the operator's CPU. Errors raise ApiException as they do."""
        api = self._batch.api_client
        method, url, headers, _, _ = api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params={"Accept": "application/json", "Content-Type": content_type},
            auth_settings=["BearerToken"],
        )
        response = api.call_api(method, url, headers, body, _request_timeout=_TIMEOUT_SECONDS)
        data = response.read()
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        answer: dict[str, Any] = json.loads(data)
        return answer

    def list_owned(
        self, group_version: str, plural: str, namespace: str | None, selector: str
    ) -> Iterator[dict[str, Any]]:
        """Every object of a kind matching ``selector`` (in ``namespace``, or
        in all), a page of :data:`_PAGE` at a time so a large listing never
        sits in memory whole."""
        prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        path = f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"
        token = ""
        while True:
            query = [("labelSelector", selector), ("limit", str(_PAGE))]
            if token:
                query.append(("continue", token))
            page = self._send_json("GET", path, None, query=query)
            yield from page.get("items") or []
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return

    def create_job(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """Create a stage Job; None when it already exists (its name is deterministic)."""
        namespace = manifest["metadata"]["namespace"]
        try:
            return self._send_json("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", manifest)
        except ApiException as error:
            if error.status == _CONFLICT:
                return None
            if error.status == _FORBIDDEN and "NamespaceTerminating" in str(error.body):
                return None  # its VideoJob is going away with the namespace
            if error.status == _UNPROCESSABLE:
                raise JobRejected(_status_message(error)) from None
            raise

    def pod_creation_refusal(self, namespace: str, job_name: str) -> str | None:
        """Why the Job controller cannot create the Job's pod (a ResourceQuota,
        the namespace's Pod Security level, an admission webhook), from the
        newest of its FailedCreate Events; None when it has none."""
        selector = f"involvedObject.kind=Job,involvedObject.name={job_name},reason=FailedCreate"
        page = self._send_json(
            "GET",
            f"/api/v1/namespaces/{namespace}/events",
            None,
            query=[("fieldSelector", selector), ("limit", str(_PAGE))],
        )
        events = page.get("items") or []
        if not events:
            return None
        newest = max(events, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
        return str(newest.get("message") or "no reason given")

    def set_job_suspend(self, namespace: str, name: str, suspend: bool) -> None:
        try:
            self._batch.patch_namespaced_job(
                name, namespace, {"spec": {"suspend": suspend}}, _request_timeout=_TIMEOUT_SECONDS
            )
        except ApiException as error:
            if error.status != _NOT_FOUND:
                raise

    def set_workload_active(self, namespace: str, name: str, active: bool) -> None:
        """Stop (false) or requeue (true) a Kueue Workload: Kueue owns its
        Job's spec.suspend and would undo a change made there."""
        path = f"/apis/{queueing.KUEUE_GROUP}/{queueing.KUEUE_VERSION}/namespaces/{namespace}"
        try:
            self._send_json(
                "PATCH",
                f"{path}/workloads/{name}",
                {"spec": {"active": active}},
                content_type="application/merge-patch+json",
            )
        except ApiException as error:
            if error.status != _NOT_FOUND:
                raise

    def set_videojob_finalizers(
        self, namespace: str, name: str, finalizers: list[str], resource_version: str
    ) -> None:
        """Replace a VideoJob's finalizers, if it is still the version read
        (the resourceVersion is a precondition: 409 otherwise, so another
        controller's finalizer added meanwhile is never dropped)."""
        path = (
            f"/apis/{models.GROUP}/{models.VERSION}/namespaces/{namespace}/{models.PLURAL}/{name}"
        )
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}}
        try:
            self._send_json("PATCH", path, patch, "application/merge-patch+json")
        except ApiException as error:
            if error.status != _NOT_FOUND:  # gone already: nothing to hold
                raise

    def end_job(self, namespace: str, name: str, why: str) -> None:
        """Have the Job controller fail a stage Job now, saying why on it: its
        deadline becomes one second (the one field of a running Job that can
        end it), so its pods go and it finishes Failed, TTL and all."""
        try:
            self._send_json(
                "PATCH",
                f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}",
                {
                    "metadata": {"annotations": {naming.ENDED_ANNOTATION: why}},
                    "spec": {"activeDeadlineSeconds": 1},
                },
                "application/merge-patch+json",
            )
        except ApiException as error:
            if error.status != _NOT_FOUND:  # removed already: nothing to end
                raise

    def set_job_ttl(self, namespace: str, name: str, ttl: int | None) -> None:
        """Change a finished Job's ttlSecondsAfterFinished (None: no TTL)."""
        try:
            self._send_json(
                "PATCH",
                f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}",
                {"spec": {"ttlSecondsAfterFinished": ttl}},
                "application/merge-patch+json",
            )
        except ApiException as error:
            if error.status != _NOT_FOUND:  # removed already: nothing to keep
                raise

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """Merge-patch the VideoJob's status subresource."""
        self._patch_status(models.PLURAL, namespace, name, patch)

    def patch_pipeline_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Replace a VideoPipeline's status (a merge patch of all of it)."""
        self._patch_status(pipelines.PLURAL, namespace, name, status)

    def _patch_status(self, plural: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
        path = (
            f"/apis/{models.GROUP}/{models.VERSION}/namespaces/{namespace}/{plural}/{name}/status"
        )
        try:
            self._send_json("PATCH", path, {"status": patch}, "application/merge-patch+json")
        except ApiException as error:
            if error.status in (_BAD_REQUEST, _UNPROCESSABLE):
                # Not the API server's message: it may quote what was refused.
                raise StatusRefused(f"the API server refused it (HTTP {error.status})") from None
            if error.status != _NOT_FOUND:  # deleted meanwhile: nothing to report to
                raise

    def delete_videojob(self, namespace: str, name: str, uid: str) -> None:
        """Delete the VideoJob if it is still the same object (uid precondition)."""
        try:
            self._custom.delete_namespaced_custom_object(
                models.GROUP,
                models.VERSION,
                namespace,
                models.PLURAL,
                name,
                body=client.V1DeleteOptions(
                    preconditions=client.V1Preconditions(uid=uid), propagation_policy="Background"
                ),
                _request_timeout=_TIMEOUT_SECONDS,
            )
        except ApiException as error:
            if error.status not in (_NOT_FOUND, _CONFLICT):
                raise

    def post_event(self, videojob: dict[str, Any], kind: str, reason: str, message: str) -> None:
        """An Event on the VideoJob, as `kubectl describe` shows them."""
        meta = videojob["metadata"]
        now = datetime.datetime.now(datetime.UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{meta['name'][:200]}."),
            involved_object=client.V1ObjectReference(
                api_version=f"{models.GROUP}/{models.VERSION}",
                kind=models.KIND,
                name=meta["name"],
                namespace=meta["namespace"],
                uid=meta["uid"],
            ),
            type=kind,
            reason=reason,
            message=message[:1024],
            source=client.V1EventSource(component="vid-operator"),
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            reporting_component="vid-operator",
            reporting_instance="vid-operator",
        )
        try:
            self._core.create_namespaced_event(
                meta["namespace"], event, _request_timeout=_TIMEOUT_SECONDS
            )
        except ApiException as error:
            # Events are a courtesy; the status already says it. A namespace
            # being deleted refuses them, and that must not stop the reconcile.
            log.warning(
                "event not posted",
                namespace=meta["namespace"],
                videojob=meta["name"],
                reason=reason,
                status=error.status,
            )
