"""The vocabulary of the options table: how a :class:`~trioproxy.settings.Settings` field
becomes an option settable by flag, environment variable and config key.

A flat option is declared once, on its ``Settings`` field::

    port: int = option(8000, env="TRIOPROXY_PORT", kind=PORT, metavar="N", help="…")

and everything else is derived from :func:`option_fields`: the argparse flag
(``--port``, booleans ``--x/--no-x``), the accepted environment variable, the YAML key
(the field name; dashes are accepted too) and the values it accepts there, the default,
and the words of every error. A :class:`Kind` says what values an option takes: it parses
the text of a flag or a variable and checks a YAML value, raising ``ValueError`` for a
value it does not take; :attr:`Kind.allowed` says in words what it does take.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

OPTION_METADATA_KEY = "trioproxy.option"
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


@dataclass(frozen=True, slots=True)
class Kind(Generic[T_co]):
    """The values an option takes.

    ``from_text`` parses a flag's or an environment variable's text and ``from_yaml``
    checks a value the YAML parser produced; both raise ``ValueError`` for a value the
    option does not take. ``allowed`` (and ``yaml_allowed`` where the file's values are
    written differently, as booleans are) completes "is not …" / "must be …".
    """

    allowed: str
    from_text: Callable[[str], T_co]
    from_yaml: Callable[[object], T_co]
    yaml_allowed: str = ""
    choices: tuple[str, ...] = ()
    is_boolean: bool = False
    #: A value as the text of a flag or variable (the inverse of ``from_text``).
    to_text: Callable[[Any], str] = str

    @property
    def file_allowed(self) -> str:
        """What a config-file value must be, in words."""
        return self.yaml_allowed or self.allowed


def _yaml_number(value: object) -> float:
    # YAML's true/false are ints to Python; an option that takes a number does not take them.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(value)
    return float(value)


def _yaml_integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(value)
    return value


def _text_integer(text: str) -> int:
    return int(text.strip())


def _in_range(parse: Callable[[Any], int], low: int, high: int | None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        number = parse(value)
        if number < low or (high is not None and number > high):
            raise ValueError(value)
        return number

    return check


def _positive(parse: Callable[[Any], float]) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        number = parse(value)
        if not number > 0:  # also refuses NaN
            raise ValueError(value)
        return number

    return check


def _yaml_text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(value)
    return value


def _text_boolean(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(text)


def _yaml_boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(value)
    return value


TEXT: Kind[str] = Kind("a string", str, _yaml_text)


def _host(text: str) -> str:
    # An IPv6 address may come bracketed, as in a URL; the sockets want it bare.
    text = text.strip()
    host = text[1:-1].strip() if text.startswith("[") and text.endswith("]") else text
    if not host:
        # The sockets read "" as every interface: 0.0.0.0 from an empty variable.
        raise ValueError(text)
    return host


#: An address to listen on: a name, an IPv4 address, or an IPv6 one (bracketed or not).
HOST: Kind[str] = Kind(
    "an address (IPv6 bracketed or not)", _host, lambda value: _host(_yaml_text(value))
)
PORT: Kind[int] = Kind(
    "a port number (0-65535)",
    _in_range(_text_integer, 0, 65535),
    _in_range(_yaml_integer, 0, 65535),
)
POSITIVE_INT: Kind[int] = Kind(
    "an integer greater than 0",
    _in_range(_text_integer, 1, None),
    _in_range(_yaml_integer, 1, None),
)
#: The most finished requests a history keeps (each is about a kilobyte).
MOST_HISTORY = 1_000_000
HISTORY_SIZE: Kind[int] = Kind(
    f"an integer from 0 to {MOST_HISTORY:,}",
    _in_range(_text_integer, 0, MOST_HISTORY),
    _in_range(_yaml_integer, 0, MOST_HISTORY),
)
POSITIVE_NUMBER: Kind[float] = Kind(
    "a number greater than 0",
    _positive(float),
    _positive(_yaml_number),
)
BOOLEAN: Kind[bool] = Kind(
    "one of " + " ".join(TRUE_WORDS + FALSE_WORDS),
    _text_boolean,
    _yaml_boolean,
    yaml_allowed="true or false",
    is_boolean=True,
    to_text=lambda value: "true" if value else "false",
)

AUTO = "auto"


def usable_cores() -> int:
    """How many cores this process may run on (its CPU affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0))


#: The most worker processes: each asks every other for each diagnostics answer, and no
#: host this is for has more cores (``auto`` takes at most this many too).
MOST_WORKERS = 128


def _worker_count(parse: Callable[[Any], int]) -> Callable[[Any], int]:
    bounded = _in_range(parse, 1, MOST_WORKERS)

    def count(value: Any) -> int:
        if isinstance(value, str) and value.strip().lower() == AUTO:
            return min(usable_cores(), MOST_WORKERS)
        return bounded(value)

    return count


#: A number of processes: a positive integer, or ``auto`` for one per usable core.
WORKER_COUNT: Kind[int] = Kind(
    f"an integer from 1 to {MOST_WORKERS}, or auto",
    _worker_count(_text_integer),
    _worker_count(_yaml_integer),
)

# RFC 9110 §5.6.2: the characters of a header name (a token).
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")


#: Headers that carry a client's credentials: never a session id, which is echoed to the
#: client, shown in the diagnostics and written to the access log.
CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie"}
)


def _header_names(names: list[str]) -> tuple[str, ...]:
    out = tuple(name.strip().lower() for name in names if name.strip())
    if not out or not all(set(name) <= _TOKEN for name in out):
        raise ValueError(names)
    if CREDENTIAL_HEADERS.intersection(out):
        raise ValueError(names)
    return out


def _yaml_header_names(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return _header_names(value.split(","))
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return _header_names(list(value))
    raise ValueError(value)


HEADER_NAMES: Kind[tuple[str, ...]] = Kind(
    "a comma-separated list of header names (none that carries credentials)",
    lambda text: _header_names(text.split(",")),
    _yaml_header_names,
    yaml_allowed="a list of header names (none that carries credentials)",
    to_text=",".join,
)


def choice(*words: str) -> Kind[str]:
    """One of ``words``, in any case (the value is the lower-case word)."""

    def from_text(text: str) -> str:
        word = text.strip().lower()
        if word not in words:
            raise ValueError(text)
        return word

    def from_yaml(value: object) -> str:
        # YAML 1.1 (PyYAML) reads a bare off / on as false / true: a file that says
        # `access_log: off` means the word.
        word = "on" if value is True else "off"
        if isinstance(value, bool) and word in words:
            return word
        return from_text(_yaml_text(value))

    return Kind("one of " + ", ".join(words), from_text, from_yaml, choices=words)


@dataclass(frozen=True, slots=True)
class Option:
    """How a ``Settings`` field is set from outside: its variable, kind and help."""

    env: str
    kind: Kind[Any]
    help: str
    metavar: str | None = None


@overload
def option(
    default: None, *, env: str, kind: Kind[T], help: str, metavar: str | None = None
) -> T | None: ...
@overload
def option(default: T, *, env: str, kind: Kind[T], help: str, metavar: str | None = None) -> T: ...
def option(
    default: Any, *, env: str, kind: Kind[Any], help: str, metavar: str | None = None
) -> Any:
    """A ``Settings`` field that is a flat option (flag, ``env`` variable, config key)."""
    return field(
        default=default,
        metadata={OPTION_METADATA_KEY: Option(env, kind, help, metavar)},
    )


@dataclass(frozen=True, slots=True)
class OptionField:
    """One row of the options table: a ``Settings`` field and how it is set."""

    key: str  # the field's name: the config key, and the flag with '-' for '_'
    default: Any
    option: Option

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    @property
    def env(self) -> str:
        return self.option.env

    @property
    def kind(self) -> Kind[Any]:
        return self.option.kind


def option_fields(cls: type[Any]) -> tuple[OptionField, ...]:
    """The rows of the options table of the dataclass ``cls``, in field order."""
    return tuple(
        OptionField(f.name, f.default, f.metadata[OPTION_METADATA_KEY])
        for f in dataclasses.fields(cls)
        if OPTION_METADATA_KEY in f.metadata
    )
