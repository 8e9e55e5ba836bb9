"""The proxy's configuration: one frozen :class:`Settings`, built once by :mod:`trioproxy.cli`.

Runtime modules read settings from here and never from ``os.environ``; the CLI resolves
API keys from the variables the config names and stores them as :class:`Secret`, whose
``repr`` and ``str`` never show the value.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from .accesslog import ACCESS_LOG_FORMATS
from .options import (
    BOOLEAN,
    HEADER_NAMES,
    HISTORY_SIZE,
    HOST,
    PORT,
    POSITIVE_INT,
    POSITIVE_NUMBER,
    TEXT,
    WORKER_COUNT,
    OptionField,
    choice,
    option,
    option_fields,
)
from .sessions import DEFAULT_SESSION_HEADERS

MIB = 1024 * 1024
LOG_LEVELS = ("debug", "info", "warning", "error")


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
    """Everything the proxy needs to run, validated once.

    The fields declared with :func:`~trioproxy.options.option` are the flat options: each
    is settable by its flag, its environment variable and its config key, and
    :data:`OPTIONS` (derived from these fields) drives the CLI, the config file and the
    docs' table. A new option is one such field.
    """

    host: str = option(
        "127.0.0.1", env="TRIOPROXY_HOST", kind=HOST, metavar="ADDR", help="address to listen on"
    )
    port: int = option(
        8000,
        env="TRIOPROXY_PORT",
        kind=PORT,
        metavar="N",
        help="port to listen on (0: any free port)",
    )
    config_path: str | None = None
    enable_activity_tracking: bool = option(
        False,
        env="ENABLE_ACTIVITY_TRACKING",
        kind=BOOLEAN,
        help="track every request in flight and serve it on /v1/diagnostics",
    )
    activity_history: int = option(
        200,
        env="TRIOPROXY_ACTIVITY_HISTORY",
        kind=HISTORY_SIZE,
        metavar="N",
        help="finished requests /v1/diagnostics/recent remembers (0: none)",
    )
    activity_stale_timeout: float = option(
        300.0,
        env="TRIOPROXY_ACTIVITY_STALE_TIMEOUT",
        kind=POSITIVE_NUMBER,
        metavar="S",
        help="seconds without a byte after which a tracked request is cancelled as stale",
    )
    max_request_body: int = option(
        10 * MIB,
        env="TRIOPROXY_MAX_REQUEST_BODY",
        kind=POSITIVE_INT,
        metavar="BYTES",
        help="largest request body accepted, in bytes (413 beyond)",
    )
    request_body_timeout: float = option(
        60.0,
        env="TRIOPROXY_REQUEST_BODY_TIMEOUT",
        kind=POSITIVE_NUMBER,
        metavar="S",
        help="seconds a client has to send its whole request body, from its headers (408 beyond)",
    )
    log_level: str = option(
        "info",
        env="TRIOPROXY_LOG_LEVEL",
        kind=choice(*LOG_LEVELS),
        metavar="LEVEL",
        help="debug, info, warning or error",
    )
    upstream_connect_timeout: float = option(
        10.0,
        env="TRIOPROXY_UPSTREAM_CONNECT_TIMEOUT",
        kind=POSITIVE_NUMBER,
        metavar="S",
        help="seconds to connect to a backend",
    )
    upstream_read_timeout: float = option(
        300.0,
        env="TRIOPROXY_UPSTREAM_READ_TIMEOUT",
        kind=POSITIVE_NUMBER,
        metavar="S",
        help="seconds a backend may stay silent while answering (no total deadline on streams)",
    )
    shutdown_grace: float = option(
        30.0,
        env="TRIOPROXY_SHUTDOWN_GRACE",
        kind=POSITIVE_NUMBER,
        metavar="S",
        help="seconds in-flight requests get to finish on SIGINT/SIGTERM",
    )
    workers: int = option(
        1,
        env="TRIOPROXY_WORKERS",
        kind=WORKER_COUNT,
        metavar="N",
        help="worker processes serving the one address (auto: one per usable core); with "
        "more than 1 a supervising parent restarts any that dies, and the diagnostics and "
        "/metrics of any worker cover them all",
    )
    backends: tuple[BackendSpec, ...] = ()
    default_backend: str | None = None
    # Proxy keys clients must present (empty: no client authentication).
    client_keys_env: str | None = option(
        None,
        env="TRIOPROXY_CLIENT_KEYS_ENV",
        kind=TEXT,
        metavar="NAME",
        help="name of the environment variable holding comma-separated proxy keys; when set, "
        "every proxy route requires one (Authorization: Bearer or x-api-key)",
    )
    client_keys: tuple[Secret, ...] = ()
    admin_keys_env: str | None = option(
        None,
        env="TRIOPROXY_ADMIN_KEYS_ENV",
        kind=TEXT,
        metavar="NAME",
        help="name of the environment variable holding comma-separated admin keys; with "
        "one as 'Authorization: Bearer', a client off this host may read /metrics and the "
        "diagnostics and cancel requests (without: loopback only)",
    )
    admin_keys: tuple[Secret, ...] = ()
    access_log: str = option(
        "text",
        env="TRIOPROXY_ACCESS_LOG",
        kind=choice(*ACCESS_LOG_FORMATS),
        metavar="FORMAT",
        help="a line per finished request: text, json or off",
    )
    access_log_file: str | None = option(
        None,
        env="TRIOPROXY_ACCESS_LOG_FILE",
        kind=TEXT,
        metavar="PATH",
        help="append the access log to this file instead of stderr",
    )
    session_headers: tuple[str, ...] = option(
        DEFAULT_SESSION_HEADERS,
        env="TRIOPROXY_SESSION_HEADERS",
        kind=HEADER_NAMES,
        metavar="NAMES",
        help="request headers that carry a session id, first present wins; else the "
        "body's session_id, else a new id",
    )
    anthropic_default_max_tokens: int = option(
        4096,
        env="TRIOPROXY_ANTHROPIC_DEFAULT_MAX_TOKENS",
        kind=POSITIVE_INT,
        metavar="N",
        help="max_tokens sent to an Anthropic backend for a translated OpenAI request that "
        "set none (Anthropic requires it)",
    )
    # Model aliases from the config file: a client's model name -> the model to route.
    aliases: Mapping[str, str] = field(default_factory=dict)
    # Set when no backend came from the config or the environment, for the start-up log.
    embedded_mock: bool = False


# The options table: every flat option, in the order of the fields above.
OPTIONS: tuple[OptionField, ...] = option_fields(Settings)
