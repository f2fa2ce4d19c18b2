"""The chaos suite: many VideoJobs, a killed operator, a restarted API server,
failing and disrupted pods and hostile input; then invariants over everything
that was seen. ``test_chaos_short.py`` runs in ``make test``; ``make chaos``
runs ``chaos_full.py`` (not collected by ``pytest tests``). See
``docs/chaos.md``.
"""
