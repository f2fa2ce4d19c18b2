"""The leader election's rules: who may write the Lease, when a record
counts as expired, which timings make sense, and the command line."""

from __future__ import annotations

import pytest
from kubernetes import client

from vid_operator import leader, main


def _lease(holder: str | None, version: str, duration: int = 15) -> client.V1Lease:
    return client.V1Lease(
        metadata=client.V1ObjectMeta(name="vid-operator", resource_version=version),
        spec=client.V1LeaseSpec(holder_identity=holder, lease_duration_seconds=duration),
    )


def test_a_held_lease_is_taken_only_after_it_went_unchanged_for_its_duration() -> None:
    seen = leader.observe(None, _lease("a", "1"), now=100.0)

    assert not leader.may_take(seen, "b", now=114.9)
    assert leader.may_take(seen, "b", now=115.0)
    assert leader.may_take(seen, "a", now=100.0)  # the holder renews any time


def test_the_expiry_counts_from_when_this_candidate_saw_the_record_change() -> None:
    """Clocks of different machines are never compared: a renewal resets
    the count, the same version seen again does not."""
    first = leader.observe(None, _lease("a", "1"), now=100.0)
    again = leader.observe(first, _lease("a", "1"), now=110.0)
    renewed = leader.observe(again, _lease("a", "2"), now=112.0)

    assert again.seen_at == 100.0
    assert renewed.seen_at == 112.0
    assert not leader.may_take(renewed, "b", now=120.0)


def test_a_released_lease_is_free_at_once() -> None:
    released = leader.observe(None, _lease(None, "7", duration=1), now=100.0)

    assert leader.may_take(released, "b", now=100.0)


@pytest.mark.parametrize(
    ("duration", "deadline", "retry"),
    [(10, 10, 2), (15, 10, 9), (15, 10, 0), (5, 10, 2)],
)
def test_timings_that_could_let_two_lead_are_refused(
    duration: float, deadline: float, retry: float
) -> None:
    with pytest.raises(ValueError, match="lease duration > renew deadline"):
        leader.Timings(duration, deadline, retry)


def test_the_defaults_are_client_gos() -> None:
    assert leader.Timings() == leader.Timings(15, 10, 2)


def test_identities_differ_per_process_on_one_host() -> None:
    assert leader.default_identity() != leader.default_identity()


def test_leader_election_needs_the_leases_namespace(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("VIDOP_POD_NAMESPACE", raising=False)

    with pytest.raises(SystemExit):
        main.main(["--leader-elect"])

    assert "--leader-elect-namespace" in capsys.readouterr().err


def test_bad_timings_are_refused_on_the_command_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main.main(
            ["--leader-elect", "--leader-elect-namespace=x", "--leader-elect-renew-deadline=20"]
        )

    assert "lease duration > renew deadline" in capsys.readouterr().err
