"""The proxy's configuration: one frozen :class:`Settings`, built once by :mod:`trioproxy.cli`.

Runtime modules read settings from here and never from ``os.environ``; the CLI resolves
API keys from the variables the config names and stores them as :class:`Secret`, whose
``repr`` and ``str`` never show the value.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

MIB = 1024 * 1024


class ConnectorType(enum.Enum):
    """The connector that speaks to a backend instance."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    MOCK = "mock"


@dataclass(frozen=True, slots=True)
class Secret:
    """A credential; printing it, logging it or putting it in a repr shows ``'***'``."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """One configured backend instance.

    ``api_key`` is the value read from ``api_key_env`` at start-up (None when that
    variable is unset or empty: the instance then reports itself not functional).
    ``models`` is None when the config lists none; they are then discovered at start.
    """

    name: str
    type: ConnectorType
    base_url: str = ""
    api_key_env: str | None = None
    api_key: Secret | None = None
    models: tuple[str, ...] | None = None
    # Mock connector only: how the deterministic reply is streamed.
    mock_chunks: int = 8
    mock_chunk_delay: float = 0.05


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the proxy needs to run, validated once."""

    host: str = "127.0.0.1"
    port: int = 8000
    config_path: str | None = None
    enable_activity_tracking: bool = False
    activity_stale_timeout: float = 300.0
    max_request_body: int = 10 * MIB
    log_level: str = "info"
    upstream_connect_timeout: float = 10.0
    upstream_read_timeout: float = 300.0
    shutdown_grace: float = 30.0
    backends: tuple[BackendSpec, ...] = ()
    default_backend: str | None = None
    # Proxy keys clients must present (empty: no client authentication).
    client_keys_env: str | None = None
    client_keys: tuple[Secret, ...] = ()
    # Set when no backend came from the config or the environment, for the start-up log.
    embedded_mock: bool = False

    def backend(self, name: str) -> BackendSpec | None:
        """The spec called ``name``, or None."""
        for spec in self.backends:
            if spec.name == name:
                return spec
        return None
