"""Delete a deleted VideoJob's artifacts: ``vidop-artifacts-cleanup``.

Run by the cleanup Job the operator creates when a VideoJob goes and the
configuration says ``artifactRetention.policy: delete``
(``vid_operator.jobs.build_cleanup_job``), in any reference stage image: it
needs only the stage runtime's S3 client. It deletes every object under
``VIDOP_ARTIFACT_PREFIX`` (``s3://<bucket>/<prefix>/<namespace>/<videojob>/<uid>/``:
the uid keeps a VideoJob of the same name out of it) and nothing else; the
namespace's stored cache results (``_cache/``) keep their own rule. Deleting
what is already gone succeeds, so a retried Job finishes the work.

Exit codes as a stage's: 0 done, 2 a prefix that is not one VideoJob's (never
retried), anything else retried by the Job controller.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from vid_operator import contract
from vidop_stages.runtime import EXIT_FAILED, configure_logging, parse_artifact_prefix, s3_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

# DeleteObjects takes at most this many keys a request.
_BATCH = 1000
# <prefix>/<namespace>/<videojob>/<uid>/: whatever the configured prefix, a
# VideoJob's own folder is at least three segments deep.
_MIN_SEGMENTS = 3


def delete_prefix(client: S3Client, bucket: str, key_prefix: str) -> int:
    """Delete every object under ``key_prefix``; how many there were."""
    deleted = 0
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=key_prefix):
        keys: list[ObjectIdentifierTypeDef] = [
            {"Key": item["Key"]} for item in page.get("Contents", [])
        ]
        for start in range(0, len(keys), _BATCH):
            batch = keys[start : start + _BATCH]
            answer = client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            if errors := answer.get("Errors"):
                raise RuntimeError(f"{len(errors)} objects were not deleted: {errors[0]}")
            deleted += len(batch)
    return deleted


def run() -> int:
    """Delete the prefix the environment names. The S3 client reads its
    region and credentials from the environment too, as a stage's does."""
    log = structlog.get_logger("vidop_stages.cleanup")
    uri = os.environ.get(contract.ENV_ARTIFACT_PREFIX, "")
    try:
        bucket, key_prefix = parse_artifact_prefix(uri)
    except ValueError as error:
        log.error("not an artifact prefix", error=str(error))
        return contract.EXIT_INVALID_INPUT
    if len([part for part in key_prefix.split("/") if part]) < _MIN_SEGMENTS:
        # A bucket-wide or namespace-wide delete is never what a VideoJob meant.
        log.error("refusing to delete a prefix that is not one VideoJob's", prefix=uri)
        return contract.EXIT_INVALID_INPUT
    try:
        deleted = delete_prefix(
            s3_client(os.environ.get(contract.ENV_S3_ENDPOINT) or None), bucket, key_prefix
        )
    except (ClientError, BotoCoreError, RuntimeError) as error:
        log.error("artifacts not deleted", prefix=uri, error=str(error))
        return EXIT_FAILED
    log.info("artifacts deleted", prefix=uri, objects=deleted)
    return contract.EXIT_OK


def main() -> None:
    configure_logging()
    sys.exit(run())
