"""Plain JSON requests and list+watch streams on the Kubernetes API.

Used by the benchmark driver, the oracle and the chaos suite's recorder. The
generated client validates every argument and builds model objects for every
object it returns; measuring the control plane's floor (and recording every
event of a few hundred pipelines) needs less in the way: here a request is
one HTTP call through the client's connection pool and credentials, and an
object is the dict ``json.loads`` gives.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client

_GONE = 410
# A watch the server ends by itself after this long; the watcher then
# resumes from the last resourceVersion it saw, as client-go does.
_WATCH_SECONDS = 240


class ApiError(RuntimeError):
    """A request answered with an error status (``status`` is the HTTP code)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {body.get('message') or body}")
        self.status = status
        self.body = body


class RawApi:
    """JSON in, JSON out, through an authenticated ``ApiClient``."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api

    def _send(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None,
        body: Any,
        content_type: str,
        timeout: float | tuple[float, float],
    ) -> urllib3.BaseHTTPResponse:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        method, url, headers, _, _ = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            auth_settings=["BearerToken"],
        )
        # The client serialises a JSON body (merge patches included) itself.
        response = self.api.call_api(method, url, headers, body, _request_timeout=timeout)
        raw: urllib3.BaseHTTPResponse = response.response
        return raw

    def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 30,
    ) -> dict[str, Any]:
        """One request; raises :class:`ApiError` on a status of 400 or more."""
        response = self._send(method, path, query, body, content_type, timeout)
        data = response.data
        try:
            parsed: dict[str, Any] = json.loads(data) if data else {}
        except ValueError:
            # A plain-text answer, such as "404 page not found" before a
            # new resource is served.
            parsed = {"message": data.decode(errors="replace")}
        if response.status >= 400:
            raise ApiError(response.status, parsed)
        return parsed

    def watch(
        self, path: str, resource_version: str, query: list[tuple[str, str]] | None = None
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(type, object) of each watch event after ``resource_version``,
        until the server ends the watch."""
        params = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(_WATCH_SECONDS)),
            *(query or []),
        ]
        response = self._send("GET", path, params, None, "", (10, _WATCH_SECONDS + 30))
        try:
            if response.status >= 400:
                raise ApiError(response.status, json.loads(response.data or b"{}"))
            buffer = b""
            for chunk in response.stream(amt=None, decode_content=False):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line:
                        event = json.loads(line)
                        yield event["type"], event["object"]
        finally:
            response.release_conn()


@dataclass(frozen=True)
class Seen:
    """One object as a watcher received it."""

    type: str
    """ADDED, MODIFIED, DELETED, or LISTED for what a (re)list returned."""
    object: dict[str, Any]
    received: float
    """``time.time()`` when it arrived."""
    sequence: int
    """Arrival order across the watcher's whole life (relists included)."""


class Watcher:
    """List, then watch, a collection in a thread, for as long as it runs:
    a broken connection or an expired resourceVersion (410) leads to a
    relist, whose objects arrive as LISTED. ``on_seen`` runs on the thread."""

    def __init__(
        self,
        raw: RawApi,
        path: str,
        on_seen: Callable[[Seen], None],
        label_selector: str | None = None,
    ) -> None:
        self.raw = raw
        self.path = path
        self.on_seen = on_seen
        self.query = [("labelSelector", label_selector)] if label_selector else []
        self.reconnects = 0
        self._stop = threading.Event()
        self._listed = threading.Event()
        self._sequence = 0
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"watch {path}")

    def start(self) -> None:
        """Start, and return once the first list has been delivered."""
        self._thread.start()
        if not self._listed.wait(60):
            raise TimeoutError(f"could not list {self.path}")

    def stop(self) -> None:
        self._stop.set()

    def _deliver(self, kind: str, obj: dict[str, Any]) -> None:
        self._sequence += 1
        self.on_seen(Seen(kind, obj, time.time(), self._sequence))

    def _run(self) -> None:
        resource_version: str | None = None
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    listed = self.raw.request("GET", self.path, query=self.query)
                    for item in listed.get("items", []):
                        self._deliver("LISTED", item)
                    resource_version = str(listed["metadata"]["resourceVersion"])
                    self._listed.set()
                for kind, obj in self.raw.watch(self.path, resource_version, self.query):
                    if kind == "ERROR":
                        # Usually 410: the resourceVersion is too old. Relist.
                        resource_version = None
                        break
                    resource_version = str(obj["metadata"]["resourceVersion"])
                    if kind != "BOOKMARK":
                        self._deliver(kind, obj)
                    if self._stop.is_set():
                        return
            except ApiError as error:
                self.reconnects += 1
                if error.status == _GONE:
                    resource_version = None
                self._stop.wait(0.5)
            except (client.ApiException, urllib3.exceptions.HTTPError, OSError, ValueError):
                # The API server restarts, or the stream broke mid-line.
                self.reconnects += 1
                self._stop.wait(0.5)
