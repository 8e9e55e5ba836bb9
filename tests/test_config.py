"""Configuration: precedence flag > environment > file > default, and clear errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import trioproxy
from tests.proxyprocess import trioproxy_process
from trioproxy.cli import load_settings, startup_warnings
from trioproxy.config_file import ConfigError
from trioproxy.options import (
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
)
from trioproxy.settings import OPTIONS, ConnectorType, Settings


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "trioproxy.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("file", "env", "argv", "key", "expected"),
    [
        ("", {}, [], "port", 8000),
        ("port: 9001", {}, [], "port", 9001),
        ("port: 9001", {"TRIOPROXY_PORT": "9002"}, [], "port", 9002),
        ("port: 9001", {"TRIOPROXY_PORT": "9002"}, ["--port", "9003"], "port", 9003),
        ("", {"TRIOPROXY_HOST": "::1"}, [], "host", "::1"),
        ("log_level: debug", {}, [], "log_level", "debug"),
        ("log-level: warning", {"TRIOPROXY_LOG_LEVEL": "ERROR"}, [], "log_level", "error"),
        ("activity_stale_timeout: 12.5", {}, [], "activity_stale_timeout", 12.5),
        (
            "max_request_body: 1000",
            {"TRIOPROXY_MAX_REQUEST_BODY": "2000"},
            [],
            "max_request_body",
            2000,
        ),
        ("", {}, ["--upstream-read-timeout", "7"], "upstream_read_timeout", 7.0),
        # The activity tracking switch, every layer and both directions.
        ("", {}, [], "enable_activity_tracking", False),
        ("enable_activity_tracking: true", {}, [], "enable_activity_tracking", True),
        ("enable-activity-tracking: true", {}, [], "enable_activity_tracking", True),
        (
            "enable_activity_tracking: true",
            {"ENABLE_ACTIVITY_TRACKING": "0"},
            [],
            "enable_activity_tracking",
            False,
        ),
        (
            "enable_activity_tracking: false",
            {"ENABLE_ACTIVITY_TRACKING": "yes"},
            [],
            "enable_activity_tracking",
            True,
        ),
        ("", {"ENABLE_ACTIVITY_TRACKING": "ON"}, [], "enable_activity_tracking", True),
        ("", {"ENABLE_ACTIVITY_TRACKING": "off"}, [], "enable_activity_tracking", False),
        (
            "",
            {"ENABLE_ACTIVITY_TRACKING": "0"},
            ["--enable-activity-tracking"],
            "enable_activity_tracking",
            True,
        ),
        (
            "enable_activity_tracking: true",
            {"ENABLE_ACTIVITY_TRACKING": "1"},
            ["--no-enable-activity-tracking"],
            "enable_activity_tracking",
            False,
        ),
    ],
)
def test_precedence(
    tmp_path: Path, file: str, env: dict[str, str], argv: list[str], key: str, expected: Any
) -> None:
    path = write(tmp_path, file)
    settings = load_settings(["--config", path, *argv], env)
    assert getattr(settings, key) == expected


# Two values each kind of option takes, the first never a default. A new option of an
# existing kind needs nothing here; a new kind adds its row.
SAMPLES: dict[Any, tuple[Any, Any]] = {
    TEXT: ("SAMPLE_A", "SAMPLE_B"),
    HOST: ("::1", "localhost"),
    PORT: (9001, 9002),
    POSITIVE_INT: (1000, 2000),
    POSITIVE_NUMBER: (1.5, 12.5),
    HEADER_NAMES: (("x-a",), ("x-b", "session_id")),
    HISTORY_SIZE: (0, 50),
    WORKER_COUNT: (2, 3),
}
# client_keys_env names a variable that must hold keys: let every text sample name one.
SAMPLE_ENVIRONMENT = {"SAMPLE_A": "key-a", "SAMPLE_B": "key-b"}


def samples(opt: OptionField) -> tuple[Any, Any]:
    """Two values ``opt`` takes, the first not its default."""
    if opt.kind.is_boolean:
        return (not opt.default, opt.default)
    if opt.kind.choices:
        first, second = [w for w in opt.kind.choices if w != opt.default][:2]
        return (first, second)
    return SAMPLES[opt.kind]


def env_text(opt: OptionField, value: Any) -> str:
    if opt.kind.is_boolean:
        return "yes" if value else "off"
    return opt.kind.to_text(value)


def flag_args(opt: OptionField, value: Any) -> list[str]:
    if opt.kind.is_boolean:
        return [opt.flag if value else "--no-" + opt.flag.removeprefix("--")]
    return [opt.flag, opt.kind.to_text(value)]


def yaml_value(value: Any) -> Any:
    """``value`` as YAML can write it (a tuple option is a list in the file)."""
    return list(value) if isinstance(value, tuple) else value


def option_id(opt: OptionField) -> str:
    return opt.key


@pytest.mark.parametrize("opt", OPTIONS, ids=option_id)
@pytest.mark.parametrize(
    ("layers", "winner"),
    [
        ((), "default"),
        (("file",), "file"),
        (("file-dashed",), "file-dashed"),
        (("env",), "env"),
        (("flag",), "flag"),
        (("file", "env"), "env"),
        (("file", "flag"), "flag"),
        (("env", "flag"), "flag"),
        (("file", "env", "flag"), "flag"),
    ],
)
def test_every_option_is_set_by_flag_env_and_file_in_precedence(
    tmp_path: Path, opt: OptionField, layers: tuple[str, ...], winner: str
) -> None:
    """flag > environment variable > config file > default, for every option of the table.

    Each layer present gets a value other than the one of the layer below it, so the
    result names the layer that won.
    """
    x, y = samples(opt)
    values: dict[str, Any] = {"default": opt.default}
    below = opt.default
    for layer in ("file", "file-dashed", "env", "flag"):
        if layer in layers:
            values[layer] = x if below != x else y
            below = values[layer]
    text = ""
    if "file" in layers:
        text = yaml.safe_dump({opt.key: yaml_value(values["file"])})
    if "file-dashed" in layers:
        text = yaml.safe_dump({opt.key.replace("_", "-"): yaml_value(values["file-dashed"])})
    env = dict(SAMPLE_ENVIRONMENT)
    if "env" in layers:
        env[opt.env] = env_text(opt, values["env"])
    argv = ["--config", write(tmp_path, text)]
    if "flag" in layers:
        argv += flag_args(opt, values["flag"])
    settings = load_settings(argv, env)
    assert getattr(settings, opt.key) == values[winner]


def test_the_table_is_the_settings_fields_and_their_defaults() -> None:
    """Every option has its field's default, and loading nothing gives the defaults."""
    loaded = load_settings([], {})
    for opt in OPTIONS:
        assert opt.default == getattr(Settings(), opt.key)
        assert getattr(loaded, opt.key) == opt.default
        if opt.default is not None:
            # The default is a value the option itself takes.
            assert opt.kind.from_yaml(opt.default) == opt.default
    keys = [opt.key for opt in OPTIONS]
    envs = [opt.env for opt in OPTIONS]
    assert len(set(keys)) == len(keys) and len(set(envs)) == len(envs)
    # The settings that are not options stay out of the table.
    assert not {"backends", "default_backend", "client_keys", "embedded_mock", "config_path"} & set(
        keys
    )


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "port: 9100")
    assert load_settings([], {"TRIOPROXY_CONFIG": path}).port == 9100
    # The flag wins over the variable.
    other = tmp_path / "other.yaml"
    other.write_text("port: 9200")
    assert load_settings(["-c", str(other)], {"TRIOPROXY_CONFIG": path}).port == 9200


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("port: [", ["invalid YAML", "line"]),
        ("- a\n- b", ["top level"]),
        ("colour: blue", ["unknown key 'colour'"]),
        ("port: eighty", ["key 'port'", "port number"]),
        ("enable_activity_tracking: maybe", ["key 'enable_activity_tracking'", "true or false"]),
        ("backends: {}", ["key 'backends'"]),
        ("backends:\n  - type: gemini", ["key 'backends[0].type'", "gemini"]),
        ("backends:\n  - type: openai\n    colour: red", ["unknown key 'backends[0].colour'"]),
        ("backends:\n  - base_url: http://x", ["backends[0].type", "missing"]),
        ("backends:\n  - type: openai\n    models: gpt", ["backends[0].models", "list"]),
        (
            "backends:\n  - type: openai\n  - type: openai\n    name: openai.1",
            ["backends[1].name", "repeats"],
        ),
        ("default_backend: nope\nbackends:\n  - type: mock", ["default_backend", "nope"]),
        (
            "backends:\n  - type: openai\n    base_url: localhost:8080/v1",
            [
                "key 'backends[0].base_url' must be an http:// or https:// URL, "
                "not 'localhost:8080/v1'"
            ],
        ),
        (
            "backends:\n  - type: mock\n  - type: anthropic\n    base_url: api.anthropic.com",
            ["key 'backends[1].base_url' must be an http:// or https:// URL"],
        ),
        ("backends:\n  - type: openai\n    base_url: http://h:port/v1", ["backends[0].base_url"]),
        ("backends:\n  - type: openai\n    base_url: 'http:///v1'", ["backends[0].base_url"]),
    ],
)
def test_bad_config_files_name_file_and_key(tmp_path: Path, text: str, words: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(["--config", path], {})
    message = str(info.value)
    assert message.startswith(path)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(["--config", str(tmp_path / "absent.yaml")], {})


# Values each kind refuses: as the text of a flag or variable, and as a YAML value.
BAD_TEXT: dict[Any, tuple[str, ...]] = {
    TEXT: (),
    HOST: ("", " ", "[]", "[ ]"),
    PORT: ("99999", "-1", "abc", "80.5"),
    POSITIVE_INT: ("0", "-3", "1.5", "lots"),
    POSITIVE_NUMBER: ("0", "-2", "nan", "soon"),
    BOOLEAN: ("maybe", "2"),
    HEADER_NAMES: ("", " , ", "x a", "x:y"),
    HISTORY_SIZE: ("-1", "1.5", "many", "1000001", "9" * 20),
    WORKER_COUNT: ("0", "-2", "1.5", "all"),
}
BAD_YAML: dict[Any, tuple[Any, ...]] = {
    TEXT: (1, [1], True),
    HOST: (1, [1], True),
    PORT: (99999, -1, "8000", True, 80.5),
    POSITIVE_INT: (0, 1.5, "10", False),
    POSITIVE_NUMBER: (0, -1.5, "1", True),
    BOOLEAN: ("yes", 1, None),
    HEADER_NAMES: ([], [""], ["x y"], 3, [1]),
    HISTORY_SIZE: (-1, 1.5, "10", True, 1_000_001),
    WORKER_COUNT: (0, 1.5, "2", "all", True),
}


@pytest.mark.parametrize(
    ("argv", "env", "text"),
    [
        (["--workers", "auto"], {}, ""),
        (["--workers", "AUTO"], {}, ""),
        ([], {"TRIOPROXY_WORKERS": "auto"}, ""),
        ([], {}, "workers: auto\n"),
    ],
)
def test_workers_auto_is_the_number_of_usable_cores(
    tmp_path: Path, argv: list[str], env: dict[str, str], text: str
) -> None:
    if text:
        argv = ["-c", write(tmp_path, text)]
    assert load_settings(argv, env).workers == len(os.sched_getaffinity(0))


def test_workers_default_to_one_process() -> None:
    assert load_settings([], {}).workers == 1
    assert load_settings(["--workers", "3"], {}).workers == 3


def bad_text(opt: OptionField) -> tuple[str, ...]:
    return ("verbose", "") if opt.kind.choices else BAD_TEXT[opt.kind]


def bad_yaml(opt: OptionField) -> tuple[Any, ...]:
    return ("verbose", 1) if opt.kind.choices else BAD_YAML[opt.kind]


@pytest.mark.parametrize(
    ("opt", "text"),
    [(opt, text) for opt in OPTIONS if not opt.kind.is_boolean for text in bad_text(opt)],
    ids=repr,
)
def test_a_bad_flag_value_is_named_in_words(opt: OptionField, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings([opt.flag, text], {})
    assert str(info.value) == f"{opt.flag}: {text!r} is not {opt.kind.allowed}"


@pytest.mark.parametrize(
    ("opt", "text"), [(opt, text) for opt in OPTIONS for text in bad_text(opt)], ids=repr
)
def test_a_bad_variable_is_named_in_words(opt: OptionField, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings([], {opt.env: text})
    assert str(info.value) == f"environment variable {opt.env}={text!r} is not {opt.kind.allowed}"


@pytest.mark.parametrize(
    ("opt", "value"), [(opt, value) for opt in OPTIONS for value in bad_yaml(opt)], ids=repr
)
def test_a_bad_config_value_is_named_with_file_and_key(
    tmp_path: Path, opt: OptionField, value: Any
) -> None:
    path = write(tmp_path, yaml.safe_dump({opt.key: value}))
    with pytest.raises(ConfigError) as info:
        load_settings(["-c", path], {})
    assert (
        str(info.value) == f"{path}: key '{opt.key}' must be {opt.kind.file_allowed}, not {value!r}"
    )


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--port", "99999"], {}, "--port: '99999' is not a port number (0-65535)"),
        (
            ["--log-level", "verbose"],
            {},
            "--log-level: 'verbose' is not one of debug, info, warning, error",
        ),
        (
            ["--activity-stale-timeout", "0"],
            {},
            "--activity-stale-timeout: '0' is not a number greater than 0",
        ),
        (
            [],
            {"TRIOPROXY_PORT": "abc"},
            "environment variable TRIOPROXY_PORT='abc' is not a port number (0-65535)",
        ),
        (
            [],
            {"ENABLE_ACTIVITY_TRACKING": "maybe"},
            "environment variable ENABLE_ACTIVITY_TRACKING='maybe' is not one of "
            "1 true yes on 0 false no off",
        ),
        (["--port"], {}, "--port: expected one argument"),
    ],
)
def test_option_errors_say_option_value_and_what_is_allowed(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    """The reports of issue 11, word for word: no parser function names."""
    with pytest.raises(ConfigError) as info:
        load_settings(argv, env)
    assert str(info.value) == message


def test_a_bad_config_value_in_range_words(tmp_path: Path) -> None:
    path = write(tmp_path, "port: 99999")
    with pytest.raises(ConfigError) as info:
        load_settings(["-c", path], {})
    assert str(info.value) == f"{path}: key 'port' must be a port number (0-65535), not 99999"


def test_backends_from_file_are_numbered_per_type_and_keys_resolved(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
default_backend: openai.2
backends:
  - type: openai
    base_url: http://127.0.0.1:1/v1/
    api_key_env: KEY_A
  - type: anthropic
    api_key_env: KEY_B
  - type: openai
    base_url: http://127.0.0.1:2/v1
    models: [m1, m2]
  - name: demo
    type: mock
    chunks: 3
    chunk_delay: 0
""",
    )
    settings = load_settings(["-c", path], {"KEY_A": "sk-secret-a"})
    names = [b.name for b in settings.backends]
    assert names == ["openai.1", "anthropic.1", "openai.2", "demo"]
    a, b, c, d = settings.backends
    assert a.base_url == "http://127.0.0.1:1/v1"
    assert a.api_key is not None and a.api_key.value == "sk-secret-a"
    assert b.api_key is None and b.base_url == "https://api.anthropic.com"
    assert c.models == ("m1", "m2")
    assert (d.type, d.mock_chunks, d.mock_chunk_delay) == (ConnectorType.MOCK, 3, 0)
    assert settings.default_backend == "openai.2"
    assert "sk-secret-a" not in repr(settings)


def test_backends_from_environment() -> None:
    settings = load_settings(
        [],
        {"OPENAI_API_KEY": "sk-1", "OPENAI_BASE_URL": "http://h/v1", "ANTHROPIC_API_KEY": "k"},
    )
    assert [(b.name, b.base_url) for b in settings.backends] == [
        ("openai.1", "http://h/v1"),
        ("anthropic.1", "https://api.anthropic.com"),
    ]
    assert not settings.embedded_mock


def test_a_base_url_from_the_environment_must_be_an_http_url() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings([], {"OPENAI_API_KEY": "sk-1", "OPENAI_BASE_URL": "localhost:8080/v1"})
    assert str(info.value) == (
        "environment variable OPENAI_BASE_URL must be an http:// or https:// URL, "
        "not 'localhost:8080/v1'"
    )
    with pytest.raises(ConfigError, match="ANTHROPIC_BASE_URL"):
        load_settings([], {"ANTHROPIC_API_KEY": "k", "ANTHROPIC_BASE_URL": "ftp://h"})
    # A base-URL variable without its key variable configures nothing, so it is not read.
    assert load_settings([], {"OPENAI_BASE_URL": "localhost:8080/v1"}).embedded_mock


def test_a_bad_base_url_is_shown_without_its_credentials_or_query(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "backends:\n  - type: openai\n    base_url: 'ftp://user:sk-pass@h/v1?key=sk-query'",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(["-c", path], {})
    message = str(info.value)
    assert "backends[0].base_url" in message and "ftp://***@h/v1?key=***" in message
    assert "sk-" not in message and "user" not in message


def test_a_backend_whose_key_variable_is_unset_is_a_start_up_warning(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
backends:
  - {name: keyless, type: openai, base_url: "http://127.0.0.1:1/v1", api_key_env: UNSET_KEY}
  - {name: empty, type: anthropic, api_key_env: EMPTY_KEY}
  - {name: keyed, type: openai, api_key_env: SET_KEY}
  - {name: local, type: openai, base_url: "http://127.0.0.1:2/v1"}
  - {name: demo, type: mock}
""",
    )
    settings = load_settings(["-c", path], {"EMPTY_KEY": "", "SET_KEY": "sk-value"})
    assert startup_warnings(settings) == [
        "backend keyless: environment variable UNSET_KEY (its api_key_env) is not set or "
        "empty; its requests are sent without a key",
        "backend empty: environment variable EMPTY_KEY (its api_key_env) is not set or "
        "empty; its requests are sent without a key",
    ]


async def test_the_unset_key_warning_is_logged_when_the_proxy_starts(tmp_path: Path) -> None:
    config = """
backends:
  - name: keyless
    type: openai
    base_url: http://127.0.0.1:1/v1
    api_key_env: TRIOPROXY_TEST_UNSET_KEY
    models: [m]
  - name: keyed
    type: openai
    base_url: http://127.0.0.1:1/v1
    api_key_env: TRIOPROXY_TEST_SET_KEY
    models: [m]
"""
    env = {k: v for k, v in os.environ.items() if k != "TRIOPROXY_TEST_UNSET_KEY"}
    env["TRIOPROXY_TEST_SET_KEY"] = "sk-must-not-be-logged"
    async with trioproxy_process(tmp_path, config, env=env) as proxy:
        log = proxy.log.decode()
    warnings = [line for line in log.splitlines() if " WARNING " in line]
    assert len(warnings) == 1, log
    assert "backend keyless" in warnings[0] and "TRIOPROXY_TEST_UNSET_KEY" in warnings[0]
    assert "sk-must-not-be-logged" not in log and "TRIOPROXY_TEST_SET_KEY" not in log


def test_embedded_mock_when_nothing_is_configured() -> None:
    settings = load_settings([], {})
    assert [(b.name, b.type) for b in settings.backends] == [("mock.1", ConnectorType.MOCK)]
    assert settings.embedded_mock


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trioproxy", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )


def test_help_lists_every_option_and_variable() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for opt in OPTIONS:
        assert opt.flag in result.stdout
        assert opt.env in result.stdout
        if opt.kind.is_boolean:
            assert "--no-" + opt.flag.removeprefix("--") in result.stdout
    assert "TRIOPROXY_CONFIG" in result.stdout
    # A list's default as the flag takes it, not as a Python tuple.
    assert "(default: x-session-" in result.stdout and "('x-session" not in result.stdout


def test_help_states_the_precedence_in_an_epilog_of_its_own() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    options, _, epilog = result.stdout.rstrip("\n").rpartition("\n\n")
    assert "--client-keys-env" in options
    assert epilog[:1].strip(), f"the epilog starts with a space: {epilog!r}"
    assert "flag > environment variable > config file > default" in " ".join(epilog.split())
    assert "In general" not in result.stdout
    assert all(len(line) <= 80 for line in result.stdout.splitlines())


def test_version_prints_the_package_version() -> None:
    """The installed distribution's version (package metadata), as ``trioproxy.__version__``."""
    result = run_cli("--version")
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        f"trioproxy {trioproxy.__version__}\n",
        "",
    )


def test_bad_config_stops_start_up_with_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "port: [")
    result = run_cli("--config", path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert path in result.stderr and "Traceback" not in result.stderr


def test_bad_variable_stops_start_up_with_one_line() -> None:
    result = run_cli(env={"ENABLE_ACTIVITY_TRACKING": "maybe"})
    assert result.returncode == 2
    assert "ENABLE_ACTIVITY_TRACKING" in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "env", "file", "words"),
    [
        (["--port", "99999"], {}, "", "--port: '99999' is not a port number"),
        # An empty variable name meant keys, and an empty host means every interface:
        # each started without a word (no authentication; bound to 0.0.0.0).
        (["--client-keys-env", ""], {}, "", "client keys: the name of their environment"),
        ([], {"TRIOPROXY_ADMIN_KEYS_ENV": " "}, "", "admin keys: the name of their environment"),
        (["--host", ""], {}, "", "--host: '' is not an address"),
        ([], {}, "host: ''", "key 'host' must be an address"),
        # A credential as a session id would be echoed, shown and logged.
        (["--session-headers", "x-session-id,Authorization"], {}, "", "--session-headers: "),
        # A tracker's history past the bound was an OverflowError traceback.
        (["--activity-history", "9" * 20], {}, "", "--activity-history: '999"),
        (
            [],
            {},
            "backends:\n  - type: openai\n    base_url: 'http://[::1/v1'",
            "key 'backends[0].base_url' must be an http:// or https:// URL",
        ),
        (
            [],
            {},
            "backends:\n  - type: openai\n    base_url: 'http://localhost:0/v1'",
            "key 'backends[0].base_url' must be an http:// or https:// URL",
        ),
        # Each was taken without a word: a key in both spellings (the last won), a
        # dashed default-backend (ignored), a negative mock delay (every stream then
        # failed with a traceback), a backend name that would split a log line.
        (
            [],
            {},
            "enable_activity_tracking: true\nenable-activity-tracking: false",
            "key 'enable-activity-tracking' is given twice (also as 'enable_activity_tracking')",
        ),
        (
            [],
            {},
            "backends:\n  - type: mock\ndefault-backend: nope",
            "key 'default_backend' names no backend: 'nope'",
        ),
        (
            [],
            {},
            "backends:\n  - type: mock\n    chunk_delay: -1",
            "key 'backends[0].chunk_delay' must be 0 or more",
        ),
        (
            [],
            {},
            'backends:\n  - type: mock\n    name: "a\\nb"',
            "key 'backends[0].name' must be a name of printable characters",
        ),
        ([], {}, "backends:\n  - type: mock\n    name: ''", "key 'backends[0].name' must be"),
        # Past the bound, which stopped start-up with a MemoryError or OverflowError.
        (["--workers", "99999999999"], {}, "", "--workers: '99999999999' is not an integer from"),
        ([], {"TRIOPROXY_WORKERS": "9" * 20}, "", "TRIOPROXY_WORKERS='" + "9" * 20),
        ([], {}, "workers: 129", "key 'workers' must be an integer from 1 to 128, or auto"),
        ([], {"TRIOPROXY_LOG_LEVEL": "verbose"}, "", "TRIOPROXY_LOG_LEVEL='verbose' is not"),
        ([], {}, "activity_stale_timeout: 0", "key 'activity_stale_timeout' must be a number"),
        (
            [],
            {},
            "backends:\n  - type: openai\n    base_url: localhost:8080/v1",
            "key 'backends[0].base_url' must be an http:// or https:// URL",
        ),
        (
            [],
            {"OPENAI_API_KEY": "sk-1", "OPENAI_BASE_URL": "localhost:8080/v1"},
            "",
            "environment variable OPENAI_BASE_URL must be an http:// or https:// URL",
        ),
    ],
)
def test_a_bad_option_stops_start_up_with_one_line(
    tmp_path: Path, args: list[str], env: dict[str, str], file: str, words: str
) -> None:
    """Flag, variable or config value: one line on stderr, exit 2, no traceback."""
    result = run_cli("-c", write(tmp_path, file), *args, env=env)
    assert result.returncode == 2
    assert result.stderr.startswith("trioproxy: error: ")
    assert words in result.stderr and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr and "_port" not in result.stderr


@pytest.mark.parametrize("log_level", ["info", "warning"])
def test_a_port_in_use_is_one_line_naming_the_address(log_level: str) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = run_cli("--port", str(port), "--log-level", log_level)
    line = f"trioproxy: error: cannot listen on 127.0.0.1:{port}: address already in use\n"
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "ExceptionGroup" not in result.stderr
    assert result.stderr.endswith(line)
    if log_level == "warning":
        assert result.stderr == line


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_access_log_file_that_cannot_be_opened_is_one_line_naming_it(
    tmp_path: Path, workers: str
) -> None:
    # It was "cannot listen on 127.0.0.1:0" in one process, and each worker's traceback
    # then "worker 1 exited with 1 before it was serving" with workers.
    missing = tmp_path / "no-such-dir" / "access.log"
    result = run_cli(
        "--port", "0", "--log-level", "warning", "--access-log-file", str(missing),
        "--workers", workers,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == f"trioproxy: error: cannot open {missing}: no such file or directory\n"


@pytest.mark.parametrize("text", ["off", "Off", "false", '"off"'])
def test_a_bare_off_in_yaml_turns_the_access_log_off(tmp_path: Path, text: str) -> None:
    # YAML 1.1 reads a bare off as false: the file still means the word.
    settings = load_settings(["-c", write(tmp_path, f"access_log: {text}\n")], {})
    assert settings.access_log == "off"


@pytest.mark.parametrize("given", ["::1", "[::1]", " [::1] "])
def test_an_ipv6_host_may_come_bracketed(given: str) -> None:
    # "[::1]" was bound as "[[::1]]" with workers ("name or service not known").
    assert load_settings(["--host", given], {}).host == "::1"
    assert load_settings([], {"TRIOPROXY_HOST": given}).host == "::1"
