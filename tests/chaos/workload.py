"""The chaos suite's VideoJobs, each with the outcome it must end in.

Used by :mod:`tests.chaos.harness`. The outcome of every VideoJob is known
before it is applied, from its kwok annotations and its spec: the pods of a
stage fail with a chosen exit code, are marked disrupted, or succeed after a
fixed run time. The hostile ones are what a careless or malicious user might
apply: the largest values the schema allows, odd unicode, names at the length
limit (accepted, and they must run like any other), and values past the limits
or of the wrong shape (the API server must refuse them at apply time).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from vid_operator.api.models import STAGE_NAMES

KWOK_PREFIX = "kwok.vidop.io/"
RUN_TIME = "kwok.vidop.io/run-time"
EXIT_CODE = "kwok.vidop.io/exit-code"
DISRUPTION = "kwok.vidop.io/disruption"
TERMINATION_MESSAGE = "kwok.vidop.io/termination-message"
TERMINATION_REASON = "kwok.vidop.io/termination-reason"
OOM_AT_MEMORY = "kwok.vidop.io/oom-at-memory"
WAITING_REASON = "kwok.vidop.io/waiting-reason"

# Termination messages a stage has been seen to write (an annotation holds at
# most 1,024 characters, and so does each of these).
HOSTILE_SUMMARIES = {
    "deep-arrays": "[" * 1024,
    "huge-integer": '{"n": ' + "9" * 309 + "}",
    "deep-in-object": '{"a": ' + "[" * 300 + "]" * 300 + "}",
    "not-finite": '{"n": NaN, "m": 1e999}',
}


CYCLE_PIPELINE = "loop"
PIPELINES = [
    {
        "apiVersion": "vidop.io/v1alpha1",
        "kind": "VideoPipeline",
        "metadata": {"name": CYCLE_PIPELINE},
        "spec": {
            "stages": [
                {"name": "a", "image": "x/a:1", "dependsOn": ["b"]},
                {"name": "b", "image": "x/b:1", "dependsOn": ["a"]},
            ]
        },
    }
]
"""Applied before the VideoJobs: a pipeline whose cycle only the operator sees."""
LONGEST_BUCKET = "b" * 63


@dataclass(frozen=True)
class Expected:
    """How a VideoJob must end: its phase, and for a failure the stage that
    failed and a word its Failed condition must contain."""

    phase: str
    failed_stage: str | None = None
    reason: str | None = None


@dataclass
class Item:
    """One VideoJob to apply (or a body the API server must refuse)."""

    kind: str
    manifest: dict[str, Any]
    expected: Expected | None
    """None: the API server must refuse it at apply time."""
    query: list[tuple[str, str]] = field(default_factory=list)
    """Extra query parameters of the create (fieldValidation)."""

    @property
    def name(self) -> str:
        return str((self.manifest.get("metadata") or {}).get("name", ""))


def _videojob(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "vidop.io/v1alpha1",
        "kind": "VideoJob",
        "metadata": {"name": name},
        "spec": spec,
    }


def _stages(run_time: str, **overrides: dict[str, Any]) -> dict[str, Any]:
    """Every stage runs ``run_time``; ``overrides`` add to a stage's settings
    (their pod annotations add to the run time). kwok's script_gen says the
    script has 2 scenes, which video_gen fans out over (kwok.yaml)."""
    stages: dict[str, Any] = {}
    for stage in STAGE_NAMES:
        settings = dict(overrides.get(stage, {}))
        annotations = {RUN_TIME: run_time, **settings.pop("podAnnotations", {})}
        stages[stage] = {"podAnnotations": annotations, **settings}
    return stages


def ok(name: str, rng: random.Random) -> Item:
    run_time = rng.choice(["0s", "500ms", "1s", "2s"])
    return Item(
        "ok",
        _videojob(name, {"prompt": "a cat surfing", "stages": _stages(run_time)}),
        Expected("Succeeded"),
    )


def retried_then_failed(name: str, rng: random.Random) -> Item:
    """Exit code 1 is retryable: the Job controller retries voice_gen through
    its backoffLimit, then the VideoJob fails."""
    stages = _stages("200ms", voice_gen={"backoffLimit": 1, "podAnnotations": {EXIT_CODE: "1"}})
    return Item(
        "retried",
        _videojob(name, {"prompt": "a flaky voice", "stages": stages}),
        Expected("Failed", "voice_gen", "BackoffLimitExceeded"),
    )


def invalid_input(name: str, rng: random.Random) -> Item:
    """Exit code 2 means invalid input: never retried, whatever backoffLimit says."""
    stages = _stages("200ms", script_gen={"backoffLimit": 3, "podAnnotations": {EXIT_CODE: "2"}})
    return Item(
        "invalid-input",
        _videojob(name, {"prompt": "an unreadable script", "stages": stages}),
        Expected("Failed", "script_gen", "PodFailurePolicy"),
    )


def disrupted(name: str, rng: random.Random) -> Item:
    """Every pod of video_gen is disrupted (evicted, preempted): such failures
    do not count against backoffLimit (0 here), so the Job keeps replacing
    them until its deadline ends it. BackoffLimitExceeded would mean a
    disruption was counted."""
    stages = _stages(
        "200ms",
        video_gen={
            "backoffLimit": 0,
            "activeDeadlineSeconds": 6,
            "podAnnotations": {RUN_TIME: "1s", EXIT_CODE: "1", DISRUPTION: "true"},
        },
    )
    return Item(
        "disrupted",
        _videojob(name, {"prompt": "a preempted render", "stages": stages}),
        Expected("Failed", "video_gen", "DeadlineExceeded"),
    )


def oom_then_more_memory(name: str, rng: random.Random) -> Item:
    """voice_gen is killed as out of memory at 2Gi only: the operator's next
    Job for it has 3Gi (the chaos platform's onOOM) and gets through."""
    stages = _stages("200ms", voice_gen={"podAnnotations": {OOM_AT_MEMORY: "2Gi"}})
    return Item(
        "oom-raised",
        _videojob(name, {"prompt": "a hungry voice", "stages": stages}),
        Expected("Succeeded"),
    )


def oom_at_every_size(name: str, rng: random.Random) -> Item:
    """voice_gen is killed as out of memory whatever it has: 2Gi, 3Gi, then the
    4Gi maximum, and the VideoJob fails naming the OOM kill."""
    oom = {EXIT_CODE: "137", TERMINATION_REASON: "OOMKilled"}
    stages = _stages("200ms", voice_gen={"backoffLimit": 3, "podAnnotations": oom})
    return Item(
        "oom-failed",
        _videojob(name, {"prompt": "a bottomless voice", "stages": stages}),
        Expected("Failed", "voice_gen", "OOMKilled"),
    )


def image_pull_failure(name: str, rng: random.Random) -> Item:
    """compositing's image cannot be pulled: after the pull limit the stage
    fails, not retried, with the kubelet's reason."""
    reason = rng.choice(["ErrImagePull", "ImagePullBackOff", "InvalidImageName"])
    stages = _stages("200ms", compositing={"podAnnotations": {WAITING_REASON: reason}})
    return Item(
        "pull-failed",
        _videojob(name, {"prompt": "a missing image", "stages": stages}),
        Expected("Failed", "compositing", reason),
    )


def dependency_cycle(name: str, rng: random.Random) -> Item:
    """A pipeline whose cycle only the operator can see: the VideoJob is
    accepted, then Failed as InvalidSpec."""
    return Item(
        "cycle",
        _videojob(name, {"prompt": "a loop", "pipeline": CYCLE_PIPELINE}),
        Expected("Failed", None, "InvalidSpec"),
    )


ODD_TEXT = (
    "\u0645\u0631\u062d\u0628\u0627 \u202e\u0645\u0631\u062d\u0628\u0627\u202c "  # RTL, override
    "\U0001f469\u200d\U0001f4bb\U0001f3c4\ufe0f "  # ZWJ sequence, variation selector
    "e\u0301\u0301\u0301 "  # stacked combining marks
    "\u200b\ufeff\u2028\u2029\t\r\n "  # zero-width, BOM, line/paragraph separators
    "\u732b\u304c\u30b5\u30fc\u30d5\u30a3\u30f3 "  # CJK
    "'\"\\$(rm -rf /);`id`<script>{{.}}%s%n "  # shell, template and format strings
)


def hostile_accepted(prefix: str) -> list[Item]:
    """Strange but valid VideoJobs: each must run to Succeeded."""
    limit_prompt = (ODD_TEXT * 200)[:4000]
    # 64 values (the most a stage may have) and 15 annotations that, with the
    # run time's, fill a stage override's 16,384 characters to the last one.
    long_env = [{"name": f"VAR_{i}", "value": "x" * 16} for i in range(63)]
    long_env.append({"name": "VAR_63", "value": "x" * (16384 - 63 * 16 - 15 * 1000 - 2)})
    items = [
        Item(
            "hostile-prompt",
            _videojob(f"{prefix}-prompt", {"prompt": limit_prompt, "stages": _stages("0s")}),
            Expected("Succeeded"),
        ),
        Item(
            "hostile-name",
            # 253 characters, dots included: the longest name there can be.
            _videojob(
                (f"{prefix}-name." + "n" * 300)[:253],
                {"prompt": "a long name", "stages": _stages("0s")},
            ),
            Expected("Succeeded"),
        ),
        Item(
            "hostile-numbers",
            _videojob(
                f"{prefix}-numbers",
                {
                    "prompt": "everything at its limit",
                    "durationSeconds": 600,
                    "fps": 60,
                    "resolution": "9998x9998",
                    "voice": "x" * 64,
                    "priority": "low",
                    "ttlSecondsAfterFinished": 31536000,
                    "output": {"bucket": LONGEST_BUCKET, "prefix": "p/" * 256},
                    "stages": _stages(
                        "0s",
                        script_gen={
                            "backoffLimit": 20,
                            "activeDeadlineSeconds": 604800,
                            "env": long_env,
                            "podAnnotations": {
                                f"{KWOK_PREFIX}note-{i}": "n" * 1000 for i in range(15)
                            },
                        },
                        video_gen={"gpus": 8},
                    ),
                },
            ),
            Expected("Succeeded"),
        ),
        Item(
            "hostile-unknown-fields",
            # Unknown fields are pruned by the structural schema when the
            # client asks the API server to ignore them.
            {
                **_videojob(
                    f"{prefix}-unknown",
                    {
                        "prompt": "with extras",
                        "surprise": {"nested": [1, 2, 3]},
                        "stages": _stages("0s"),
                    },
                ),
                "status": {"phase": "Succeeded", "progress": "4/4"},
            },
            Expected("Succeeded"),
            query=[("fieldValidation", "Ignore")],
        ),
    ]
    # Overrides the API server accepts and the override policy refuses: the
    # VideoJob fails as InvalidSpec before any Job exists.
    refused_overrides = {
        "image": {"image": "docker.io/attacker/cryptominer:latest"},
        "command": {"command": ["sh", "-c", "cat /proc/self/environ"]},
        "tolerations": {"tolerations": [{"operator": "Exists"}]},
        "annotations": {"podAnnotations": {"vault.hashicorp.com/agent-inject": "true"}},
    }
    for kind, override in refused_overrides.items():
        items.append(
            Item(
                f"hostile-override-{kind}",
                _videojob(
                    f"{prefix}-override-{kind}",
                    {"prompt": kind, "stages": _stages("0s", video_gen=override)},
                ),
                Expected("Failed", None, "InvalidSpec"),
            )
        )
    # Stage summaries the status cannot hold, from stages that exit 0: each
    # is left out (the stage's message says why) and the VideoJob succeeds.
    # (voice_gen's: video_gen needs script_gen's scene count.)
    for kind, summary in HOSTILE_SUMMARIES.items():
        stages = _stages("0s", voice_gen={"podAnnotations": {TERMINATION_MESSAGE: summary}})
        items.append(
            Item(
                f"hostile-summary-{kind}",
                _videojob(f"{prefix}-summary-{kind}", {"prompt": kind, "stages": stages}),
                Expected("Succeeded"),
            )
        )
    return items


def hostile_rejected(prefix: str) -> list[Item]:
    """Bodies the API server must refuse at apply time (400 or 422)."""
    base = {"prompt": "fine", "stages": _stages("0s")}

    def spec(**changes: Any) -> dict[str, Any]:
        return {**base, **changes}

    bodies: list[tuple[str, dict[str, Any], list[tuple[str, str]]]] = [
        ("prompt-too-long", _videojob(f"{prefix}-r1", spec(prompt="p" * 4001)), []),
        ("prompt-blank", _videojob(f"{prefix}-r2", spec(prompt=" \t\n ")), []),
        ("prompt-missing", _videojob(f"{prefix}-r3", {"stages": _stages("0s")}), []),
        ("prompt-number", _videojob(f"{prefix}-r4", spec(prompt=42)), []),
        ("fps-zero", _videojob(f"{prefix}-r5", spec(fps=0)), []),
        ("duration-huge", _videojob(f"{prefix}-r6", spec(durationSeconds=2**63)), []),
        ("duration-negative", _videojob(f"{prefix}-r7", spec(durationSeconds=-1)), []),
        ("resolution-injection", _videojob(f"{prefix}-r8", spec(resolution="1x1;rm -rf /")), []),
        ("priority-unknown", _videojob(f"{prefix}-r9", spec(priority="urgent")), []),
        ("stage-unknown", _videojob(f"{prefix}-r10", spec(stages={"mining": {}})), []),
        (
            "gpus-too-many",
            _videojob(f"{prefix}-r11", spec(stages=_stages("0s", video_gen={"gpus": 9}))),
            [],
        ),
        (
            "quantity-malformed",
            _videojob(
                f"{prefix}-r12",
                spec(stages=_stages("0s", voice_gen={"resources": {"requests": {"cpu": "lots"}}})),
            ),
            [],
        ),
        (
            "quantity-negative",
            _videojob(
                f"{prefix}-r13",
                spec(stages=_stages("0s", voice_gen={"resources": {"limits": {"memory": "-1"}}})),
            ),
            [],
        ),
        (
            "prompt-unicode-spaces",
            _videojob(f"{prefix}-r14", spec(prompt="\u00a0\u2003\u3000")),
            [],
        ),
        (
            "env-reserved",
            _videojob(
                f"{prefix}-r15",
                spec(
                    stages=_stages(
                        "0s",
                        script_gen={"env": [{"name": "VIDOP_ARTIFACT_PREFIX", "value": "s3://x/"}]},
                    )
                ),
            ),
            [],
        ),
        ("name-too-long", _videojob(f"{prefix}-" + "x" * 260, spec()), []),
        ("name-uppercase", _videojob(f"{prefix}-Bad_Name", spec()), []),
        ("name-unicode", _videojob(f"{prefix}-vid\u00e9o", spec()), []),
        ("spec-not-an-object", {**_videojob(f"{prefix}-r17", {}), "spec": "run it"}, []),
        (
            "stage-override-too-large",
            _videojob(
                f"{prefix}-r19",
                spec(
                    stages=_stages(
                        "0s",
                        voice_gen={
                            "env": [{"name": f"V{i}", "value": "v" * 4096} for i in range(64)]
                        },
                    )
                ),
            ),
            [],
        ),
        (
            "unknown-field-strict",
            _videojob(f"{prefix}-r18", spec(surprise=True)),
            [("fieldValidation", "Strict")],
        ),
    ]
    return [Item(f"rejected-{kind}", body, None, query) for kind, body, query in bodies]


def mix(
    rng: random.Random,
    *,
    ok_count: int,
    retried_count: int,
    invalid_count: int,
    disrupted_count: int,
    cycle_count: int,
    hostile_rounds: int,
    oom_count: int = 0,
    pull_count: int = 0,
) -> list[Item]:
    """The chaos workload in a shuffled (seeded) order."""
    items: list[Item] = []
    makers = (
        (ok, ok_count, "ok"),
        (retried_then_failed, retried_count, "retry"),
        (invalid_input, invalid_count, "bad"),
        (disrupted, disrupted_count, "evicted"),
        (dependency_cycle, cycle_count, "cycle"),
        (oom_then_more_memory, oom_count, "oom"),
        (oom_at_every_size, oom_count, "oom-max"),
        (image_pull_failure, pull_count, "pull"),
    )
    for maker, count, stem in makers:
        items += [maker(f"{stem}-{index:04d}", rng) for index in range(count)]
    for round_ in range(hostile_rounds):
        items += hostile_accepted(f"odd{round_}")
        items += hostile_rejected(f"bad{round_}")
    rng.shuffle(items)
    return items
