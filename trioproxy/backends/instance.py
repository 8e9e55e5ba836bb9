"""Backend instances: a connector plus what the proxy knows of it (models, health, limits).

Time here is Trio's clock, so rate-limit windows run under ``MockClock`` in tests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import trio

from ..errors import UpstreamError
from ..routing import RouteTarget
from ..settings import BackendSpec, ConnectorType, Settings
from ..urls import base_url_problem
from .anthropic import ANTHROPIC
from .base import Connector
from .http import HttpConnector
from .mock import MockConnector
from .openai import OPENAI

log = logging.getLogger(__name__)

HEALTH_CHECK_INTERVAL = 60.0
PROBE_TIMEOUT = 10.0


class ManagedConnector(Connector, Protocol):
    """A connector the app opens at start and closes at stop."""

    async def aclose(self) -> None: ...

    async def list_models(self) -> list[str]: ...


def static_problems(spec: BackendSpec) -> list[str]:
    """What stops ``spec`` from serving, known without any I/O (never shows a key)."""
    if spec.type is ConnectorType.MOCK:
        return []
    problems = []
    url_problem = base_url_problem(spec.base_url)
    if url_problem is not None:
        problems.append(f"base_url {url_problem}")
    if spec.api_key_env and spec.api_key is None:
        problems.append(f"environment variable {spec.api_key_env} is not set or empty")
    return problems


def make_connector(spec: BackendSpec, settings: Settings) -> ManagedConnector:
    """The connector for ``spec``'s type."""
    if spec.type is ConnectorType.MOCK:
        return MockConnector(spec)
    dialect = OPENAI if spec.type is ConnectorType.OPENAI else ANTHROPIC
    return HttpConnector(
        spec,
        dialect,
        connect_timeout=settings.upstream_connect_timeout,
        read_timeout=settings.upstream_read_timeout,
    )


class BackendInstance:
    """One configured backend: its connector, models, health and rate-limit window."""

    def __init__(self, spec: BackendSpec, connector: ManagedConnector) -> None:
        self.spec = spec
        self.name = spec.name
        self.connector = connector
        self.models: tuple[str, ...] = spec.models or ()
        self.static_errors = static_problems(spec)
        self.runtime_error: str | None = None
        self.retry_until: float | None = None
        #: Called with the instance when its rate-limit window opens or grows, or its
        #: health changes — not when :meth:`adopt` applies what another worker learned.
        #: With ``--workers N`` the worker shares the change with its siblings.
        self.on_change: Callable[[BackendInstance], None] | None = None
        self._target = self._make_target()

    def _make_target(self) -> RouteTarget:
        return RouteTarget(self.name, self.spec.type, frozenset(self.models))

    @property
    def target(self) -> RouteTarget:
        """This instance as routing sees it."""
        return self._target

    @property
    def validation_errors(self) -> list[str]:
        """Why the instance cannot serve, in words; empty when it can."""
        errors = list(self.static_errors)
        if self.runtime_error:
            errors.append(self.runtime_error)
        return errors

    @property
    def is_functional(self) -> bool:
        return not self.static_errors and self.runtime_error is None

    def retry_after_seconds(self) -> float | None:
        """Seconds left in the rate-limit window, or None when it is closed."""
        if self.retry_until is None:
            return None
        left = self.retry_until - trio.current_time()
        if left <= 0:
            self.retry_until = None
            return None
        return left

    def is_rate_limited(self) -> bool:
        return self.retry_after_seconds() is not None

    def mark_rate_limited(self, seconds: float) -> None:
        """Open (or extend) the rate-limit window for ``seconds``."""
        if self._extend_window(seconds) and self.on_change is not None:
            self.on_change(self)

    def record_failure(self, reason: str) -> None:
        """Remember that the backend could not be used, for the diagnostics."""
        changed = reason != self.runtime_error
        self.runtime_error = reason
        if changed and self.on_change is not None:
            self.on_change(self)

    def record_success(self) -> None:
        if self.runtime_error is not None:
            self.runtime_error = None
            if self.on_change is not None:
                self.on_change(self)

    def adopt(self, retry_after: float | None, runtime_error: str | None) -> None:
        """Take on what another worker learned of this backend, without ``on_change``.

        ``retry_after``: seconds left in its rate-limit window (None: none is open there;
        a window open here stays open); ``runtime_error``: its failure, or None once the
        backend answered it again.
        """
        if retry_after is not None:
            self._extend_window(retry_after)
        self.runtime_error = runtime_error

    def _extend_window(self, seconds: float) -> bool:
        until = trio.current_time() + max(0.0, seconds)
        if self.retry_until is None or until > self.retry_until:
            self.retry_until = until
            return True
        return False

    async def discover_models(self) -> None:
        """Fetch the model list when the config gave none; failures mark the instance."""
        if self.spec.models is not None or self.static_errors:
            return
        await self._probe("model discovery failed")

    async def check_health(self) -> None:
        """Probe an instance that is marked failing (or still lacks its model list).

        A backend that answers its model list again is functional again; one that
        does not keeps (or gets) a reason in ``validation_errors``.
        """
        if self.static_errors:
            return
        undiscovered = self.spec.models is None and not self.models
        if self.runtime_error is None and not undiscovered:
            return
        await self._probe("model discovery failed" if undiscovered else "health check failed")

    async def _probe(self, failure: str) -> None:
        try:
            with trio.fail_after(PROBE_TIMEOUT):
                models = await self.connector.list_models()
        except (UpstreamError, trio.TooSlowError) as exc:
            reason = exc.detail if isinstance(exc, UpstreamError) else "timed out"
            self.record_failure(f"{failure}: {reason}")
            log.warning("backend %s: %s: %s", self.name, failure, reason)
            return
        if self.spec.models is None:
            self.models = tuple(models)
            self._target = self._make_target()
            log.info("backend %s: %d models discovered", self.name, len(models))
        self.record_success()


class Backends:
    """The configured instances in config order."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._by_name = {
            spec.name: BackendInstance(spec, make_connector(spec, settings))
            for spec in settings.backends
        }

    def __iter__(self) -> Iterator[BackendInstance]:
        return iter(self._by_name.values())

    def __getitem__(self, name: str) -> BackendInstance:
        return self._by_name[name]

    def names(self) -> list[str]:
        return list(self._by_name)

    def targets(self) -> Sequence[RouteTarget]:
        return [inst.target for inst in self._by_name.values()]

    async def discover_models(self) -> None:
        """Discover every instance's models concurrently."""
        async with trio.open_nursery() as nursery:
            for inst in self:
                nursery.start_soon(inst.discover_models)

    async def aclose(self) -> None:
        for inst in self:
            await inst.connector.aclose()

    async def run_health_checks(
        self,
        interval: float = HEALTH_CHECK_INTERVAL,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Every ``interval`` seconds, re-check the instances that are failing."""
        task_status.started()
        while True:
            await trio.sleep(interval)
            async with trio.open_nursery() as nursery:
                for inst in self:
                    nursery.start_soon(inst.check_health)
