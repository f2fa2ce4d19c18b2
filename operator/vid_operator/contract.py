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
"""

from __future__ import annotations

import json
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

TERMINATION_MESSAGE_PATH = "/dev/termination-log"
SCRATCH_DIR = "/scratch"
MAX_SUMMARY_BYTES = 4096

EXIT_OK = 0
EXIT_INVALID_INPUT = 2

# The spec fields a stage needs, and so the ones it receives in ENV_PARAMS.
PARAM_FIELDS = ("prompt", "durationSeconds", "resolution", "fps", "voice")


def artifact_prefix(bucket: str, prefix: str, namespace: str, videojob: str, uid: str) -> str:
    """Where one VideoJob's artifacts live; the uid keeps a re-created
    VideoJob of the same name from reading its predecessor's files."""
    parts = [p.strip("/") for p in (prefix, namespace, videojob, uid) if p.strip("/")]
    return f"s3://{bucket}/{'/'.join(parts)}/"


def parse_summary(message: str | None) -> dict[str, Any] | None:
    """A stage's termination message as a JSON object, or None if it is not one
    (a crashed stage may leave anything there)."""
    if not message or len(message.encode()) > MAX_SUMMARY_BYTES:
        return None
    try:
        summary = json.loads(message)
    except ValueError:
        return None
    return summary if isinstance(summary, dict) else None
