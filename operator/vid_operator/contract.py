"""The stage contract: what the operator hands a stage and what it expects back.

Imported by the operator (:mod:`vid_operator.jobs` writes the environment,
the reconciler reads the summary) and by the stage programs, so both sides
agree by construction. Pure: no Kubernetes client, no boto3.

- Environment: the variables named below.
- Artifacts: a stage reads ``<artifact prefix><dependency>/`` and writes
  ``<artifact prefix><its own name>/``.
- On success it writes a JSON summary of at most :data:`MAX_SUMMARY_BYTES` to
  :data:`TERMINATION_MESSAGE_PATH`; the operator copies it into the status.
- Exit codes: :data:`EXIT_OK`; :data:`EXIT_INVALID_INPUT` is never retried;
  anything else is retried by the Job controller up to ``backoffLimit``.
- The result cache: a stage given :data:`ENV_CACHE_KEY` and
  :data:`ENV_CACHE_LOCATION` copies a result stored there instead of computing
  it, or stores the one it computed; its summary then carries
  :data:`SUMMARY_DIGEST` and :data:`SUMMARY_CACHED` (the operator keys the
  next stages on the digest, see :mod:`vid_operator.cache`).
- Fan-out: a stage that runs once per item of an upstream stage's output is
  one Indexed Job; each pod gets :data:`ENV_ITEMS` and Kubernetes'
  :data:`ENV_ITEM_INDEX`, and writes under :func:`item_folder` of its stage's
  folder (and caches there too), so items never overwrite each other.
- Progress: where the operator mounts a progress token, a stage may report
  its percent and a short message by patching :data:`PROGRESS_ANNOTATION` on
  its own pod (:func:`encode_progress`), at most once every
  :data:`PROGRESS_MIN_INTERVAL_SECONDS`; the operator reads it from its pod
  watch (:func:`read_progress`). An admission policy holds the token to
  exactly that patch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

ENV_JOB_NAME = "VIDOP_JOB_NAME"
ENV_JOB_NAMESPACE = "VIDOP_JOB_NAMESPACE"
ENV_JOB_UID = "VIDOP_JOB_UID"
ENV_STAGE = "VIDOP_STAGE"
ENV_PARAMS = "VIDOP_PARAMS"
"""The job's parameters (prompt, durationSeconds, resolution, fps, voice) as JSON."""
ENV_ARTIFACT_PREFIX = "VIDOP_ARTIFACT_PREFIX"
"""``s3://<bucket>/<prefix>/<namespace>/<videojob>/<uid>/``"""
ENV_S3_ENDPOINT = "VIDOP_S3_ENDPOINT"
ENV_S3_REGION = "AWS_DEFAULT_REGION"
ENV_S3_ACCESS_KEY = "AWS_ACCESS_KEY_ID"
ENV_S3_SECRET_KEY = "AWS_SECRET_ACCESS_KEY"
ENV_SCRATCH_DIR = "VIDOP_SCRATCH_DIR"
ENV_TERMINATION_MESSAGE_PATH = "VIDOP_TERMINATION_MESSAGE_PATH"
"""Where the stage writes its summary: the container's ``terminationMessagePath``,
named in the environment too so a runtime that maps paths (the local node) can
point it elsewhere."""
ENV_CACHE_KEY = "VIDOP_CACHE_KEY"
"""The stage's cache key (hex); set only when its result may be reused."""
ENV_CACHE_LOCATION = "VIDOP_CACHE_LOCATION"
"""``s3://<bucket>/<prefix>/<namespace>/_cache/<key>/``: where a result with
that key is stored (:func:`cache_location`)."""

ENV_ITEMS = "VIDOP_ITEMS"
"""How many items a fanned-out stage runs over (its Indexed Job's completions)."""
ENV_ITEM_INDEX = "JOB_COMPLETION_INDEX"
"""Which item this pod runs, from 0: set by the Job controller in each pod of
an Indexed Job (so reserved like the contract's own)."""
ENV_POD_NAME = "VIDOP_POD_NAME"
"""The stage's own pod (from the downward API): the one object its progress
token may patch."""
ENV_PROGRESS_TOKEN_FILE = "VIDOP_PROGRESS_TOKEN_FILE"
"""The projected, pod-bound ServiceAccount token to report progress with;
unset: the stage reports none."""
ENV_API_SERVER = "VIDOP_API_SERVER"
"""The API server's URL for progress reports; unset: the in-cluster one
(``KUBERNETES_SERVICE_HOST`` and ``KUBERNETES_SERVICE_PORT``)."""
ENV_API_CA_FILE = "VIDOP_API_CA_FILE"
"""The CA bundle that signs the API server's certificate."""

CONTRACT_ENV = frozenset(
    {
        ENV_JOB_NAME,
        ENV_JOB_NAMESPACE,
        ENV_JOB_UID,
        ENV_STAGE,
        ENV_PARAMS,
        ENV_ARTIFACT_PREFIX,
        ENV_S3_ENDPOINT,
        ENV_S3_REGION,
        ENV_S3_ACCESS_KEY,
        ENV_S3_SECRET_KEY,
        ENV_SCRATCH_DIR,
        ENV_TERMINATION_MESSAGE_PATH,
        ENV_CACHE_KEY,
        ENV_CACHE_LOCATION,
        ENV_ITEMS,
        ENV_ITEM_INDEX,
        ENV_POD_NAME,
        ENV_PROGRESS_TOKEN_FILE,
        ENV_API_SERVER,
        ENV_API_CA_FILE,
    }
)
"""Every variable the operator sets: nobody else may set one (a second entry
of the same name in a pod wins over the first)."""
CONTRACT_ENV_PREFIX = "VIDOP_"
"""Kept for the contract, now and later."""

TERMINATION_MESSAGE_PATH = "/dev/termination-log"
SCRATCH_DIR = "/scratch"
SCRATCH_VOLUME = "scratch"
"""The pod volume mounted at :data:`SCRATCH_DIR`."""
MAX_SUMMARY_BYTES = 4096
PROGRESS_VOLUME = "vidop-progress"
"""The projected volume with the progress token and the API server's CA."""
PROGRESS_DIR = "/var/run/vidop/progress"
PROGRESS_TOKEN_PATH = "token"
PROGRESS_CA_PATH = "ca.crt"
PROGRESS_TOKEN_SECONDS = 600
"""The token's lifetime (the least the API server allows); the kubelet
renews it well before it runs out."""

EXIT_OK = 0
EXIT_INVALID_INPUT = 2

# The spec fields a stage needs, and so the ones it receives in ENV_PARAMS.
PARAM_FIELDS = ("prompt", "durationSeconds", "resolution", "fps", "voice")

SUMMARY_DIGEST = "digest"
"""Summary key: a digest of the stage's output files' contents (hex), the same
for the same files whatever the VideoJob; what the next stages' keys chain on."""
SUMMARY_CACHED = "cached"
"""Summary key: true when the result was copied from the cache, false when
computed (and stored there); absent when the stage runs without a key."""
CACHE_FOLDER = "_cache"
"""The folder beside a namespace's VideoJobs that holds its cached results: a
VideoJob's name is a DNS name, which cannot start with ``_``, so none can be
called that."""


MAX_ITEMS = 64
"""The most items one stage fans out over (an Indexed Job's completions)."""


ITEMS_FOLDER = "items/"
"""The folder inside a fanned-out stage's that holds one folder per item."""


def item_folder(index: int) -> str:
    """Where item ``index`` of a fanned-out stage keeps its outputs, inside the
    stage's folder (``items/0003/``): sorted by name, they are in item order."""
    return f"{ITEMS_FOLDER}{index:04d}/"


PROGRESS_ANNOTATION = "vidop.io/progress"
"""The pod annotation a stage reports its progress in (:func:`encode_progress`)."""
PROGRESS_MIN_INTERVAL_SECONDS = 5.0
"""A stage reports progress at most this often (and the operator writes the
VideoJob's status at most about that often for it)."""
MAX_PROGRESS_MESSAGE_CHARS = 120
MAX_PROGRESS_BYTES = 256
"""The most the annotation's value may hold (the admission policy's bound)."""


@dataclass(frozen=True)
class Progress:
    """How far a stage is: a whole percent and a few words."""

    percent: int
    message: str = ""


def encode_progress(percent: float, message: str = "") -> str:
    """The annotation's value: compact JSON, percent clamped to 0..100 and
    the message cut to :data:`MAX_PROGRESS_MESSAGE_CHARS` characters."""
    clamped = max(0, min(100, int(percent)))
    words = " ".join(message.split())[:MAX_PROGRESS_MESSAGE_CHARS]
    value = json.dumps({"percent": clamped, "message": words}, separators=(",", ":"))
    # Multi-byte characters may push 120 characters past the byte bound.
    while len(value.encode()) > MAX_PROGRESS_BYTES:
        words = words[:-1]
        value = json.dumps({"percent": clamped, "message": words}, separators=(",", ":"))
    return value


def read_progress(value: str | None) -> Progress | None:
    """The annotation's value as progress; None for anything that is not what
    :func:`encode_progress` writes (the stage's own words: never trusted)."""
    if not value or len(value.encode(errors="replace")) > MAX_PROGRESS_BYTES:
        return None
    try:
        raw = json.loads(value)
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    percent, message = raw.get("percent"), raw.get("message", "")
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
        return None
    if not isinstance(message, str):
        return None
    words = " ".join(message.split())[:MAX_PROGRESS_MESSAGE_CHARS]
    return Progress(percent=percent, message=words)


def artifact_prefix(bucket: str, prefix: str, namespace: str, videojob: str, uid: str) -> str:
    """Where one VideoJob's artifacts live; the uid keeps a re-created
    VideoJob of the same name from reading its predecessor's files."""
    return _location(bucket, prefix, namespace, videojob, uid)


def cache_location(bucket: str, prefix: str, namespace: str, key: str) -> str:
    """Where the result of the stage with cache key ``key`` is kept: per
    namespace, so one tenant never receives another's results."""
    return _location(bucket, prefix, namespace, CACHE_FOLDER, key)


def _location(bucket: str, *parts: str) -> str:
    kept = [p.strip("/") for p in parts if p.strip("/")]
    return f"s3://{bucket}/{'/'.join(kept)}/"


MAX_SUMMARY_DEPTH = 8
"""Objects and arrays nest at most this deep in a summary."""
# The API server stores integers as int64 and refuses a status with a larger one.
_INT64 = (-(2**63), 2**63 - 1)


class SummaryRefused(ValueError):
    """A termination message that is not a summary the operator may copy into
    the status; the message says why, in words fit for the VideoJob's status."""


def _reject_constant(name: str) -> float:
    raise SummaryRefused(f"it holds {name}, which JSON does not allow")


def _finite(text: str) -> float:
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise SummaryRefused(f"the number {text[:20]} is out of range")
    return number


def _bounded_int(text: str) -> int:
    # Python refuses to parse integers of over 4,300 digits; 4 KiB stays below.
    number = int(text)
    if not _INT64[0] <= number <= _INT64[1]:
        raise SummaryRefused(f"the integer {text[:20]}... does not fit in 64 bits")
    return number


def _check_depth(value: Any) -> None:
    """Iterative, so a value nested as deep as 4 KiB allows cannot overflow the stack."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_SUMMARY_DEPTH:
            raise SummaryRefused(f"it nests deeper than {MAX_SUMMARY_DEPTH} levels")
        pending.extend((child, depth + 1) for child in children)


def read_summary(message: str | None) -> dict[str, Any] | None:
    """A stage's termination message as a summary: a JSON object of at most
    :data:`MAX_SUMMARY_BYTES`, nested at most :data:`MAX_SUMMARY_DEPTH` deep,
    with int64 integers, finite numbers and proper text, which is what the
    status can hold; nulls are left out.
    None when the stage wrote nothing; :class:`SummaryRefused` for anything else,
    whatever the stage wrote (the one place a summary is parsed; never another
    exception)."""
    if not message or not message.strip():
        return None
    if len(message.encode(errors="replace")) > MAX_SUMMARY_BYTES:
        raise SummaryRefused(f"it is longer than {MAX_SUMMARY_BYTES} bytes")
    try:
        summary = json.loads(
            message, parse_constant=_reject_constant, parse_float=_finite, parse_int=_bounded_int
        )
    except RecursionError:
        raise SummaryRefused(f"it nests deeper than {MAX_SUMMARY_DEPTH} levels") from None
    except SummaryRefused:
        raise
    except ValueError:
        raise SummaryRefused("it is not JSON") from None
    if not isinstance(summary, dict):
        raise SummaryRefused("it is not a JSON object")
    _check_depth(summary)
    try:
        json.dumps(summary, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        # A lone surrogate escape: valid JSON, but not text the API server keeps as is.
        raise SummaryRefused("it holds an unpaired surrogate, which is not text") from None
    without_nulls: dict[str, Any] = _without_nulls(summary)
    return without_nulls


def _without_nulls(value: Any) -> Any:
    """The value with every null left out: a merge patch of the status drops
    them anyway, and a summary kept with them would never match what the API
    server stored. Recursion is safe: the depth is checked first."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value if v is not None]
    return value
