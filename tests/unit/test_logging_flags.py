"""--log-level and --log-format: what reaches stdout, for our messages and kopf's."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from vid_operator.main import configure_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level
    structlog.reset_defaults()


def test_json_is_one_object_per_line_at_the_level_asked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(logging.WARNING, "json")

    structlog.get_logger("vid_operator.test").info("dropped")
    structlog.get_logger("vid_operator.test").warning("kept", videojob="ns/cat")
    logging.getLogger("kopf.test").error("from kopf")

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["event"], line["level"]) for line in lines] == [
        ("kept", "warning"),
        ("from kopf", "error"),
    ]
    assert lines[0]["videojob"] == "ns/cat"


def test_console_is_a_readable_line_without_colour_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(logging.DEBUG, "console")

    structlog.get_logger("vid_operator.test").debug("stage started", stage="video_gen")

    (line,) = capsys.readouterr().out.splitlines()
    assert "stage started" in line and "stage=video_gen" in line and "debug" in line
    assert not line.startswith("{") and "\x1b[" not in line
