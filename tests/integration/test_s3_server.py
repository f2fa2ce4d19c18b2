"""The tests' and the demo's S3 server (SeaweedFS on loopback): objects go in
and come out through boto3, only its own credentials are accepted, a restart
keeps the data, and servers side by side keep to their own ports."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

from vidop_devcluster.s3 import S3Server


@pytest.fixture
def second_server(s3: S3Server, tmp_path: Path) -> Iterator[S3Server]:
    """A server of the test's own, beside the session's (which it waits for,
    so that it skips as that one does when SeaweedFS cannot run)."""
    with S3Server(tmp_path / "second") as server:
        yield server


def _round_trip(server: S3Server, bucket: str, key: str, body: bytes) -> bytes:
    server.client().put_object(Bucket=bucket, Key=key, Body=body)
    return server.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def _client(
    server: S3Server, keys: tuple[str, str] | None = None, signature_version: Any = None
) -> Any:
    """A boto3 client for ``server`` that signs with ``keys``, or not at all."""
    config = Config(
        s3={"addressing_style": "path"},
        retries={"max_attempts": 1},
        signature_version=signature_version,
    )
    key_id, secret = keys or (None, None)
    return boto3.session.Session().client(
        "s3",
        endpoint_url=server.endpoint_url,
        region_name=server.region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=config,
    )


def _listening_tcp_addresses(pid: int) -> set[tuple[str, int]]:
    """The (address, port) pairs process ``pid`` listens on, from /proc."""
    inodes = {
        link.removeprefix("socket:[").removesuffix("]")
        for fd in Path(f"/proc/{pid}/fd").iterdir()
        if (link := os.readlink(fd)).startswith("socket:[")
    }
    listening = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                address, port = local.split(":")
                listening.add((address, int(port, 16)))
    return listening


def test_objects_round_trip_through_boto3(s3: S3Server, s3_bucket: str) -> None:
    body = os.urandom(3 * 1024 * 1024)  # a few MiB: more than one chunk in the filer

    assert _round_trip(s3, s3_bucket, "videojob/uid/script_gen/script.json", body) == body
    listed = s3.client().list_objects_v2(Bucket=s3_bucket, Prefix="videojob/")
    assert [item["Key"] for item in listed["Contents"]] == ["videojob/uid/script_gen/script.json"]
    s3.create_bucket(s3_bucket)  # again: nothing happens


def test_only_its_own_credentials_are_accepted(s3: S3Server, s3_bucket: str) -> None:
    s3.client().put_object(Bucket=s3_bucket, Key="secret", Body=b"x")
    strangers = {
        "unsigned": _client(s3, signature_version=UNSIGNED),
        "wrong secret": _client(s3, keys=(s3.access_key, "x" * 40)),
        "unknown key": _client(s3, keys=("AKIAUNKNOWN", s3.secret_key)),
    }
    for who, stranger in strangers.items():
        for call, arguments in (
            ("list_buckets", {}),
            ("get_object", {"Bucket": s3_bucket, "Key": "secret"}),
            ("put_object", {"Bucket": s3_bucket, "Key": "planted", "Body": b"x"}),
        ):
            with pytest.raises(ClientError) as refused:
                getattr(stranger, call)(**arguments)
            assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403, (who, call)
    keys = [item["Key"] for item in s3.client().list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert keys == ["secret"]


def test_a_restart_keeps_endpoint_credentials_and_objects(second_server: S3Server) -> None:
    server = second_server
    server.create_bucket("kept")
    server.client().put_object(Bucket="kept", Key="object", Body=b"still here")
    before = (server.endpoint_url, server.access_key, server.secret_key)

    server.stop()
    assert not server.is_running
    with pytest.raises(EndpointConnectionError):
        server.client().list_buckets()
    server.start()

    assert server.client().get_object(Bucket="kept", Key="object")["Body"].read() == b"still here"
    # A new handle on the folder (as `python -m vidop_devcluster.s3 env`
    # makes) finds the same server.
    again = S3Server(server.root)
    assert again.is_running
    assert (again.endpoint_url, again.access_key, again.secret_key) == before


def test_servers_side_by_side_keep_to_their_own_loopback_ports(
    s3: S3Server, s3_bucket: str, second_server: S3Server
) -> None:
    servers = (s3, second_server)
    for server in servers:
        assert server.pid is not None
        listening = _listening_tcp_addresses(server.pid)
        # Only loopback (0100007F is 127.0.0.1 as /proc writes it), only its
        # own ports (the admin's may still be on their way).
        assert ("0100007F", server.ports["s3"]) in listening
        assert listening <= {("0100007F", port) for port in server.ports.values()}
    assert not set(s3.ports.values()) & set(second_server.ports.values())
    # Their unix sockets in /tmp are named after their own ports too.
    socket_files = [Path(f"/tmp/seaweedfs-s3-{server.ports['s3']}.sock") for server in servers]
    assert all(path.is_socket() for path in socket_files)

    second_server.create_bucket("beside")
    assert _round_trip(second_server, "beside", "k", b"second") == b"second"
    assert _round_trip(s3, s3_bucket, "k", b"first") == b"first"
    second_server.stop()

    assert _round_trip(s3, s3_bucket, "k", b"first, still") == b"first, still"
    assert socket_files[0].is_socket() and not socket_files[1].exists()
