"""The script_gen stage: the prompt becomes a scene script (see ``main``)."""
