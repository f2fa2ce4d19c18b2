"""The stage contract, as every reference stage lives it: one runtime for all.

Each stage's ``main`` hands its work function to :func:`run_stage`, which

- sets up JSON logging (structlog, one object per line on stderr);
- reads the contract's environment (:mod:`vid_operator.contract`) and the job
  parameters (:mod:`vidop_stages.params`);
- gives the work an :class:`ArtifactStore` (boto3; the endpoint comes from
  ``VIDOP_S3_ENDPOINT``, region and credentials from the standard AWS
  variables, which are never logged) that reads a dependency's outputs under
  ``<artifact prefix><dependency>/`` and writes only under
  ``<artifact prefix><own stage>/``, so a retried stage overwrites its own
  outputs and nothing else;
- runs the work in a fresh folder inside ``VIDOP_SCRATCH_DIR``, removed after;
  or, given a cache key, copies a result stored under it instead
  (:mod:`vidop_stages.cache`), and stores the one it computed;
- adds the outputs' digest (``contract.SUMMARY_DIGEST``) to the summary, on
  which the operator keys the next stages' caches;
- writes the JSON summary to the termination-message file on success, or a
  short reason on failure, and returns the exit code:
  ``contract.EXIT_INVALID_INPUT`` for :class:`~vidop_stages.errors.InvalidInput`
  (never retried), :data:`EXIT_FAILED` for anything else (retried).

The S3 client retries little and times out fast, so an unreachable store
fails the attempt in seconds and the Job controller's backoff does the waiting.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import boto3
import structlog
from botocore.config import Config
from botocore.exceptions import ClientError

from vid_operator import contract
from vidop_stages.artifacts import Artifact
from vidop_stages.cache import ResultCache, StageOutputs, file_sha256, outputs_digest
from vidop_stages.errors import InvalidInput
from vidop_stages.params import JobParams, parse_params
from vidop_stages.progress import ProgressReporter
from vidop_stages.progress import from_environment as progress_reporter

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

EXIT_FAILED = 1
EXIT_TERMINATED = 143
"""128 + SIGTERM, what a shell reports for a process ended by the kubelet."""

Summary = dict[str, Any]

_S3_URI = re.compile(r"^s3://([^/]+)/(.*)$")
_S3_CLIENT_CONFIG = Config(
    connect_timeout=3,
    read_timeout=60,
    retries={"max_attempts": 2, "mode": "standard"},
    # Path-style addressing works with every S3-compatible server, also on
    # loopback where bucket subdomains do not resolve.
    s3={"addressing_style": "path"},
)


class StageTerminated(Exception):
    """SIGTERM arrived (the VideoJob was deleted, or the pod evicted)."""


@dataclass(frozen=True)
class StageEnvironment:
    """What the contract's environment tells a stage, read once."""

    stage: str
    params: JobParams
    bucket: str
    key_prefix: str
    """Ends with ``/``; empty only when the prefix is the bucket's root."""
    scratch_dir: Path
    termination_message_path: Path
    s3_endpoint: str | None
    cache_location: str | None = None
    """Where a result with the stage's cache key is kept; None: not cached."""
    item: Item | None = None
    """The item this pod runs, where the stage fans out."""


@dataclass(frozen=True)
class Item:
    """One item of a stage that fans out: which of how many."""

    index: int
    count: int


def read_item(environ: Mapping[str, str]) -> Item | None:
    """The pod's item (``VIDOP_ITEMS`` and the Job controller's
    ``JOB_COMPLETION_INDEX``), None for a stage that does not fan out;
    ValueError for a pair that cannot be."""
    count, index = environ.get(contract.ENV_ITEMS), environ.get(contract.ENV_ITEM_INDEX)
    if not count:
        return None
    if not index:
        raise ValueError(f"{contract.ENV_ITEMS} is set but {contract.ENV_ITEM_INDEX} is not")
    item = Item(index=int(index), count=int(count))
    if not 0 <= item.index < item.count <= contract.MAX_ITEMS:
        raise ValueError(f"item {item.index} of {item.count} is not one of 1 to 64 items")
    return item


def read_environment(environ: Mapping[str, str]) -> StageEnvironment:
    """Raises InvalidInput for bad job parameters and ValueError for a
    contract variable the operator did not set or set wrong."""
    bucket, key_prefix = parse_artifact_prefix(_required(environ, contract.ENV_ARTIFACT_PREFIX))
    item = read_item(environ)
    cache_location = environ.get(contract.ENV_CACHE_LOCATION) or None
    if cache_location and item:
        # Each item is stored on its own, beside the others of the same key.
        cache_location += contract.item_folder(item.index)
    return StageEnvironment(
        stage=_required(environ, contract.ENV_STAGE),
        params=parse_params(_required(environ, contract.ENV_PARAMS)),
        bucket=bucket,
        key_prefix=key_prefix,
        scratch_dir=Path(environ.get(contract.ENV_SCRATCH_DIR, contract.SCRATCH_DIR)),
        termination_message_path=termination_message_path(environ),
        s3_endpoint=environ.get(contract.ENV_S3_ENDPOINT) or None,
        cache_location=cache_location,
        item=item,
    )


def termination_message_path(environ: Mapping[str, str]) -> Path:
    return Path(
        environ.get(contract.ENV_TERMINATION_MESSAGE_PATH, contract.TERMINATION_MESSAGE_PATH)
    )


def _required(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name)
    if not value:
        raise ValueError(f"the stage contract's variable {name} is not set")
    return value


def parse_artifact_prefix(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b/`` -> ``("bucket", "a/b/")``."""
    match = _S3_URI.match(uri)
    if not match or not match[1]:
        raise ValueError(f"artifact prefix {uri!r} is not s3://<bucket>/<prefix>/")
    key_prefix = match[2].strip("/")
    return match[1], f"{key_prefix}/" if key_prefix else ""


def encode_summary(summary: Summary) -> str:
    """The summary as the termination message; a summary over the kubelet's
    limit is a bug in the stage, not something to truncate into bad JSON."""
    message = json.dumps(summary, sort_keys=True, separators=(",", ":"))
    if len(message.encode()) > contract.MAX_SUMMARY_BYTES:
        raise ValueError(f"summary is {len(message.encode())} bytes, over the contract's limit")
    return message


def failure_message(error: BaseException) -> str:
    """One short line for the VideoJob's status: the reason, not a traceback."""
    if isinstance(error, InvalidInput):
        message = f"invalid input: {error}"
    else:
        message = f"failed: {type(error).__name__}: {error}"
    return message.encode()[: contract.MAX_SUMMARY_BYTES].decode(errors="ignore")


class ArtifactStore:
    """The job's artifacts in S3, seen from one stage."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        key_prefix: str,
        stage: str,
        item: Item | None = None,
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._key_prefix = key_prefix
        self._stage = stage
        # An item writes in its own folder inside the stage's.
        self._own_folder = contract.item_folder(item.index) if item else ""
        self.published: dict[str, str] = {}
        """Name -> content sha256 of each output published so far."""

    @property
    def outputs(self) -> StageOutputs:
        return StageOutputs(self._bucket, self.key(self._stage, self._own_folder))

    def key(self, stage: str, name: str) -> str:
        return f"{self._key_prefix}{stage}/{name}"

    def uri(self, stage: str, name: str) -> str:
        return f"s3://{self._bucket}/{self.key(stage, name)}"

    def fetch(self, artifact: Artifact, destination: Path) -> Path:
        """Download a dependency's output to ``destination``."""
        try:
            self._client.download_file(
                self._bucket, self.key(artifact.stage, artifact.name), str(destination)
            )
        except ClientError as error:
            # botocore's message names the operation, not the object: name it.
            uri = self.uri(artifact.stage, artifact.name)
            raise RuntimeError(f"cannot read {uri}: {error}") from error
        return destination

    def fetch_items(self, artifact: Artifact, folder: Path) -> list[Path]:
        """Download the file named like ``artifact`` of every item of its
        stage, in item order, into ``folder``; empty when that stage did not
        fan out. ValueError when an item's file is missing."""
        items_prefix = self.key(artifact.stage, contract.ITEMS_FOLDER)
        paginator = self._client.get_paginator("list_objects_v2")
        keys = sorted(
            entry["Key"]
            for page in paginator.paginate(Bucket=self._bucket, Prefix=items_prefix)
            for entry in page.get("Contents", [])
            if entry["Key"].endswith("/" + artifact.name)
        )
        expected = [self.key(artifact.stage, contract.item_folder(i)) for i in range(len(keys))]
        if [key.removesuffix(artifact.name) for key in keys] != expected:
            raise ValueError(f"{artifact.stage}'s items are not numbered 0 to {len(keys) - 1}")
        paths = []
        for index, key in enumerate(keys):
            destination = folder / f"{index:04d}-{artifact.name}"
            self._client.download_file(self._bucket, key, str(destination))
            paths.append(destination)
        return paths

    def publish(self, source: Path, artifact: Artifact) -> str:
        """Upload ``source`` as this stage's output named like ``artifact``,
        under this stage's own name (which a custom pipeline may choose);
        returns its URI."""
        self.published[artifact.name] = file_sha256(source)
        self._client.upload_file(
            str(source),
            self._bucket,
            self.key(self._stage, self._own_folder + artifact.name),
            ExtraArgs={"ContentType": artifact.content_type},
        )
        return self.uri(self._stage, self._own_folder + artifact.name)


@dataclass(frozen=True)
class StageContext:
    """What a stage's work function gets."""

    params: JobParams
    store: ArtifactStore
    workdir: Path
    """A fresh, empty folder of its own, removed when the stage ends."""
    log: structlog.typing.FilteringBoundLogger
    progress: ProgressReporter
    """``context.progress(percent, message)`` reports how far the stage is
    (:mod:`vidop_stages.progress`; does nothing without a progress token)."""
    item: Item | None = None
    """The item this pod runs, where the stage fans out."""


StageWork = Callable[[StageContext], Summary]


def run_stage(work: StageWork) -> int:
    """Run ``work`` under the contract; returns the exit code."""
    configure_logging()
    log: structlog.typing.FilteringBoundLogger = structlog.get_logger()
    signal.signal(signal.SIGTERM, _raise_terminated)
    message_path = termination_message_path(os.environ)
    try:
        environment = read_environment(os.environ)
        log = log.bind(stage=environment.stage)
        if environment.item:
            log = log.bind(item=environment.item.index)
        log.info(
            "stage starting",
            bucket=environment.bucket,
            prefix=environment.key_prefix,
            endpoint=environment.s3_endpoint,
        )
        environment.scratch_dir.mkdir(parents=True, exist_ok=True)
        workdir = Path(
            tempfile.mkdtemp(prefix=f"{environment.stage}-", dir=environment.scratch_dir)
        )
        try:
            client = s3_client(environment.s3_endpoint)
            store = ArtifactStore(
                client,
                environment.bucket,
                environment.key_prefix,
                environment.stage,
                environment.item,
            )
            cache = _result_cache(client, environment.cache_location, log)
            summary = cache.restore(store.outputs) if cache else None
            if summary is None:
                context = StageContext(
                    environment.params,
                    store,
                    workdir,
                    log,
                    progress_reporter(log),
                    environment.item,
                )
                summary = _computed(work, context, cache)
            message = encode_summary(summary)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    except InvalidInput as error:
        log.warning("invalid input", reason=str(error))
        _write_message(message_path, failure_message(error))
        return contract.EXIT_INVALID_INPUT
    except StageTerminated as error:
        log.warning("stage terminated")
        _write_message(message_path, failure_message(error))
        return EXIT_TERMINATED
    except Exception as error:
        log.error("stage failed", error=failure_message(error), traceback=traceback.format_exc())
        _write_message(message_path, failure_message(error))
        return EXIT_FAILED
    _write_message(message_path, message)
    log.info("stage succeeded", summary=summary)
    return contract.EXIT_OK


def configure_logging() -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def _computed(work: StageWork, context: StageContext, cache: ResultCache | None) -> Summary:
    """The work's summary with its outputs' digest; with a cache, the result
    stored there and the summary saying it was computed."""
    summary = {
        **work(context),
        contract.SUMMARY_DIGEST: outputs_digest(context.store.published),
    }
    if cache is None:
        return summary
    computed = {**summary, contract.SUMMARY_CACHED: False}
    # Stored only once it is known to fit in a termination message, so a
    # stored result never fails the stage that reuses it.
    encode_summary(computed)
    cache.save(context.store.outputs, context.store.published, summary)
    return computed


def _result_cache(
    client: S3Client, location: str | None, log: structlog.typing.FilteringBoundLogger
) -> ResultCache | None:
    if location is None:
        return None
    bucket, key_prefix = parse_artifact_prefix(location)
    return ResultCache(client, bucket, key_prefix, log.bind(cache=location))


def s3_client(endpoint: str | None) -> S3Client:
    # Region and credentials come from the AWS_* variables (or the pod's
    # identity); they are never read, passed around or logged here.
    return boto3.client("s3", endpoint_url=endpoint, config=_S3_CLIENT_CONFIG)


def _write_message(path: Path, message: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(message, encoding="utf-8")


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    # An exception unwinds the stack: running child processes are killed by
    # subprocess.run and the scratch folder is removed.
    raise StageTerminated(f"received signal {signum}")
