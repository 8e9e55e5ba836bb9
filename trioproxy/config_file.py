"""Reading and validating the YAML config file.

Every problem — a missing or unreadable file, invalid YAML, an unknown key, a wrong
type — raises :class:`ConfigError` with one line that names the file and the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from .settings import OPTIONS, ConnectorType
from .urls import base_url_problem


class ConfigError(Exception):
    """A configuration problem; its message is one line meant for the user."""


# The flat keys are the options table's, each checked by its option's kind.
FLAT_OPTIONS = {opt.key: opt for opt in OPTIONS}
NESTED_KEYS = ("backends", "default_backend", "aliases")
BACKEND_KEYS: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "type": (str,),
    "base_url": (str,),
    "api_key_env": (str,),
    "models": (list,),
    "chunks": (int,),
    "chunk_delay": (int, float),
}
DEFAULT_BASE_URLS = {
    ConnectorType.OPENAI: "https://api.openai.com/v1",
    ConnectorType.ANTHROPIC: "https://api.anthropic.com",
    ConnectorType.MOCK: "",
}
_TYPE_WORDS = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
}


@dataclass(frozen=True, slots=True)
class RawBackend:
    """A backend entry as the file gives it, checked for shape; keys are not read yet."""

    name: str
    type: ConnectorType
    base_url: str
    api_key_env: str | None
    models: tuple[str, ...] | None
    chunks: int | None
    chunk_delay: float | None


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """The validated content of a config file."""

    path: str
    flat: Mapping[str, Any]
    backends: tuple[RawBackend, ...] | None
    default_backend: str | None
    aliases: Mapping[str, str] = field(default_factory=dict)


def _check_type(path: str, key: str, value: Any, allowed: tuple[type, ...]) -> None:
    ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
    if not ok:
        words = " or ".join(_TYPE_WORDS[t] for t in allowed if t in _TYPE_WORDS)
        raise ConfigError(f"{path}: key '{key}' must be {words}, not {value!r}")


def parse_config_text(path: str, text: str) -> ConfigFile:
    """Validate the YAML ``text`` of the file at ``path`` (pure but for YAML parsing)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: invalid YAML{where}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    flat: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    nested: dict[str, Any] = {}
    for raw_key, value in data.items():
        # Keys may be written as the flag (enable-activity-tracking) or as a name (…_…).
        key = str(raw_key).replace("-", "_")
        if key in spelled:
            raise ConfigError(f"{path}: key '{raw_key}' is given twice (also as '{spelled[key]}')")
        spelled[key] = str(raw_key)
        if key in NESTED_KEYS:
            nested[key] = value
        if key in FLAT_OPTIONS:
            kind = FLAT_OPTIONS[key].kind
            try:
                flat[key] = kind.from_yaml(value)
            except ValueError:
                raise ConfigError(
                    f"{path}: key '{raw_key}' must be {kind.file_allowed}, not {value!r}"
                ) from None
        elif key not in NESTED_KEYS:
            raise ConfigError(f"{path}: unknown key '{raw_key}'")
    default = nested.get("default_backend")
    if default is not None:
        _check_type(path, "default_backend", default, (str,))
    backends = None
    if "backends" in nested:
        backends = _parse_backends(path, nested["backends"])
        if default is not None and default not in {b.name for b in backends}:
            raise ConfigError(f"{path}: key 'default_backend' names no backend: {default!r}")
    elif default is not None:
        raise ConfigError(f"{path}: key 'default_backend' needs a 'backends' list")
    return ConfigFile(path, flat, backends, default, _parse_aliases(path, nested.get("aliases")))


def _parse_aliases(path: str, entries: Any) -> dict[str, str]:
    """The ``aliases`` mapping: a client's model name to the model routing sees instead."""
    if entries is None:
        return {}
    if not isinstance(entries, dict):
        raise ConfigError(f"{path}: key 'aliases' must be a mapping of model names to models")
    aliases: dict[str, str] = {}
    for name, target in entries.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{path}: key 'aliases' has a name that is not a string: {name!r}")
        if not isinstance(target, str) or not target.strip():
            raise ConfigError(
                f"{path}: key 'aliases.{name}' must be a model name (or instance:model), "
                f"not {target!r}"
            )
        aliases[name] = target.strip()
    return aliases


def _parse_backends(path: str, entries: Any) -> tuple[RawBackend, ...]:
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: key 'backends' must be a list of backends")
    counts: dict[ConnectorType, int] = {}
    out: list[RawBackend] = []
    for i, entry in enumerate(entries):
        where = f"backends[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: key '{where}' must be a mapping")
        for key, value in entry.items():
            if key not in BACKEND_KEYS:
                raise ConfigError(f"{path}: unknown key '{where}.{key}'")
            _check_type(path, f"{where}.{key}", value, BACKEND_KEYS[key])
        if "type" not in entry:
            raise ConfigError(f"{path}: key '{where}.type' is missing (openai, anthropic, mock)")
        try:
            kind = ConnectorType(entry["type"])
        except ValueError:
            raise ConfigError(
                f"{path}: key '{where}.type' must be openai, anthropic or mock, "
                f"not {entry['type']!r}"
            ) from None
        counts[kind] = counts.get(kind, 0) + 1
        name = entry.get("name")
        if name is None:
            name = f"{kind.value}.{counts[kind]}"
        elif not name or name != name.strip() or not name.isprintable():
            # It names the backend in log lines, documents and model prefixes.
            raise ConfigError(
                f"{path}: key '{where}.name' must be a name of printable characters with no "
                f"space around it, not {name!r}"
            )
        if any(b.name == name for b in out):
            raise ConfigError(f"{path}: key '{where}.name' repeats the name {name!r}")
        if ":" in name:
            raise ConfigError(f"{path}: key '{where}.name' may not contain ':'")
        models = entry.get("models")
        if models is not None:
            if not all(isinstance(m, str) and m for m in models):
                raise ConfigError(f"{path}: key '{where}.models' must be a list of model names")
            models = tuple(models)
        base_url = entry.get("base_url", DEFAULT_BASE_URLS[kind]).rstrip("/")
        # Caught here, not at the first request: it would answer every request with 502.
        problem = base_url_problem(base_url) if kind is not ConnectorType.MOCK else None
        if problem is not None:
            raise ConfigError(f"{path}: key '{where}.base_url' {problem}")
        for key in ("chunks", "chunk_delay"):
            if entry.get(key) is not None and entry[key] < 0:
                raise ConfigError(f"{path}: key '{where}.{key}' must be 0 or more")
        out.append(
            RawBackend(
                name=name,
                type=kind,
                base_url=base_url,
                api_key_env=entry.get("api_key_env"),
                models=models,
                chunks=entry.get("chunks"),
                chunk_delay=entry.get("chunk_delay"),
            )
        )
    return tuple(out)


def load_config_file(path: str) -> ConfigFile:
    """Read and validate the config file at ``path``.

    Raises:
        ConfigError: missing, unreadable, not YAML, or not a valid config.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path}: cannot read the config file ({exc.__class__.__name__})"
        ) from None
    return parse_config_text(path, text)
