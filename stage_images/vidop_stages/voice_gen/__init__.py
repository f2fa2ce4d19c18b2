"""The voice_gen stage: the script's narration spoken and subtitled (see ``main``)."""
