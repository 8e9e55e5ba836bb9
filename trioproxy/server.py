"""Serving the app (:func:`~.serving.serve_app`: hypercorn's Trio worker), and shutting down
gracefully.

On SIGINT, SIGTERM or SIGHUP (:data:`STOP_SIGNALS`) the listeners close at once,
in-flight requests get ``shutdown_grace`` seconds to finish, and whatever is left is then
ended with 503 or an SSE error event, its upstream closed. A second signal during the
drain cancels at once.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio
from hypercorn.config import Config

from .activity import set_activity_tracker
from .app import create_app
from .diagnostics import is_loopback_address
from .serving import serve_app
from .settings import Settings
from .workers.listen import BACKLOG

if TYPE_CHECKING:
    from .workers.cluster import Cluster

log = logging.getLogger("trioproxy")

SHUTDOWN_MARGIN = 5.0
#: What stops the proxy gracefully: Ctrl+C, a service manager, and the hang-up of the
#: terminal or ssh session it runs in (whose default action would cut every stream).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def hypercorn_config(settings: Settings) -> Config:
    """The hypercorn configuration for ``settings``."""
    config = Config()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    config.bind = [f"{host}:{settings.port}"]
    # Our own deadline ends leftover requests with an error at shutdown_grace; hypercorn's
    # comes later so those error events still reach the clients.
    config.graceful_timeout = settings.shutdown_grace + SHUTDOWN_MARGIN
    config.include_server_header = False
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    # LLM clients keep connections open between turns; keep-alive is cheap on Trio.
    config.keep_alive_timeout = 75
    # Bursts of thousands of clients must not overflow the kernel's accept queue.
    config.backlog = BACKLOG
    return config


def sole_os_error(exc: BaseException) -> OSError | None:
    """The OSError that ``exc`` is, or that is all its (nested) exception groups hold."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, OSError) else None


def os_error_text(error: OSError, address: str) -> str:
    """What stopped start-up, in a few words: a file that cannot be opened (the access
    log's, say) is named; any other OSError is the listening ``address``'s."""
    reason = error.strerror or str(error)
    reason = f"{reason[:1].lower()}{reason[1:]}"
    if error.filename is not None:
        return f"cannot open {error.filename}: {reason}"
    return f"cannot listen on {address}: {reason}"


def log_start(settings: Settings, binds: list[str], extra: str = "") -> None:
    """The start-up lines: where the proxy listens, its backends, and warnings."""
    if settings.embedded_mock:
        log.info(
            "no backend configured: serving the embedded mock.1 backend "
            "(set OPENAI_API_KEY or ANTHROPIC_API_KEY, or use --config)"
        )
    log.info(
        "trioproxy on %s; backends: %s; activity tracking %s%s",
        " ".join(binds),
        ", ".join(f"{spec.name} ({spec.type.value})" for spec in settings.backends),
        "on" if settings.enable_activity_tracking else "off",
        extra,
    )
    if not settings.client_keys and not (
        settings.host == "localhost" or is_loopback_address(settings.host)
    ):
        log.warning(
            "!!! listening on %s with no client keys: anyone who can reach this "
            "address can spend your backends' API keys. Set --client-keys-env "
            "(see docs/operations.md) or bind 127.0.0.1.",
            settings.host,
        )


async def serve(
    settings: Settings,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    cluster: Cluster | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the proxy until ``shutdown_trigger`` returns (or a signal of :data:`STOP_SIGNALS`).

    ``task_status.started`` receives the bound URLs once the listeners are up.
    ``cluster``: serve as one of ``--workers N`` (:mod:`trioproxy.workers`), on the
    supervisor's listening socket; the supervisor logs the start-up lines.

    Raises:
        OSError: the address cannot be bound (before ``task_status.started``), inside
            the exception groups of the nurseries it crosses.
    """
    app = create_app(settings, cluster=cluster)
    config = hypercorn_config(settings)
    if cluster is not None:
        config.bind = [f"fd://{cluster.listen_fd}"]
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async with trio.open_nursery() as nursery:
            stopping = trio.Event()

            async def on_signals() -> None:
                async for signum in signals:
                    if not stopping.is_set():
                        log.info(
                            "%s: stopping; in-flight requests have %gs to finish",
                            signal.Signals(signum).name,
                            settings.shutdown_grace,
                        )
                        stopping.set()
                    else:
                        log.warning("second signal: cancelling in-flight requests now")
                        nursery.cancel_scope.cancel()

            async def on_trigger(trigger: Callable[[], Awaitable[None]]) -> None:
                await trigger()
                stopping.set()

            async def grace_deadline() -> None:
                await stopping.wait()
                await trio.sleep(settings.shutdown_grace)
                ended = app.proxy.cancel_in_flight()
                if ended:
                    log.warning("shutdown grace over: ending %d request(s) with an error", ended)

            async def run_server(*, task_status: trio.TaskStatus[list[str]]) -> None:
                await serve_app(
                    app,
                    config,
                    shutdown_trigger=stopping.wait,
                    task_status=task_status,
                )
                # Drained: stop listening for signals too.
                nursery.cancel_scope.cancel()

            if shutdown_trigger is not None:
                nursery.start_soon(on_trigger, shutdown_trigger)
            nursery.start_soon(grace_deadline)
            nursery.start_soon(on_signals)
            binds: list[str] = await nursery.start(run_server)
            if cluster is None:
                log_start(settings, binds)
            task_status.started(binds)
        # A second signal cancels hypercorn before its lifespan shutdown, whose
        # after_serving closes the pools and forgets the tracker: do both here too (they
        # are idempotent), or idle upstream connections outlive serve().
        set_activity_tracker(None)
        with trio.CancelScope(shield=True):
            await app.backends.aclose()
