"""Deterministic names and labels of the objects the operator creates.

Used by :mod:`vid_operator.jobs` and by the handlers to find what exists.
The same VideoJob and stage always give the same Job name, so a create that
answers 409 means "already there" and a restarted operator adopts its Jobs.
Pure.
"""

from __future__ import annotations

import hashlib

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "vid-operator"
VIDEOJOB_LABEL = "vidop.io/videojob"
STAGE_LABEL = "vidop.io/stage"
ENDED_ANNOTATION = "vidop.io/ended"
"""On a stage Job the operator ended (see ``Kube.end_job``): the stage's
reason and why, e.g. ``PendingTimeout: ...``."""
ARTIFACTS_FINALIZER = "vidop.io/artifacts"
"""On a VideoJob while its artifacts are to be deleted with it."""
CLEANUP_LABEL = "vidop.io/cleanup"
"""On the Job that deletes a deleted VideoJob's artifacts."""
RUN_LABEL = "vidop.io/run"
"""On a stage Job after the first (see :func:`stage_job_name`): which one it is."""

# A Job's name becomes the value of its pods' job-name label: at most 63 characters.
MAX_NAME_LENGTH = 63
_HASH_LENGTH = 8


def _dns_label(text: str) -> str:
    return text.replace("_", "-").lower()


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_LENGTH]


INDEXED_HOSTNAME_SUFFIX = 3
"""What the Job controller appends to an Indexed Job's name for each pod's
hostname (``-<index>``, an index below 100), which must stay a DNS label."""


def stage_job_name(videojob: str, stage: str, run: int = 0, *, indexed: bool = False) -> str:
    """``<videojob>-<stage>`` for a stage's first Job, ``<videojob>-<stage>-
    <run+1>-<hash>`` for a later one (the hash of stage and run keeps it apart
    from the first Job of a stage whose own name ends in digits); when that is
    too long (for an ``indexed`` Job, leaving room for its pods' hostnames),
    the VideoJob's name is cut and a hash of the whole name keeps different
    VideoJobs apart. An ``indexed`` Job's name has no dots either (a
    VideoJob's may): its pods' hostnames are DNS labels, so the dots become
    dashes and the hash keeps ``a.b`` and ``a-b`` apart."""
    longest = MAX_NAME_LENGTH - (INDEXED_HOSTNAME_SUFFIX if indexed else 0)
    suffix = _dns_label(stage)
    if run:
        suffix += f"-{run + 1}-{short_hash(f'{stage}/{run}')[:4]}"
    name = f"{videojob}-{suffix}"
    dotted = indexed and "." in videojob
    if len(name) <= longest and not dotted:
        return name
    keep = longest - len(suffix) - _HASH_LENGTH - 2
    head = videojob[:keep].rstrip("-.")
    if dotted:
        head = head.replace(".", "-")
    return f"{head}-{short_hash(videojob)}-{suffix}"


def cleanup_job_name(videojob: str, uid: str) -> str:
    """The Job that deletes a VideoJob's artifacts: one per VideoJob (by
    uid, as its artifacts are), named like a stage Job of stage ``cleanup-<uid>``."""
    return stage_job_name(videojob, f"cleanup-{uid[:8]}")


def label_value(text: str) -> str:
    """A label value for a name that may be longer than 63 characters
    (VideoJob names go up to 253): cut, with a hash for uniqueness."""
    if len(text) <= MAX_NAME_LENGTH:
        return text
    return f"{text[: MAX_NAME_LENGTH - _HASH_LENGTH - 1].rstrip('-.')}-{short_hash(text)}"


def labels(videojob: str, stage: str) -> dict[str, str]:
    """The labels every stage Job and its pods carry."""
    return {
        MANAGED_BY_LABEL: MANAGED_BY,
        VIDEOJOB_LABEL: label_value(videojob),
        STAGE_LABEL: stage,
    }
