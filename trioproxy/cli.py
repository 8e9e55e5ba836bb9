"""The command line: flags, environment and config file → :class:`Settings`; ``main``.

Precedence for every flat option is flag > environment variable > config file > default
(configargparse does the merging; a YAML parser of ours feeds it the file's flat keys,
with ``enable_activity_tracking`` style keys mapped to their ``--enable-activity-tracking``
flags). Backends come from the file's ``backends`` list, else from ``OPENAI_API_KEY`` /
``ANTHROPIC_API_KEY``, else the embedded ``mock.1``. Every configuration problem ends
start-up with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import IO, Any, NoReturn

import configargparse

from .config_file import ConfigError, ConfigFile, RawBackend, load_config_file, parse_config_text
from .settings import MIB, BackendSpec, ConnectorType, Secret, Settings

LOG_LEVELS = ("debug", "info", "warning", "error")
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(text)
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(text)
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(text)
    return value


def _boolean(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(text)


def _log_level(text: str) -> str:
    word = text.strip().lower()
    if word not in LOG_LEVELS:
        raise ValueError(text)
    return word


@dataclass(frozen=True, slots=True)
class Option:
    """One flat option: its config key (and dest), environment variable, type and help."""

    key: str
    env: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option("host", "TRIOPROXY_HOST", str, "127.0.0.1", "address to listen on", "ADDR"),
    Option("port", "TRIOPROXY_PORT", _port, 8000, "port to listen on (0: any free port)", "N"),
    Option(
        "enable_activity_tracking",
        "ENABLE_ACTIVITY_TRACKING",
        _boolean,
        False,
        "track every request in flight and serve it on /v1/diagnostics",
    ),
    Option(
        "activity_stale_timeout",
        "TRIOPROXY_ACTIVITY_STALE_TIMEOUT",
        _positive_float,
        300.0,
        "seconds without a byte after which a tracked request is cancelled as stale",
        "S",
    ),
    Option(
        "max_request_body",
        "TRIOPROXY_MAX_REQUEST_BODY",
        _positive_int,
        10 * MIB,
        "largest request body accepted, in bytes (413 beyond)",
        "BYTES",
    ),
    Option(
        "log_level",
        "TRIOPROXY_LOG_LEVEL",
        _log_level,
        "info",
        "debug, info, warning or error",
        "LEVEL",
    ),
    Option(
        "upstream_connect_timeout",
        "TRIOPROXY_UPSTREAM_CONNECT_TIMEOUT",
        _positive_float,
        10.0,
        "seconds to connect to a backend",
        "S",
    ),
    Option(
        "upstream_read_timeout",
        "TRIOPROXY_UPSTREAM_READ_TIMEOUT",
        _positive_float,
        300.0,
        "seconds a backend may stay silent while answering (no total deadline on streams)",
        "S",
    ),
    Option(
        "shutdown_grace",
        "TRIOPROXY_SHUTDOWN_GRACE",
        _positive_float,
        30.0,
        "seconds in-flight requests get to finish on SIGINT/SIGTERM",
        "S",
    ),
    Option(
        "client_keys_env",
        "TRIOPROXY_CLIENT_KEYS_ENV",
        str,
        None,
        "name of the environment variable holding comma-separated proxy keys; when set, "
        "every proxy route requires one (Authorization: Bearer or x-api-key)",
        "NAME",
    ),
)
CONFIG_ENV = "TRIOPROXY_CONFIG"


class _YamlConfigParser(configargparse.ConfigFileParser):
    """Feeds the config file's flat keys to configargparse under their flag names."""

    def get_syntax_description(self) -> str:
        return "YAML; keys are the long option names with '_' or '-' (see docs/configuration.md)"

    def parse(self, stream: IO[str]) -> OrderedDict[str, str]:
        config = parse_config_text(getattr(stream, "name", "config"), stream.read())
        items: OrderedDict[str, str] = OrderedDict()
        for key, value in config.flat.items():
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            items[key.replace("_", "-")] = text
        return items


class _Parser(configargparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def _build_parser(config_path: str | None) -> _Parser:
    parser = _Parser(
        prog="trioproxy",
        description="An LLM API proxy on Trio: OpenAI and Anthropic clients, configured "
        "backends, exact live activity tracking.",
        config_file_parser_class=_YamlConfigParser,
        default_config_files=[config_path] if config_path else [],
        auto_env_var_prefix=None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help=f"YAML config file (flat options and the backends list) [env var: {CONFIG_ENV}]",
    )
    for opt in OPTIONS:
        if opt.parse is _boolean:
            parser.add_argument(
                opt.flag,
                action=argparse.BooleanOptionalAction,
                env_var=opt.env,
                default=opt.default,
                help=opt.help,
            )
        else:
            parser.add_argument(
                opt.flag,
                type=opt.parse,
                env_var=opt.env,
                default=opt.default,
                metavar=opt.metavar,
                help=opt.help,
            )
    return parser


def _config_path(argv: Sequence[str], environ: Mapping[str, str]) -> str | None:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("-c", "--config")
    known, _ = pre.parse_known_args(list(argv))
    path: str | None = known.config or environ.get(CONFIG_ENV) or None
    return path


def _check_environment(environ: Mapping[str, str]) -> None:
    """Reject bad environment values with a line naming the variable."""
    for opt in OPTIONS:
        raw = environ.get(opt.env)
        if raw is None:
            continue
        try:
            opt.parse(raw)
        except ValueError:
            expected = (
                "one of 1 true yes on 0 false no off"
                if opt.parse is _boolean
                else f"a valid {opt.metavar or 'value'}"
            )
            raise ConfigError(f"environment variable {opt.env}={raw!r} is not {expected}") from None


def _spec_from_raw(raw: RawBackend, environ: Mapping[str, str]) -> BackendSpec:
    key = environ.get(raw.api_key_env) if raw.api_key_env else None
    spec = BackendSpec(
        name=raw.name,
        type=raw.type,
        base_url=raw.base_url,
        api_key_env=raw.api_key_env,
        api_key=Secret(key) if key else None,
        models=raw.models,
    )
    # The mock's streaming shape, where the file gives it; the spec's defaults otherwise.
    if raw.chunks is not None:
        spec = replace(spec, mock_chunks=raw.chunks)
    if raw.chunk_delay is not None:
        spec = replace(spec, mock_chunk_delay=raw.chunk_delay)
    return spec


# (instance name, connector, key variable, base-URL variable, default base URL)
_ENVIRONMENT_BACKENDS = (
    (
        "openai.1",
        ConnectorType.OPENAI,
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "https://api.openai.com/v1",
    ),
    (
        "anthropic.1",
        ConnectorType.ANTHROPIC,
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "https://api.anthropic.com",
    ),
)


def _backends_from_environment(environ: Mapping[str, str]) -> tuple[BackendSpec, ...]:
    return tuple(
        BackendSpec(
            name=name,
            type=kind,
            base_url=(environ.get(url_var) or default_url).rstrip("/"),
            api_key_env=key_var,
            api_key=Secret(environ[key_var]),
        )
        for name, kind, key_var, url_var, default_url in _ENVIRONMENT_BACKENDS
        if environ.get(key_var)
    )


def load_settings(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Build the :class:`Settings` for ``argv`` and ``environ``.

    Raises:
        ConfigError: any bad flag, variable or config file, with a one-line message.
        SystemExit: ``--help`` (code 0).
    """
    path = _config_path(argv, environ)
    config: ConfigFile | None = load_config_file(path) if path else None
    _check_environment(environ)
    parser = _build_parser(path)
    args = parser.parse_args(list(argv), env_vars=dict(environ))
    values = {opt.key: getattr(args, opt.key) for opt in OPTIONS}
    if config is not None and config.backends is not None:
        backends = tuple(_spec_from_raw(raw, environ) for raw in config.backends)
    else:
        backends = _backends_from_environment(environ)
    client_keys: tuple[Secret, ...] = ()
    if values["client_keys_env"]:
        name = values["client_keys_env"]
        raw = environ.get(name, "")
        client_keys = tuple(Secret(k.strip()) for k in raw.split(",") if k.strip())
        if not client_keys:
            raise ConfigError(f"client keys: environment variable {name} is unset or holds no key")
    embedded = not backends
    if embedded:
        backends = (BackendSpec(name="mock.1", type=ConnectorType.MOCK),)
    return Settings(
        config_path=path,
        backends=backends,
        default_backend=config.default_backend if config is not None else None,
        embedded_mock=embedded,
        client_keys=client_keys,
        **values,
    )


def configure_logging(level: str) -> None:
    """Log lines to stderr at ``level``."""
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the proxy until SIGINT/SIGTERM; return the process exit code.

    Configuration errors print one line and return 2; a port that cannot be bound
    prints one line and returns 1. Neither shows a traceback.
    """
    import trio

    from .server import serve, tune_gc

    try:
        settings = load_settings(sys.argv[1:] if argv is None else argv, os.environ)
    except ConfigError as exc:
        print(f"trioproxy: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    configure_logging(settings.log_level)
    tune_gc()
    try:
        trio.run(serve, settings)
    except OSError as exc:
        print(
            f"trioproxy: error: cannot listen on {settings.host}:{settings.port}: "
            f"{exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        pass
    return 0
