"""The loudness stage: voice_gen's narration normalised to a target loudness (see ``main``).

Not in the default pipeline: a custom pipeline puts it between voice_gen and
compositing and tells compositing to take its narration from here
(``NARRATION_STAGE``, :mod:`vidop_stages.compositing.sources`). The reference
for adding a stage: a subpackage, a console script, a Dockerfile.
"""
