"""Figures from the benchmark's runs and audit log, as JSON and as markdown.

Called by :mod:`tests.benchmarks.bench` once every scenario has run. Pure
arithmetic over what the runs recorded and what :mod:`tests.benchmarks.audit`
read: percentiles, ratios of the operator to the oracle, and the targets the
issue set, each printed next to its measurement (nothing fails on them).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from tests.benchmarks.audit import WRITE_VERBS, AuditRecord, by_verb

if TYPE_CHECKING:
    from tests.benchmarks.bench import Run

# The DAG, by stage name: what each stage waits for. The benchmark runs the
# default pipeline; bench.py checks that the configuration still has it.
DEPENDENCIES = {
    "script_gen": [],
    "voice_gen": ["script_gen"],
    "video_gen": ["script_gen"],
    "compositing": ["voice_gen", "video_gen"],
}


# The retained scenarios, each under its own key of the results: what their
# VideoJobs are.
RETAINED_WHAT = {
    "retained": "the benchmark's pipeline",
    "retained-max": "each of the largest size the CRD allows",
    "retained-jobs": "the benchmark's pipeline, each run through the operator, "
    "its stage Jobs and their pods kept",
}
RETAINED_KEYS = tuple(RETAINED_WHAT)
# The size retained-jobs' targets are stated for: a smaller run is shown
# against them with a linear extrapolation, and not judged.
RETAINED_JOBS_TARGET_SIZE = 10_000


def percentile(values: list[float], share: float) -> float | None:
    """The ``share`` (0..1) percentile, interpolated between ranks."""
    if not values:
        return None
    ordered = sorted(values)
    rank = share * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def distribution(values: list[float]) -> dict[str, float | int | None]:
    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 1)

    return {
        "n": len(values),
        "p50": rounded(percentile(values, 0.50)),
        "p95": rounded(percentile(values, 0.95)),
        "p99": rounded(percentile(values, 0.99)),
        "max": rounded(max(values) if values else None),
        "mean": rounded(sum(values) / len(values) if values else None),
    }


def _user(run: Run, operator_user: str, oracle_user: str) -> str:
    return operator_user if run.driver == "operator" else oracle_user


def _span(run: Run, record: AuditRecord, user: str) -> dict[str, tuple[float, float]]:
    """Pipeline -> (submitted, ended) on the API server's clock. The operator's
    pipeline starts with the VideoJob's create and ends with the status write
    that says it is done; the oracle's starts with its first Job's create and
    ends when the Job controller marks its last Job Complete."""
    spans = {}
    for name in run.names:
        jobs = run.job_names[name]
        if run.driver == "operator":
            start = record.videojob_created.get((run.namespace, name))
            end = record.videojob_finished.get((run.namespace, name))
        else:
            creates = [record.job_created.get((user, run.namespace, j)) for j in jobs.values()]
            finishes = [record.job_finished.get((run.namespace, j)) for j in jobs.values()]
            start = min((c for c in creates if c is not None), default=None)
            end = None if None in finishes else max(f for f in finishes if f is not None)
        if start is not None and end is not None:
            spans[name] = (start, end)
    return spans


def _reactions(run: Run, record: AuditRecord, user: str) -> list[float]:
    """Milliseconds from the last dependency's Job marked Complete to the
    next stage's Job create arriving, for every stage with dependencies."""
    reactions = []
    for name in run.names:
        jobs = run.job_names[name]
        for stage, dependencies in DEPENDENCIES.items():
            if not dependencies:
                continue
            created = record.job_created.get((user, run.namespace, jobs[stage]))
            finished = [record.job_finished.get((run.namespace, jobs[d])) for d in dependencies]
            if created is None or None in finished:
                continue
            reactions.append((created - max(f for f in finished if f is not None)) * 1000)
    return reactions


def pipelines_per_second(run: Run, record: AuditRecord, user: str) -> float:
    spans = _span(run, record, user)
    if not spans:
        return 0.0
    first = min(s for s, _ in spans.values())
    last = max(e for _, e in spans.values())
    return len(spans) / max(last - first, 1e-6)


def figures(run: Run, record: AuditRecord, operator_user: str, oracle_user: str) -> dict[str, Any]:
    """Everything measured of one driver's run of one scenario."""
    user = _user(run, operator_user, oracle_user)
    spans = _span(run, record, user)
    stages = sum(
        1
        for name in run.names
        for job in run.job_names[name].values()
        if (run.namespace, job) in record.job_finished
    )
    drain = max(e for _, e in spans.values()) - min(s for s, _ in spans.values()) if spans else None
    counted = record.count(user, run.started, run.ended, run.namespace)
    writes = sum(n for (verb, _), n in counted.items() if verb in WRITE_VERBS)
    per_pipeline = {
        kind: {what: round(n / len(run.names), 2) for what, n in entries.items()}
        for kind, entries in by_verb(counted).items()
    }
    result: dict[str, Any] = {
        "pipelines": len(run.names),
        "succeeded": sum(1 for p in run.phases.values() if p == "Succeeded"),
        "end_to_end_ms": distribution([(e - s) * 1000 for s, e in spans.values()]),
        "reaction_ms": distribution(_reactions(run, record, user)),
        "drain_seconds": None if drain is None else round(drain, 2),
        "stages_per_second": None if not drain else round(stages / drain, 2),
        "cpu_ms_per_pipeline": round(run.cpu_seconds * 1000 / len(run.names), 2),
        "requests_per_pipeline": per_pipeline,
        "writes_per_stage": round(writes / stages, 2) if stages else None,
    }
    if run.kopf_floor_cpu_seconds is not None:
        result["kopf_floor_cpu_ms_per_pipeline"] = round(
            run.kopf_floor_cpu_seconds * 1000 / len(run.names), 2
        )
    if run.peak_rss_mib is not None:
        result["rss_mib"] = round(run.rss_mib or 0, 1)
        result["peak_rss_mib"] = round(run.peak_rss_mib, 1)
    return result


def _ratio(operator: float | None, oracle: float | None) -> float | None:
    if operator is None or not oracle:
        return None
    return round(operator / oracle, 2)


def results(
    runs: dict[str, dict[str, Run]],
    extra: dict[str, Any],
    record: AuditRecord,
    operator_user: str,
    oracle_user: str,
) -> dict[str, Any]:
    scenarios: dict[str, Any] = {}
    for name, by_driver in runs.items():
        measured = {
            driver: figures(run, record, operator_user, oracle_user)
            for driver, run in by_driver.items()
        }
        operator, oracle = measured.get("operator"), measured.get("oracle")
        if operator and oracle:
            measured["operator_vs_oracle"] = {
                "end_to_end_p50": _ratio(
                    operator["end_to_end_ms"]["p50"], oracle["end_to_end_ms"]["p50"]
                ),
                "end_to_end_p99": _ratio(
                    operator["end_to_end_ms"]["p99"], oracle["end_to_end_ms"]["p99"]
                ),
                "overhead_ms_per_videojob_mean": _difference(
                    operator["end_to_end_ms"]["mean"], oracle["end_to_end_ms"]["mean"]
                ),
                "overhead_ms_per_videojob_p50": _difference(
                    operator["end_to_end_ms"]["p50"], oracle["end_to_end_ms"]["p50"]
                ),
                "reaction_p50": _ratio(
                    operator["reaction_ms"]["p50"], oracle["reaction_ms"]["p50"]
                ),
                "reaction_p99": _ratio(
                    operator["reaction_ms"]["p99"], oracle["reaction_ms"]["p99"]
                ),
                "throughput": _ratio(operator["stages_per_second"], oracle["stages_per_second"]),
                "cpu": _ratio(operator["cpu_ms_per_pipeline"], oracle["cpu_ms_per_pipeline"]),
                "cpu_vs_kopf_floor": _ratio(
                    operator["cpu_ms_per_pipeline"], oracle.get("kopf_floor_cpu_ms_per_pipeline")
                ),
            }
        scenarios[name] = measured
    kept: dict[str, dict[str, Any]] = {}
    for key in RETAINED_KEYS:
        retained = dict(extra.get(key) or {})
        if retained:
            since, until = retained.pop("window")
            counted = record.count(operator_user, since, until, retained["namespace"])
            retained["operator_requests_at_start"] = by_verb(counted)
        kept[key] = retained
    return {"scenarios": scenarios, **kept, "targets": targets(scenarios, kept)}


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 1)


def extrapolated(kept: dict[str, Any], size: int = RETAINED_JOBS_TARGET_SIZE) -> dict[str, float]:
    """A retained scenario's start-up figures scaled linearly to ``size``
    VideoJobs: time to idle as that of the operator started with nothing to
    do plus the growth per VideoJob, peak RSS as the template run's RSS plus
    the growth per VideoJob. Anything worse than linear is missed: only a
    run at ``size`` tells."""
    scale = size / kept["videojobs"]
    empty = kept.get("empty_settled_seconds", 0.0)
    return {
        "settled_seconds": round(empty + (kept["settled_seconds"] - empty) * scale, 1),
        "peak_rss_mib": round(
            kept["template_rss_mib"] + (kept["peak_rss_mib"] - kept["template_rss_mib"]) * scale,
            1,
        ),
    }


def targets(scenarios: dict[str, Any], kept: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target of the issue next to what was measured for it. ``kept``:
    the figures of the retained scenarios, by key (``RETAINED_KEYS``)."""
    rows: list[dict[str, Any]] = []

    def row(
        target: str,
        scenario: str,
        measured: float | None,
        goal: float,
        higher: bool,
        judged: bool = True,
        note: str | None = None,
    ) -> None:
        met = (
            None
            if measured is None or not judged
            else (measured >= goal if higher else measured <= goal)
        )
        rows.append(
            {
                "target": target,
                "scenario": scenario,
                "measured": measured,
                "goal": goal,
                "met": met,
                **({"note": note} if note else {}),
            }
        )

    bursts = [
        n for n in scenarios if n.startswith("burst-") and "operator_vs_oracle" in scenarios[n]
    ]
    if bursts:
        largest = max(bursts, key=lambda n: scenarios[n]["operator"]["pipelines"])
        ratio = scenarios[largest]["operator_vs_oracle"]
        row(
            "largest burst: throughput (stages/s), operator / oracle",
            largest,
            ratio["throughput"],
            0.9,
            higher=True,
        )
        row(
            "largest burst: end to end p50, operator / oracle",
            largest,
            ratio["end_to_end_p50"],
            1.1,
            higher=False,
        )
    if "operator_vs_oracle" in scenarios.get("steady", {}):
        row(
            "half load: reaction p99, operator / oracle",
            "steady",
            scenarios["steady"]["operator_vs_oracle"]["reaction_p99"],
            3,
            higher=False,
        )
    for name, measured in scenarios.items():
        ratio = measured.get("operator_vs_oracle", {})
        if ratio.get("cpu_vs_kopf_floor") is not None:
            row(
                "CPU per pipeline, operator / kopf alone (no-op handlers)",
                name,
                ratio["cpu_vs_kopf_floor"],
                1.5,
                higher=False,
            )
    for name, measured in scenarios.items():
        if "operator" in measured:
            row(
                "operator writes per stage",
                name,
                measured["operator"]["writes_per_stage"],
                2,
                higher=False,
            )
    retained = kept.get("retained")
    if retained:
        scenario = f"retained-{retained['videojobs']}"
        row(
            "start-up to idle with finished VideoJobs retained (s)",
            scenario,
            retained["settled_seconds"],
            20,
            higher=False,
        )
        row(
            "operator peak RSS with finished VideoJobs retained (MiB)",
            scenario,
            retained["peak_rss_mib"],
            400,
            higher=False,
        )
    retained_max = kept.get("retained-max")
    if retained_max:
        row(
            "operator RSS per retained VideoJob of the largest size (KiB)",
            f"retained-max-{retained_max['videojobs']}",
            retained_max["rss_kib_per_videojob"],
            50,
            higher=False,
        )
    retained_jobs = kept.get("retained-jobs")
    if retained_jobs:
        size = retained_jobs["videojobs"]
        judged = size >= RETAINED_JOBS_TARGET_SIZE
        scaled = extrapolated(retained_jobs)
        for target, figure, goal in (
            (
                "start-up to idle with finished VideoJobs, their Jobs and pods retained (s)",
                "settled_seconds",
                20,
            ),
            (
                "operator peak RSS with finished VideoJobs, their Jobs and pods retained (MiB)",
                "peak_rss_mib",
                400,
            ),
        ):
            row(
                target,
                f"retained-jobs-{size}",
                retained_jobs[figure],
                goal,
                higher=False,
                judged=judged,
                note=None
                if judged
                else f"goal for {RETAINED_JOBS_TARGET_SIZE:,}; linear to it: {scaled[figure]}",
            )
    return rows


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def markdown(results: dict[str, Any]) -> str:
    """A short report: one table per scenario, then the targets."""
    lines = []
    for name, measured in results["scenarios"].items():
        operator, oracle = measured.get("operator", {}), measured.get("oracle", {})
        ratio = measured.get("operator_vs_oracle", {})
        lines += [
            f"### {name}",
            "",
            "| figure | operator | oracle | operator / oracle |",
            "|---|---|---|---|",
        ]
        for label, key, ratio_key in (
            ("end to end p50 (ms)", ("end_to_end_ms", "p50"), "end_to_end_p50"),
            ("end to end p99 (ms)", ("end_to_end_ms", "p99"), "end_to_end_p99"),
            ("reaction p50 (ms)", ("reaction_ms", "p50"), "reaction_p50"),
            ("reaction p95 (ms)", ("reaction_ms", "p95"), None),
            ("reaction p99 (ms)", ("reaction_ms", "p99"), "reaction_p99"),
            ("stages per second", ("stages_per_second",), "throughput"),
            ("drain (s)", ("drain_seconds",), None),
            ("CPU per pipeline (ms)", ("cpu_ms_per_pipeline",), "cpu"),
            (
                "kopf alone, no-op handlers: CPU per pipeline (ms); operator / kopf alone",
                ("kopf_floor_cpu_ms_per_pipeline",),
                "cpu_vs_kopf_floor",
            ),
            ("writes per stage", ("writes_per_stage",), None),
            ("peak RSS (MiB)", ("peak_rss_mib",), None),
        ):

            def pick(figures: dict[str, Any], path: tuple[str, ...] = key) -> Any:
                value: Any = figures
                for part in path:
                    value = value.get(part) if isinstance(value, dict) else None
                return value

            lines.append(
                f"| {label} | {_cell(pick(operator))} | {_cell(pick(oracle))} "
                f"| {_cell(ratio.get(ratio_key) if ratio_key else None)} |"
            )
        overhead = ratio.get("overhead_ms_per_videojob_mean")
        lines += [
            "",
            f"{operator.get('succeeded')}/{operator.get('pipelines')} VideoJobs succeeded; "
            f"overhead per VideoJob vs the oracle: {_cell(overhead)} ms (mean), "
            f"{_cell(ratio.get('overhead_ms_per_videojob_p50'))} ms (p50).",
            "",
            "Operator requests per VideoJob: "
            + "; ".join(
                f"{kind}: " + ", ".join(f"{what} {n}" for what, n in entries.items())
                for kind, entries in operator.get("requests_per_pipeline", {}).items()
            ),
            "",
        ]
    for retained_key in RETAINED_KEYS:
        kept = results.get(retained_key)
        if not kept:
            continue
        described = RETAINED_WHAT[retained_key]
        lines += [
            f"### {retained_key}",
            "",
            f"{kept['videojobs']} finished VideoJobs, {described} "
            f"({kept['spec_json_bytes']} bytes of spec as JSON each). "
            "Operator start with them: liveness after "
            f"{kept['liveness_seconds']} s, idle after {kept['settled_seconds']} s, "
            f"{kept['cpu_seconds_to_settle']} s CPU; RSS {kept['rss_mib']} MiB (peak "
            f"{kept['peak_rss_mib']} MiB), {kept['template_rss_mib']} MiB with the template "
            f"VideoJob alone: **{kept['rss_kib_per_videojob']} KiB per retained VideoJob**; "
            "requests: "
            + "; ".join(
                f"{kind}: " + ", ".join(f"{what} {n}" for what, n in entries.items())
                for kind, entries in kept.get("operator_requests_at_start", {}).items()
            ),
            "",
            "Per 1,000 VideoJobs, over an operator started with none (idle after "
            f"{_cell(kept.get('empty_settled_seconds'))} s, "
            f"{_cell(kept.get('empty_cpu_seconds_to_settle'))} s CPU): "
            f"{_cell(kept.get('settled_seconds_per_1000_videojobs'))} s to idle, "
            f"{_cell(kept.get('cpu_seconds_per_1000_videojobs'))} s CPU; peak RSS "
            f"{_cell(kept.get('peak_rss_kib_per_videojob'))} KiB per VideoJob over the "
            "template run's RSS"
            + ("" if kept.get("settled", True) else "; **not idle when the timeout ran out**")
            + ".",
            "",
        ]
        if "jobs" in kept:
            scaled = extrapolated(kept)
            lines += [
                f"In the namespace at operator start: {kept['jobs']} Jobs, {kept['pods']} pods "
                f"(the VideoJobs were run through an operator in {kept['populate_seconds']} s, "
                f"{kept['succeeded']}/{kept['videojobs']} succeeded; its RSS after them "
                f"{kept['populating_operator_rss_mib']} MiB). Linear to "
                f"{RETAINED_JOBS_TARGET_SIZE:,} VideoJobs: idle after about "
                f"{scaled['settled_seconds']} s, peak RSS about {scaled['peak_rss_mib']} MiB "
                f"(judged only by a run with `--retained-jobs {RETAINED_JOBS_TARGET_SIZE}`).",
                "",
            ]
    lines += [
        "### targets",
        "",
        "| target | scenario | measured | goal | met |",
        "|---|---|---|---|---|",
    ]
    for target in results["targets"]:
        met = {True: "yes", False: "**no**", None: "-"}[target["met"]]
        if target.get("note"):
            met += f" ({target['note']})"
        lines.append(
            f"| {target['target']} | {target['scenario']} | {_cell(target['measured'])} "
            f"| {target['goal']} | {met} |"
        )
    return "\n".join(lines) + "\n"
