"""Job names are deterministic, valid and at most 63 characters."""

import re

from vid_operator import naming

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_short_names_read_plainly() -> None:
    assert naming.stage_job_name("cat-surfing", "video_gen") == "cat-surfing-video-gen"


def test_a_253_character_name_is_cut_and_hashed_for_every_stage() -> None:
    videojob = "v" * 200 + "." + "w" * 52

    for stage in ("script_gen", "voice_gen", "video_gen", "compositing"):
        name = naming.stage_job_name(videojob, stage)
        assert len(name) <= 63 and DNS_LABEL.match(name), name
        assert name.endswith("-" + stage.replace("_", "-"))
        assert name == naming.stage_job_name(videojob, stage)


def test_long_names_that_share_a_prefix_stay_apart() -> None:
    first = naming.stage_job_name("x" * 100 + "-a", "compositing")
    second = naming.stage_job_name("x" * 100 + "-b", "compositing")

    assert first != second


def test_cut_never_leaves_a_dash_or_dot_before_the_hash() -> None:
    # The cut lands right after the dashes.
    name = naming.stage_job_name("a" * 40 + "-" * 30, "compositing")

    assert "--" not in name and DNS_LABEL.match(name)


def test_labels_fit_even_for_long_names() -> None:
    labels = naming.labels("n" * 253, "video_gen")

    assert len(labels["vidop.io/videojob"]) <= 63
    assert labels["app.kubernetes.io/managed-by"] == "vid-operator"
    assert labels["vidop.io/stage"] == "video_gen"
