"""The benchmark cluster's audit log: what the API server saw, and when.

:mod:`tests.benchmarks.bench` starts kube-apiserver with :func:`policy` and
reads the log back with :func:`read`. Every figure that needs a clock comes
from here: the API server stamps each request with microseconds, on one
clock, for the operator, the oracle and the controllers alike, so no client's
scheduling or watch delay blurs the numbers and no 1-second object timestamp
is involved.

What is kept: the Job controller's status writes with their bodies (the first
one whose conditions say Complete or Failed is when a stage ended), the
operator's VideoJob status writes with their bodies (the one that says
Succeeded or Failed is when the user sees the VideoJob end), and the metadata
of every request of the operator and the oracle and of every VideoJob create.
Everything else is left out, to keep the log small and the API server fast.
"""

from __future__ import annotations

import datetime
import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

JOB_CONTROLLER = "system:serviceaccount:kube-system:job-controller"
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
READ_VERBS = frozenset({"get", "list"})


def policy(operator_user: str, oracle_user: str) -> str:
    """The audit policy (YAML) for a benchmark run."""
    rules: list[dict[str, Any]] = [
        {
            "level": "Request",
            "users": [JOB_CONTROLLER],
            "verbs": ["update", "patch"],
            "resources": [{"group": "batch", "resources": ["jobs/status"]}],
        },
        {
            "level": "Request",
            "users": [operator_user],
            "verbs": ["update", "patch"],
            "resources": [{"group": "vidop.io", "resources": ["videojobs/status"]}],
        },
        {"level": "Metadata", "users": [operator_user, oracle_user]},
        {
            "level": "Metadata",
            "verbs": ["create"],
            "resources": [{"group": "vidop.io", "resources": ["videojobs"]}],
        },
        {"level": "None"},
    ]
    document = {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        # One line per request (two for watches: started, complete), not three.
        "omitStages": ["RequestReceived"],
        "rules": rules,
    }
    return yaml.safe_dump(document, sort_keys=False)


def apiserver_flags(policy_file: Path, log_file: Path) -> list[str]:
    return [
        f"--audit-policy-file={policy_file}",
        f"--audit-log-path={log_file}",
        "--audit-log-format=json",
        # The log backend rotates at 100 MB by default; a 1,000-VideoJob run
        # writes more, and a rotated file would hide its start from read().
        "--audit-log-maxsize=100000",
    ]


def timestamp(text: str) -> float:
    """An audit timestamp (RFC 3339, microseconds) as seconds since the epoch."""
    return datetime.datetime.fromisoformat(text).timestamp()


@dataclass(frozen=True)
class Request:
    """One finished request of the operator or the oracle."""

    user: str
    verb: str
    resource: str
    """``jobs``, ``videojobs/status``, ``events``, ... (subresource after a slash)."""
    namespace: str
    received: float
    code: int


@dataclass
class AuditRecord:
    """What one pass over the log found."""

    job_finished: dict[tuple[str, str], float] = field(default_factory=dict)
    """(namespace, Job) -> when the Job controller first wrote Complete or Failed."""
    job_created: dict[tuple[str, str, str], float] = field(default_factory=dict)
    """(user, namespace, Job) -> when its successful create arrived."""
    videojob_created: dict[tuple[str, str], float] = field(default_factory=dict)
    """(namespace, VideoJob) -> when its create arrived."""
    videojob_finished: dict[tuple[str, str], float] = field(default_factory=dict)
    """(namespace, VideoJob) -> when the operator's status write saying
    Succeeded or Failed completed."""
    requests: list[Request] = field(default_factory=list)

    def count(
        self, user: str, since: float, until: float, namespace: str | None = None
    ) -> Counter[tuple[str, str]]:
        """(verb, resource) -> requests of ``user`` that arrived in the window,
        in ``namespace`` plus the cluster-wide ones when a namespace is given."""
        counted: Counter[tuple[str, str]] = Counter()
        for request in self.requests:
            if request.user != user or not since <= request.received <= until:
                continue
            if namespace is not None and request.namespace not in ("", namespace):
                continue
            counted[request.verb, request.resource] += 1
        return counted


def _finished_condition(job: dict[str, Any]) -> bool:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return True
    return False


def read(log_file: Path, users: Iterable[str]) -> AuditRecord:
    """One pass over the audit log (and any rotated pieces beside it)."""
    wanted = set(users)
    record = AuditRecord()
    pieces = sorted(log_file.parent.glob(f"{log_file.stem}*{log_file.suffix}"))
    for piece in pieces:
        with piece.open() as lines:
            for line in lines:
                _take(json.loads(line), wanted, record)
    return record


def _take(event: dict[str, Any], users: set[str], record: AuditRecord) -> None:
    if event.get("stage") != "ResponseComplete":
        return
    user = event["user"]["username"]
    ref = event.get("objectRef") or {}
    resource = ref.get("resource", "")
    if ref.get("subresource"):
        resource += "/" + ref["subresource"]
    namespace, name = ref.get("namespace", ""), ref.get("name", "")
    code = int((event.get("responseStatus") or {}).get("code", 0))
    received = timestamp(event["requestReceivedTimestamp"])
    completed = timestamp(event["stageTimestamp"])
    ok = 200 <= code < 300
    if user == JOB_CONTROLLER:
        if ok and _finished_condition(event.get("requestObject") or {}):
            record.job_finished.setdefault((namespace, name), completed)
        return
    if resource == "videojobs" and event["verb"] == "create" and ok:
        record.videojob_created.setdefault((namespace, name), received)
    if user not in users:
        return
    record.requests.append(Request(user, event["verb"], resource, namespace, received, code))
    if resource == "jobs" and event["verb"] == "create" and ok:
        record.job_created.setdefault((user, namespace, name), received)
    if resource == "videojobs/status" and ok:
        phase = ((event.get("requestObject") or {}).get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            record.videojob_finished.setdefault((namespace, name), completed)


def by_verb(counted: Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
    """{writes|reads|watches: {"verb resource": n}}."""
    grouped: dict[str, dict[str, int]] = defaultdict(dict)
    for (verb, resource), n in sorted(counted.items()):
        kind = "writes" if verb in WRITE_VERBS else "reads" if verb in READ_VERBS else "watches"
        grouped[kind][f"{verb} {resource}"] = n
    return dict(grouped)
