"""The compositing stage: video, narration and subtitles in one MP4 (see ``main``)."""
