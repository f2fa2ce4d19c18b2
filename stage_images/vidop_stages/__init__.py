"""vid-operator's reference stages: the programs the default pipeline runs.

One subpackage per stage (``script_gen``, ``voice_gen``, ``video_gen``,
``compositing``, and ``loudness``, which only a custom pipeline runs), each
with its ``main`` (the console script its Dockerfile runs,
``vidop-stage-<stage>``) beside pure modules the unit tests cover. All of
them follow the stage contract (:mod:`vid_operator.contract`) through one
shared runtime, :mod:`vidop_stages.runtime`. They do real work offline and
without a GPU: rule-based script writing, espeak-ng speech, Pillow keyframes
and ffmpeg encoding (NVENC when a working NVIDIA GPU is there).

The package lives in ``stage_images/vidop_stages/`` (a source root of the
project's one distribution beside ``operator/``), each stage's Dockerfile in its
subpackage's folder.
"""
