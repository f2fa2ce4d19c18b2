"""A stage's summary is read in one place, with bounds: whatever a stage
writes to its termination message, the reader returns a summary the status
can hold, or refuses it with a reason, and never raises anything else."""

from __future__ import annotations

import json

import pytest

from vid_operator import contract, status


def test_a_plain_summary_is_read_as_it_was_written() -> None:
    summary = {"videoUri": "s3://b/v.mp4", "durationSeconds": 20.0, "scenes": [1, 2, {"a": "b"}]}

    assert contract.read_summary(json.dumps(summary)) == summary


def test_nulls_are_left_out_as_a_merge_patch_of_the_status_would() -> None:
    summary = {"a": None, "b": [1, None, {"c": None, "d": 0}]}

    assert contract.read_summary(json.dumps(summary)) == {"b": [1, {"d": 0}]}


@pytest.mark.parametrize("message", [None, "", "  \n"])
def test_no_message_is_no_summary(message: str | None) -> None:
    assert contract.read_summary(message) is None


@pytest.mark.parametrize(
    ("message", "why"),
    [
        ("[" * 2048, "nests deeper than 8 levels"),
        ("[" * 2000 + "]" * 2000, "nests deeper than 8 levels"),
        ('{"a": ' + "[" * 300 + "]" * 300 + "}", "nests deeper than 8 levels"),
        ('{"n": ' + "9" * 309 + "}", "does not fit in 64 bits"),
        ('{"n": -9223372036854775809}', "does not fit in 64 bits"),
        ('{"n": 1e400}', "out of range"),
        ('{"n": NaN}', "JSON does not allow"),
        ('{"n": -Infinity}', "JSON does not allow"),
        ('{"a": "' + "x" * 4100 + '"}', "longer than 4096 bytes"),
        ("[1, 2]", "not a JSON object"),
        ("not json", "not JSON"),
        ('{"a": "\\ud800"}', "unpaired surrogate"),
    ],
)
def test_what_the_status_cannot_hold_is_refused_with_a_reason(message: str, why: str) -> None:
    with pytest.raises(contract.SummaryRefused) as refused:
        contract.read_summary(message)

    assert why in str(refused.value)


def test_the_limits_themselves_are_allowed() -> None:
    nested: object = 1
    for _ in range(contract.MAX_SUMMARY_DEPTH - 1):
        nested = [nested]
    summary = {"deep": nested, "max": 2**63 - 1, "min": -(2**63)}

    assert contract.read_summary(json.dumps(summary)) == summary


def test_a_refused_summary_leaves_a_finished_pod_with_the_reason() -> None:
    pod = {
        "status": {
            "containerStatuses": [
                {"state": {"terminated": {"exitCode": 0, "message": '{"n": ' + "9" * 309 + "}"}}}
            ]
        }
    }

    observed = status.observe_pod(pod)

    assert observed.finished and observed.summary is None
    assert observed.summary_refused is not None and "64 bits" in observed.summary_refused
