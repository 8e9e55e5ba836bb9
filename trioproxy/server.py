"""Serving the app with hypercorn's Trio worker, and shutting down gracefully.

On SIGINT or SIGTERM the listeners close at once, in-flight requests get
``shutdown_grace`` seconds to finish, and whatever is left is then cancelled (closing
its upstream). A second signal during the drain cancels at once.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from .app import TrioProxyApp, create_app
from .settings import Settings

log = logging.getLogger("trioproxy")


def hypercorn_config(settings: Settings) -> Config:
    """The hypercorn configuration for ``settings``."""
    config = Config()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    config.bind = [f"{host}:{settings.port}"]
    config.graceful_timeout = settings.shutdown_grace
    config.include_server_header = False
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    # LLM clients keep connections open between turns; keep-alive is cheap on Trio.
    config.keep_alive_timeout = 75
    return config


def _describe_backends(app: TrioProxyApp) -> str:
    return ", ".join(f"{spec.name} ({spec.type.value})" for spec in app.settings.backends)


async def serve(
    settings: Settings,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the proxy until ``shutdown_trigger`` returns (default: SIGINT or SIGTERM).

    ``task_status.started`` receives the bound URLs once the listeners are up.

    Raises:
        OSError: the address cannot be bound.
    """
    app = create_app(settings)
    config = hypercorn_config(settings)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            first_signal = trio.Event()

            async def on_signals() -> None:
                async for signum in signals:
                    if not first_signal.is_set():
                        log.info(
                            "%s: stopping; in-flight requests have %gs to finish",
                            signal.Signals(signum).name,
                            settings.shutdown_grace,
                        )
                        first_signal.set()
                    else:
                        log.warning("second signal: cancelling in-flight requests now")
                        nursery.cancel_scope.cancel()

            async def trigger() -> None:
                if shutdown_trigger is None:
                    await first_signal.wait()
                    return
                async with trio.open_nursery() as race:

                    async def either(wait: Callable[[], Awaitable[object]]) -> None:
                        await wait()
                        race.cancel_scope.cancel()

                    race.start_soon(either, first_signal.wait)
                    race.start_soon(either, shutdown_trigger)

            async def run_server(*, task_status: trio.TaskStatus[list[str]]) -> None:
                await hypercorn_serve(
                    app,  # type: ignore[arg-type]
                    config,
                    shutdown_trigger=trigger,
                    task_status=task_status,
                )
                # Drained: stop listening for signals too.
                nursery.cancel_scope.cancel()

            nursery.start_soon(on_signals)
            binds: list[str] = await nursery.start(run_server)
            if settings.embedded_mock:
                log.info(
                    "no backend configured: serving the embedded mock.1 backend "
                    "(set OPENAI_API_KEY or ANTHROPIC_API_KEY, or use --config)"
                )
            log.info(
                "trioproxy on %s; backends: %s; activity tracking %s",
                " ".join(binds),
                _describe_backends(app),
                "on" if settings.enable_activity_tracking else "off",
            )
            task_status.started(binds)
