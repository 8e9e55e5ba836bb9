"""The command line: flags, environment and config file → :class:`Settings`; ``main``.

The flat options are the options table, :data:`trioproxy.settings.OPTIONS` (derived from
the ``Settings`` fields); the parser below is built from it. Precedence for every flat
option is flag > environment variable > config file > default (configargparse does the
merging; a YAML parser of ours feeds it the file's flat keys, with
``enable_activity_tracking`` style keys mapped to their ``--enable-activity-tracking``
flags, and the environment's values are checked first so that a bad one is named).
Backends come from the file's ``backends`` list, else from ``OPENAI_API_KEY`` /
``ANTHROPIC_API_KEY``, else the embedded ``mock.1``. Every configuration problem ends
start-up with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import sys
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import IO, Any, NoReturn

import configargparse

from . import __version__
from .config_file import (
    FLAT_OPTIONS,
    ConfigError,
    ConfigFile,
    RawBackend,
    load_config_file,
    parse_config_text,
)
from .options import Kind
from .settings import OPTIONS, BackendSpec, ConnectorType, Secret, Settings
from .urls import base_url_problem

CONFIG_ENV = "TRIOPROXY_CONFIG"

log = logging.getLogger(__name__)


class _YamlConfigParser(configargparse.ConfigFileParser):
    """Feeds the config file's flat keys to configargparse under their flag names."""

    def get_syntax_description(self) -> str:
        return "YAML; keys are the long option names with '_' or '-' (see docs/configuration.md)"

    def parse(self, stream: IO[str]) -> OrderedDict[str, str]:
        config = parse_config_text(getattr(stream, "name", "config"), stream.read())
        items: OrderedDict[str, str] = OrderedDict()
        for key, value in config.flat.items():
            items[key.replace("_", "-")] = FLAT_OPTIONS[key].kind.to_text(value)
        return items


class _Parser(configargparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse says "argument --port: …"; the flag is what the user wrote.
        raise ConfigError(message.removeprefix("argument "))


_DESCRIPTION = """\
An LLM API proxy on Trio: OpenAI and Anthropic clients, configured backends,
exact live activity tracking."""
_EPILOG = """\
Every option can also be set by its environment variable ([env var: ...]) or
as a key of the YAML config file: its name with '_' or '-' (log_level: debug).
Backends are listed in the config file; see docs/configuration.md.
Precedence: flag > environment variable > config file > default."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults after each option's help, as they are written on the command line; the
    description and epilog as written."""

    def _expand_help(self, action: argparse.Action) -> str:
        if isinstance(action.default, tuple):  # a list of names: as --session-headers takes it
            action = copy.copy(action)
            action.default = ",".join(action.default)
        return super()._expand_help(action)


def _build_parser(config_path: str | None) -> _Parser:
    parser = _Parser(
        prog="trioproxy",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        config_file_parser_class=_YamlConfigParser,
        default_config_files=[config_path] if config_path else [],
        auto_env_var_prefix=None,
        # Its own help lines would repeat ours, and its epilog omits the config file.
        add_config_file_help=False,
        add_env_var_help=False,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {__version__}",
        help="print the version and exit",
    )
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help=f"YAML config file (flat options and the backends list) [env var: {CONFIG_ENV}]",
    )
    for opt in OPTIONS:
        if opt.kind.is_boolean:
            parser.add_argument(
                opt.flag,
                action=argparse.BooleanOptionalAction,
                env_var=opt.env,
                default=opt.default,
                help=f"{opt.option.help} [env var: {opt.env}]",
            )
        else:
            parser.add_argument(
                opt.flag,
                type=_flag_type(opt.kind),
                env_var=opt.env,
                default=opt.default,
                metavar=opt.option.metavar,
                help=f"{opt.option.help} [env var: {opt.env}]",
            )
    return parser


def _config_path(argv: Sequence[str], environ: Mapping[str, str]) -> str | None:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("-c", "--config")
    known, _ = pre.parse_known_args(list(argv))
    path: str | None = known.config or environ.get(CONFIG_ENV) or None
    return path


def _flag_type(kind: Kind[Any]) -> Callable[[str], Any]:
    """The argparse ``type`` of a flag of ``kind``."""

    def convert(text: str) -> Any:
        try:
            return kind.from_text(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind.allowed}") from None

    return convert


def _environment_values(environ: Mapping[str, str]) -> dict[str, str]:
    """The options' variables that are set, checked, as text configargparse reads.

    Raises:
        ConfigError: a value its option does not take, in a line naming the variable.
    """
    values: dict[str, str] = {}
    for opt in OPTIONS:
        raw = environ.get(opt.env)
        if raw is None:
            continue
        try:
            values[opt.env] = opt.kind.to_text(opt.kind.from_text(raw))
        except ValueError:
            raise ConfigError(
                f"environment variable {opt.env}={raw!r} is not {opt.kind.allowed}"
            ) from None
    return values


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
    """The backends ``OPENAI_API_KEY`` / ``ANTHROPIC_API_KEY`` give.

    Raises:
        ConfigError: its base-URL variable is set to something that is not a base URL
            (not http(s), or with credentials, a query or a fragment).
    """
    specs = []
    for name, kind, key_var, url_var, default_url in _ENVIRONMENT_BACKENDS:
        if not environ.get(key_var):
            continue
        base_url = environ.get(url_var) or default_url
        problem = base_url_problem(base_url)
        if problem is not None:
            raise ConfigError(f"environment variable {url_var} {problem}")
        specs.append(
            BackendSpec(
                name=name,
                type=kind,
                base_url=base_url.rstrip("/"),
                api_key_env=key_var,
                api_key=Secret(environ[key_var]),
            )
        )
    return tuple(specs)


def load_settings(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Build the :class:`Settings` for ``argv`` and ``environ``.

    Raises:
        ConfigError: any bad flag, variable or config file, with a one-line message.
        SystemExit: ``--help`` or ``--version`` (code 0), after printing to stdout.
    """
    path = _config_path(argv, environ)
    config: ConfigFile | None = load_config_file(path) if path else None
    env_values = _environment_values(environ)
    parser = _build_parser(path)
    args = parser.parse_args(list(argv), env_vars=env_values)
    values = {opt.key: getattr(args, opt.key) for opt in OPTIONS}
    if config is not None and config.backends is not None:
        backends = tuple(_spec_from_raw(raw, environ) for raw in config.backends)
    else:
        backends = _backends_from_environment(environ)
    client_keys = _keys(environ, values["client_keys_env"], "client keys")
    admin_keys = _keys(environ, values["admin_keys_env"], "admin keys")
    if {k.value for k in client_keys} & {k.value for k in admin_keys}:
        raise ConfigError("admin keys and client keys must differ: a key may not be both")
    embedded = not backends
    if embedded:
        backends = (BackendSpec(name="mock.1", type=ConnectorType.MOCK),)
    return Settings(
        config_path=path,
        backends=backends,
        default_backend=config.default_backend if config is not None else None,
        aliases=dict(config.aliases) if config is not None else {},
        embedded_mock=embedded,
        client_keys=client_keys,
        admin_keys=admin_keys,
        **values,
    )


def _keys(environ: Mapping[str, str], name: str | None, what: str) -> tuple[Secret, ...]:
    """The comma-separated keys in the variable ``name`` (none when ``name`` is None).

    Raises:
        ConfigError: the name is empty, or the variable is unset or holds no key.
    """
    if name is None:
        return ()
    if not name.strip():
        # Set, but to nothing (an empty variable in a unit file, say): keys were meant,
        # and serving without them would open what they were to close.
        raise ConfigError(f"{what}: the name of their environment variable is empty")
    raw = environ.get(name, "")
    keys = tuple(Secret(k.strip()) for k in raw.split(",") if k.strip())
    if not keys:
        raise ConfigError(f"{what}: environment variable {name} is unset or holds no key")
    return keys


def startup_warnings(settings: Settings) -> list[str]:
    """What the start-up log warns about ``settings``, naming variables, never values."""
    return [
        f"backend {spec.name}: environment variable {spec.api_key_env} (its api_key_env) "
        "is not set or empty; its requests are sent without a key"
        for spec in settings.backends
        if spec.api_key_env and spec.api_key is None
    ]


def configure_logging(level: str) -> None:
    """Log lines to stderr at ``level`` (never blocking the event loop: :mod:`.linewriter`)."""
    from .linewriter import configure_logging as configure

    configure(level, "%(asctime)s %(levelname)s %(name)s: %(message)s")


async def _serve_noting_start(settings: Settings, listening: list[str]) -> None:
    """``serve(settings)``, putting its bound URLs in ``listening`` once it is up."""
    import trio

    from .server import serve

    async with trio.open_nursery() as nursery:
        listening.extend(await nursery.start(serve, settings))


def _listen_address(settings: Settings) -> str:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"{host}:{settings.port}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the proxy until SIGINT/SIGTERM/SIGHUP; return the process exit code.

    Configuration errors print one line and return 2; an address that cannot be listened
    on prints one line naming it and returns 1. Neither shows a traceback.
    """
    import trio

    from .gcpolicy import tune_gc

    try:
        settings = load_settings(sys.argv[1:] if argv is None else argv, os.environ)
    except ConfigError as exc:
        print(f"trioproxy: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    configure_logging(settings.log_level)
    for warning in startup_warnings(settings):
        log.warning("%s", warning)
    if settings.workers > 1:
        from .workers.supervisor import supervise

        try:
            return supervise(settings)
        except OSError as exc:
            return _cannot_listen(settings, exc)
    tune_gc()
    listening: list[str] = []
    try:
        trio.run(_serve_noting_start, settings, listening)
    except KeyboardInterrupt:
        pass
    except BaseException as exc:
        # The bind error arrives wrapped in the exception groups of the nurseries it
        # crossed; an OSError before the listeners were up is the address's fault, or
        # names the file that could not be opened.
        from .server import sole_os_error

        error = None if listening else sole_os_error(exc)
        if error is None:
            raise
        return _cannot_listen(settings, error)
    return 0


def _cannot_listen(settings: Settings, error: OSError) -> int:
    """Say in one line that the address cannot be listened on (or which file cannot be
    opened); the exit code, 1."""
    from .server import os_error_text

    print(f"trioproxy: error: {os_error_text(error, _listen_address(settings))}", file=sys.stderr)
    return 1
