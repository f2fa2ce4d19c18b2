"""The operator's entry point: ``vid-operator`` (``python -m vid_operator``).

Sets up logging through structlog (kopf's own log lines included: JSON, or
readable lines with ``--log-format=console``), reads
the configuration (``$VIDOP_CONFIG``) for the namespaces to serve, and runs
kopf with the handlers of :mod:`vid_operator.handlers` and a liveness
endpoint for the kubelet's probes.
"""

from __future__ import annotations

import argparse
import logging
import sys

import kopf
import structlog

from vid_operator import config

LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logging(level: int = logging.INFO, log_format: str = "json") -> None:
    """One JSON object per line on stdout (``console``: one readable line), for
    ours and kopf's messages alike."""
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
                *(
                    [structlog.dev.ConsoleRenderer(colors=False)]
                    if log_format == "console"
                    else [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
                ),
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
    parser.add_argument("--verbose", action="store_true", help="debug logging (--log-level=debug)")
    parser.add_argument("--log-level", choices=list(LOG_LEVELS), default="info")
    parser.add_argument(
        "--log-format",
        choices=["json", "console"],
        default="json",
        help="json: one object per line; console: readable lines",
    )
    args = parser.parse_args(argv)
    configure_logging(
        logging.DEBUG if args.verbose else LOG_LEVELS[args.log_level], args.log_format
    )

    from vid_operator import handlers  # noqa: F401  (registers the handlers)

    namespaces = config.load().watch_namespaces
    kopf.run(
        standalone=True,  # one replica; no peering objects to create or watch
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=args.liveness,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
