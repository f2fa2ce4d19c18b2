"""merge_patch sends only what changed, and null for what went away."""

from vid_operator.runtime.reconciler import merge_patch


def test_unchanged_status_needs_no_patch() -> None:
    status = {"phase": "Running", "stages": [{"name": "a"}], "outputs": {"videoUri": "x"}}

    assert merge_patch(status, dict(status)) == {}


def test_changed_removed_and_nested_fields() -> None:
    old = {
        "phase": "Running",
        "stage": "video_gen",
        "outputs": {"videoUri": "x", "n": 1},
        "stages": [{"name": "a", "phase": "Running"}],
    }
    new = {
        "phase": "Succeeded",
        "outputs": {"videoUri": "x", "n": 2},
        "stages": [{"name": "a", "phase": "Succeeded"}],
    }

    assert merge_patch(old, new) == {
        "phase": "Succeeded",
        "stage": None,
        "outputs": {"n": 2},
        "stages": [{"name": "a", "phase": "Succeeded"}],
    }
