"""The operator's entry point: ``vid-operator`` (``python -m vid_operator``).

Sets up JSON logging through structlog (kopf's own log lines included), reads
the configuration (``$VIDOP_CONFIG``) for the namespaces to serve, and runs
kopf with the handlers of :mod:`vid_operator.handlers`, a liveness
endpoint for the kubelet's probes and, on a port of its own, the Prometheus
metrics of :mod:`vid_operator.metrics`.
"""

from __future__ import annotations

import argparse
import logging
import sys

import kopf
import structlog

from vid_operator import config, metrics


def configure_logging(level: int = logging.INFO) -> None:
    """One JSON object per line on stdout, for ours and kopf's messages alike."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The kubernetes client logs request bodies at DEBUG; never let them through.
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    # kopf says "Handler ... succeeded" for every watch event: noise at scale.
    if level > logging.DEBUG:
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vid-operator", description=__doc__)
    parser.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="URL kopf serves the liveness probe on",
    )
    parser.add_argument(
        "--metrics-bind-address",
        default=":8081",
        help="HOST:PORT (or :PORT) to serve Prometheus metrics on at /metrics; 0 or empty: none",
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    try:
        bind = metrics.bind_address(args.metrics_bind_address)
    except ValueError as error:
        parser.error(f"--metrics-bind-address: {error}")
    configure_logging(logging.DEBUG if args.verbose else logging.INFO)

    from vid_operator import handlers  # noqa: F401  (registers the handlers)

    namespaces = config.load().watch_namespaces
    if bind is not None:
        metrics.serve(*bind)
        structlog.get_logger("vid_operator").info(
            "serving metrics", address=f"{bind[0]}:{bind[1]}", path="/metrics"
        )
    kopf.run(
        standalone=True,  # one replica; no peering objects to create or watch
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=args.liveness,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
