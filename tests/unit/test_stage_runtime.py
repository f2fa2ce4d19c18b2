"""What every stage shares: the job parameters it accepts, how it reads the
contract's environment, and what it leaves in the termination message."""

import json
from pathlib import Path
from typing import Any

import pytest

from vid_operator import contract
from vidop_stages.errors import InvalidInput
from vidop_stages.params import JobParams, parse_params
from vidop_stages.runtime import (
    encode_summary,
    failure_message,
    parse_artifact_prefix,
    read_environment,
)

GOOD = {
    "prompt": "A cat surfing at sunset",
    "durationSeconds": 12,
    "resolution": "640x360",
    "fps": 24,
    "voice": "en-us",
}


def _params(**changes: Any) -> str:
    return json.dumps({**GOOD, **changes})


def test_good_parameters_parse() -> None:
    params = parse_params(_params())

    assert params == JobParams("A cat surfing at sunset", 12, 640, 360, 24, "en-us")
    assert params.resolution == "640x360"
    assert params.total_frames == 288


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"prompt": "  ...!? 🎉🎉  "}, "the prompt has no words"),
        ({"prompt": "\n\t "}, "the prompt has no words"),
        ({"prompt": "___"}, "the prompt has no words"),
        ({"resolution": "641x360"}, "H.264 needs an even width"),
        ({"resolution": "640x361"}, "H.264 needs an even height"),
        ({"resolution": "32x32"}, "outside 64..4096"),
        ({"resolution": "8192x4320"}, "outside 64..4096"),
        ({"resolution": "big"}, "is not WIDTHxHEIGHT"),
        ({"durationSeconds": 0}, "outside 1..600"),
        ({"durationSeconds": 601}, "outside 1..600"),
        ({"durationSeconds": True}, "must be a int"),
        ({"durationSeconds": "10"}, "must be a int"),
        ({"fps": 61}, "outside 1..60"),
        ({"voice": "en us"}, "is not a voice name"),
        ({"prompt": None}, "prompt must be a str"),
    ],
)
def test_unusable_parameters_are_invalid_input(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        parse_params(_params(**changes))


def test_parameters_that_are_not_a_json_object_are_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="not JSON"):
        parse_params("{prompt")
    with pytest.raises(InvalidInput, match="not a JSON object"):
        parse_params("[1, 2]")


def test_prompt_in_any_script_has_words() -> None:
    assert parse_params(_params(prompt="猫がサーフィン")).prompt == "猫がサーフィン"


def test_artifact_prefix_splits_into_bucket_and_key_prefix() -> None:
    uri = contract.artifact_prefix("media", "videojobs", "ns", "cat", "uid-1")

    assert parse_artifact_prefix(uri) == ("media", "videojobs/ns/cat/uid-1/")
    assert parse_artifact_prefix("s3://media/") == ("media", "")
    with pytest.raises(ValueError, match="not s3://"):
        parse_artifact_prefix("https://media/videojobs/")


def test_environment_is_read_from_the_contract_variables(tmp_path: Path) -> None:
    environment = read_environment(
        {
            contract.ENV_STAGE: "voice_gen",
            contract.ENV_PARAMS: _params(),
            contract.ENV_ARTIFACT_PREFIX: "s3://media/videojobs/ns/cat/uid-1/",
            contract.ENV_SCRATCH_DIR: str(tmp_path),
            contract.ENV_TERMINATION_MESSAGE_PATH: str(tmp_path / "message"),
            contract.ENV_S3_ENDPOINT: "http://127.0.0.1:8333",
        }
    )

    assert environment.stage == "voice_gen"
    assert environment.params.voice == "en-us"
    assert (environment.bucket, environment.key_prefix) == ("media", "videojobs/ns/cat/uid-1/")
    assert environment.scratch_dir == tmp_path
    assert environment.termination_message_path == tmp_path / "message"
    assert environment.s3_endpoint == "http://127.0.0.1:8333"


def test_environment_defaults_follow_the_contract() -> None:
    environment = read_environment(
        {
            contract.ENV_STAGE: "script_gen",
            contract.ENV_PARAMS: _params(),
            contract.ENV_ARTIFACT_PREFIX: "s3://media/x/",
        }
    )

    assert environment.scratch_dir == Path(contract.SCRATCH_DIR)
    assert environment.termination_message_path == Path(contract.TERMINATION_MESSAGE_PATH)
    assert environment.s3_endpoint is None


def test_a_missing_contract_variable_is_a_configuration_error_not_bad_input() -> None:
    with pytest.raises(ValueError, match=contract.ENV_STAGE) as caught:
        read_environment({contract.ENV_PARAMS: _params(), contract.ENV_ARTIFACT_PREFIX: "s3://b/"})
    assert not isinstance(caught.value, InvalidInput)


def test_summary_is_compact_json_the_operator_can_parse() -> None:
    summary = {"videoUri": "s3://b/k/video.mp4", "durationSeconds": 20.0}

    assert contract.read_summary(encode_summary(summary)) == summary


def test_summary_over_the_limit_is_refused_rather_than_cut() -> None:
    with pytest.raises(ValueError, match="over the contract's limit"):
        encode_summary({"padding": "x" * contract.MAX_SUMMARY_BYTES})


def test_failure_messages_say_why_in_one_short_line() -> None:
    assert failure_message(InvalidInput("the prompt has no words")) == (
        "invalid input: the prompt has no words"
    )
    assert failure_message(RuntimeError("boom")) == "failed: RuntimeError: boom"
    long = failure_message(RuntimeError("é" * contract.MAX_SUMMARY_BYTES))
    assert len(long.encode()) <= contract.MAX_SUMMARY_BYTES
