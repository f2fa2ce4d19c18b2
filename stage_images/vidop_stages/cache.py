"""The stage result cache, as a stage lives it: reuse a stored result, or store
the one just computed.

Used by :func:`vidop_stages.runtime.run_stage` when the operator gave the stage
a cache key (``contract.ENV_CACHE_KEY``, see ``vid_operator.cache``) and its
location (``contract.ENV_CACHE_LOCATION``). Under the location:

    record.json           the stored summary and the files' content digests
    <digest>/<name>       the output files, in a folder named by their digest

The record is written last, in one PUT, and names the files through their
digest: two stages storing under the same key at once (each writes all of
its files, then its record) never leave a record that names the other's
files. Copies are server-side (S3 CopyObject), so a hit moves no bytes
through the stage.

Anything that goes wrong with the cache is logged and the stage computes as
if there were none; the cache can make a stage faster, never fail it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from vid_operator import contract

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

RECORD = "record.json"
_CHUNK = 1024 * 1024
# What S3 and its clients raise, and what a record that is not ours raises when read.
_CACHE_ERRORS = (ClientError, BotoCoreError, ValueError, KeyError, TypeError, RecursionError)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def outputs_digest(files: Mapping[str, str]) -> str:
    """The digest of a stage's outputs: sha256 over its files' names and
    contents' sha256, in name order. Nothing of the VideoJob goes in, so the
    same files give the same digest in any VideoJob, and the next stages'
    cache keys, which chain on it, match too."""
    listing = json.dumps(sorted(files.items()), separators=(",", ":"))
    return hashlib.sha256(listing.encode()).hexdigest()


@dataclass(frozen=True)
class StageOutputs:
    """Where one stage keeps its outputs in the VideoJob's artifacts."""

    bucket: str
    key_prefix: str
    """Ends with ``/``: ``<artifact prefix><stage>/`` without the bucket."""

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key_prefix}"


class ResultCache:
    """The results stored under one cache key."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        key_prefix: str,
        log: structlog.typing.FilteringBoundLogger,
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._key_prefix = key_prefix
        self._log = log

    def _files_uri(self, digest: str) -> str:
        return f"s3://{self._bucket}/{self._key_prefix}{digest}/"

    def restore(self, outputs: StageOutputs) -> dict[str, Any] | None:
        """The stored result copied to ``outputs``, and its summary as this
        stage's (``cached: true``); None when there is none to use."""
        try:
            body = self._client.get_object(Bucket=self._bucket, Key=self._key_prefix + RECORD)
        except (ClientError, BotoCoreError) as error:
            if not _missing(error):
                self._log.warning("cannot read the result cache", error=str(error))
            return None
        try:
            record = json.loads(body["Body"].read())
            digest, files, summary = record["digest"], record["files"], record["summary"]
            if not isinstance(files, dict) or not isinstance(summary, dict):
                raise TypeError("the record's files or summary is not an object")
            if outputs_digest(files) != digest:
                raise ValueError("the record's digest does not match its files")
            for name in files:
                self._client.copy(
                    {"Bucket": self._bucket, "Key": f"{self._key_prefix}{digest}/{name}"},
                    outputs.bucket,
                    outputs.key_prefix + name,
                )
        except _CACHE_ERRORS as error:
            # Half a result (a lifecycle rule took some of it, say): compute.
            self._log.warning("stored result unusable, computing it", error=repr(error))
            return None
        restored: dict[str, Any] = _rewritten(summary, self._files_uri(digest), outputs.uri)
        restored[contract.SUMMARY_CACHED] = True
        self._log.info("result copied from the cache", files=sorted(files), digest=digest)
        return restored

    def save(
        self, outputs: StageOutputs, files: Mapping[str, str], summary: dict[str, Any]
    ) -> None:
        """Store the outputs just computed (``files``: name -> content sha256)
        and their summary, for later runs with the same key."""
        digest = summary[contract.SUMMARY_DIGEST]
        record = {
            "digest": digest,
            "files": dict(files),
            "summary": _rewritten(summary, outputs.uri, self._files_uri(digest)),
        }
        try:
            for name in files:
                self._client.copy(
                    {"Bucket": outputs.bucket, "Key": outputs.key_prefix + name},
                    self._bucket,
                    f"{self._key_prefix}{digest}/{name}",
                )
            self._client.put_object(
                Bucket=self._bucket,
                Key=self._key_prefix + RECORD,
                Body=json.dumps(record, sort_keys=True).encode(),
                ContentType="application/json",
            )
        except (ClientError, BotoCoreError) as error:
            self._log.warning("cannot store the result in the cache", error=str(error))
            return
        self._log.info("result stored in the cache", files=sorted(files), digest=digest)


def _missing(error: ClientError | BotoCoreError) -> bool:
    """Nothing stored under the key yet: the usual miss, not worth a warning."""
    return isinstance(error, ClientError) and error.response.get("Error", {}).get("Code") in (
        "NoSuchKey",
        "404",
    )


def _rewritten(value: Any, old: str, new: str) -> Any:
    """``value`` with every text that starts with the URI ``old`` moved to
    ``new``: the summary's links to the stage's own files. Recursion is
    bounded: a summary nests at most ``contract.MAX_SUMMARY_DEPTH`` deep."""
    if isinstance(value, dict):
        return {k: _rewritten(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewritten(v, old, new) for v in value]
    if isinstance(value, str) and value.startswith(old):
        return new + value.removeprefix(old)
    return value
