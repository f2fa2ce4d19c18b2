"""The benchmarks of vid-operator against the control plane's own floor.

Not tests: ``make bench`` runs ``python -m tests.benchmarks.bench``, which
prints figures and writes them under ``bench-results/``; nothing here matches
pytest's ``test_*.py`` pattern, so ``pytest tests`` never collects it. See
``docs/benchmarks.md``.
"""
