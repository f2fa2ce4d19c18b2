"""The operator's runtime: what turns watch events into API writes.

Floors, top to bottom (an import-linter ``layers`` contract keeps them):

- :mod:`.controller` runs reconciles: it takes a VideoJob's lock, freezes a
  :class:`~.reconciler.Snapshot` from memory and the watch's indexes, asks the
  reconciler for an :class:`~.reconciler.Outcome`, applies it through
  :class:`vid_operator.kube.Kube` in a worker thread, and remembers the result.
- :mod:`.reconciler` decides (pure: a snapshot in, an outcome out) and
  :mod:`.timers` waits (keyed delayed calls, a periodic loop); neither knows
  the other.
- :mod:`.memory` (one record per VideoJob) and :mod:`.expectations` (Jobs
  created but not yet seen) hold the state between events.

:mod:`vid_operator.handlers` wires kopf's events to the controller and is the
only module that knows kopf.
"""
