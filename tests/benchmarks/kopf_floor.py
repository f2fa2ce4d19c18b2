"""kopf with nothing to do: what kopf itself spends on a pipeline's events.

The benchmark driver runs it beside the oracle (``python -m kopf run
--standalone -m tests.benchmarks.kopf_floor``): it watches the oracle's Jobs
and pods as the operator watches its own (filtered by label on the API
server, no diff base, no posting) with handlers that return at once. Its CPU
per pipeline is the part of the operator's that no handler code can remove,
short of leaving kopf.
"""

from __future__ import annotations

from typing import Any

import kopf

from tests.benchmarks.oracle import ORACLE_LABEL


class _NoDiffBase(kopf.DiffBaseStorage):
    """As the operator's: no deep copies for change detection (no handler needs them)."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.enabled = False
    settings.scanning.disabled = True
    settings.persistence.diffbase_storage = _NoDiffBase()
    settings.watching.label_selectors["batch", "jobs"] = ORACLE_LABEL
    settings.watching.label_selectors["", "pods"] = ORACLE_LABEL


@kopf.on.event("batch", "v1", "jobs", labels={ORACLE_LABEL: kopf.PRESENT})
def job_seen(**_: Any) -> None:
    return None


@kopf.on.event("", "v1", "pods", labels={ORACLE_LABEL: kopf.PRESENT})
def pod_seen(**_: Any) -> None:
    return None
