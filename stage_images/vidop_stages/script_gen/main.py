"""script_gen's entry point (``vidop-stage-script-gen``): prompt in, scene script out.

The first stage, and the one that plans the timeline every later stage keeps
to (:mod:`vidop_stages.script_gen.planner`). Writes
``script_gen/script.json`` (:mod:`vidop_stages.artifacts`); the summary gives
its URI and the number of scenes and sentences.
"""

from __future__ import annotations

import sys

from vidop_stages import artifacts
from vidop_stages.runtime import StageContext, Summary, run_stage
from vidop_stages.script_gen.planner import plan_script


def main() -> None:
    sys.exit(run_stage(generate_script))


def generate_script(context: StageContext) -> Summary:
    script = plan_script(context.params)
    path = context.workdir / artifacts.SCRIPT.name
    path.write_text(script.to_json(), encoding="utf-8")
    return {
        "script": context.store.publish(path, artifacts.SCRIPT),
        "scenes": len(script.scenes),
        "sentences": len(script.sentences),
        "durationSeconds": script.duration_seconds,
    }
