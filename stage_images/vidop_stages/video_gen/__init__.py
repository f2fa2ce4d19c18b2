"""The video_gen stage: the script's scenes drawn, animated and encoded (see ``main``)."""
