"""The operator's entry point: ``vid-operator`` (``python -m vid_operator``).

Sets up logging through structlog (kopf's own log lines included: JSON, or
readable lines with ``--log-format=console``), reads
the configuration (``$VIDOP_CONFIG``) for the namespaces to serve, and runs
kopf with the handlers of :mod:`vid_operator.handlers`, a liveness
endpoint for the kubelet's probes and, on a port of its own, the Prometheus
metrics of :mod:`vid_operator.metrics`.

With ``--leader-elect`` (the chart's default, for two or more replicas) the
process first stands by for the Lease of :mod:`vid_operator.leader`: no
watches and no writes but its tries at the Lease, its own health endpoint
answering all the while (a standby is live, and ready: able to take over).
Once it holds the Lease it runs kopf in the same event loop; if it cannot
renew the Lease it exits at once with status 1 (its Deployment starts it
again, as a standby), and on SIGTERM it stops kopf and releases the Lease.
A standby serves metrics too (its process metrics; no VideoJobs).

"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import urllib.parse
from collections.abc import Collection

import kopf
import structlog
from aiohttp import web

from vid_operator import config, kube, leader, metrics

log = structlog.get_logger("vid_operator")

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
        help="URL of the liveness endpoint (kopf's; under --leader-elect, the process's own)",
    )
    parser.add_argument(
        "--metrics-bind-address",
        default=":8081",
        help="HOST:PORT (or :PORT) to serve Prometheus metrics on at /metrics; 0 or empty: none",
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging (--log-level=debug)")
    parser.add_argument("--log-level", choices=list(LOG_LEVELS), default="info")
    parser.add_argument(
        "--log-format",
        choices=["json", "console"],
        default="json",
        help="json: one object per line; console: readable lines",
    )
    election = parser.add_argument_group("leader election (off unless --leader-elect)")
    election.add_argument(
        "--leader-elect",
        action="store_true",
        help="stand by until holding the Lease; run only while holding it",
    )
    election.add_argument("--leader-elect-lease-name", default="vid-operator")
    election.add_argument(
        "--leader-elect-namespace",
        default=os.environ.get("VIDOP_POD_NAMESPACE"),
        help="the Lease's namespace (default: $VIDOP_POD_NAMESPACE)",
    )
    election.add_argument(
        "--leader-elect-identity",
        default=None,
        help="this candidate's holderIdentity (default: host name and a random part)",
    )
    defaults = leader.Timings()
    for flag, default in (
        ("--leader-elect-lease-duration", defaults.lease_duration),
        ("--leader-elect-renew-deadline", defaults.renew_deadline),
        ("--leader-elect-retry-period", defaults.retry_period),
    ):
        election.add_argument(flag, type=float, default=default, help="seconds")
    args = parser.parse_args(argv)
    try:
        bind = metrics.bind_address(args.metrics_bind_address)
    except ValueError as error:
        parser.error(f"--metrics-bind-address: {error}")
    timings: leader.Timings | None = None
    if args.leader_elect:
        if not args.leader_elect_namespace:
            parser.error("--leader-elect needs --leader-elect-namespace or $VIDOP_POD_NAMESPACE")
        try:
            timings = leader.Timings(
                args.leader_elect_lease_duration,
                args.leader_elect_renew_deadline,
                args.leader_elect_retry_period,
            )
        except ValueError as error:
            parser.error(str(error))
    configure_logging(
        logging.DEBUG if args.verbose else LOG_LEVELS[args.log_level], args.log_format
    )

    from vid_operator import handlers  # noqa: F401  (registers the handlers)

    namespaces = config.load().watch_namespaces
    if bind is not None:
        metrics.serve(*bind)
        log.info("serving metrics", address=f"{bind[0]}:{bind[1]}", path="/metrics")
    if timings is not None:
        elector = leader.LeaseElector(
            kube.api_client(),
            name=args.leader_elect_lease_name,
            namespace=args.leader_elect_namespace,
            identity=args.leader_elect_identity or leader.default_identity(),
            timings=timings,
        )
        return asyncio.run(_run_elected(elector, namespaces, args.liveness))
    kopf.run(
        standalone=True,  # one replica; no peering objects to create or watch
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=args.liveness,
    )
    return 0


async def _run_elected(
    elector: leader.LeaseElector, namespaces: Collection[str], liveness: str
) -> int:
    """Stand by, lead, and stop as :mod:`vid_operator.main` says."""
    health = await _serve_health(liveness, elector)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # kopf puts its own handlers in place once it starts; it gets ``stop`` too,
    # for a signal that comes between the two.
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop.set)
    try:
        acquiring = asyncio.create_task(elector.acquire())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({acquiring, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not acquiring.done():
            acquiring.cancel()
            return 0
        acquiring.result()  # an error of the election itself, should there be one
        stopping.cancel()
        # Created before kopf starts, so kopf's shutdown leaves it alone.
        holding = asyncio.create_task(elector.hold(), name="lease renewal")
        running = asyncio.create_task(
            kopf.operator(
                standalone=True,  # the Lease decides who runs, not kopf's peering
                clusterwide=not namespaces,
                namespaces=namespaces,
                stop_flag=stop,
            )
        )
        await asyncio.wait({holding, running}, return_when=asyncio.FIRST_COMPLETED)
        if holding.done():
            # Not a moment longer: another replica may hold the Lease already.
            log.error("leadership lost; exiting so that only the new leader writes")
            logging.shutdown()
            os._exit(1)
        holding.cancel()
        await elector.release()
        running.result()  # kopf's own failure, if it ended with one
        return 0
    finally:
        await health.cleanup()


async def _serve_health(url: str, elector: leader.LeaseElector) -> web.AppRunner:
    """The liveness (and readiness) endpoint at ``url`` for the process's
    whole life, standby and leader alike: it answers while the event loop
    that runs both the election and kopf does, and says whether this
    replica leads. A standby is ready too: it is ready to take over, and a
    rolling update waits for the new pod's readiness before it stops the
    leader."""

    async def answer(_: web.Request) -> web.Response:
        return web.Response(
            text=json.dumps({"leading": elector.leading}), content_type="application/json"
        )

    parsed = urllib.parse.urlsplit(url)
    app = web.Application()
    app.router.add_get(parsed.path or "/", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = 80 if parsed.port is None else parsed.port
    await web.TCPSite(runner, parsed.hostname, port).start()
    return runner


if __name__ == "__main__":
    sys.exit(main())
