"""docs/configuration.md says what the code does: its options table is the options table,
its YAML examples load, and its error lines are the errors the proxy prints."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from trioproxy.cli import load_settings
from trioproxy.config_file import ConfigError, parse_config_text
from trioproxy.options import OptionField
from trioproxy.settings import OPTIONS

DOC = Path(__file__).parents[1] / "docs" / "configuration.md"


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def fenced_blocks(text: str, language: str) -> list[str]:
    """The bodies of the ```language blocks of ``text``, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.M | re.S)


def options_rows(text: str) -> list[list[str]]:
    """The cells of the body rows of the table under '## Options'."""
    section = text.split("\n## Options\n", 1)[1]
    table = section.strip("\n").split("\n\n", 1)[0]
    lines = table.splitlines()
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def code_spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def doc_default(value: Any) -> str:
    """How the table writes a default (the start of its cell)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"`{value:g}`"
    if isinstance(value, tuple):
        return f"`{','.join(value)}`"
    return f"`{value}`"


def flags_of(opt: OptionField) -> list[str]:
    if opt.kind.is_boolean:
        return [opt.flag, "--no-" + opt.flag.removeprefix("--")]
    return [opt.flag]


def test_the_options_table_lists_exactly_the_options_of_the_code() -> None:
    rows = options_rows(doc_text())
    assert all(len(row) == 6 for row in rows), rows
    # The config file is an option of its own: a flag and a variable, no config key.
    config_rows = [row for row in rows if row[3] == "—"]
    option_rows = [row for row in rows if row[3] != "—"]
    assert [(code_spans(row[1]), code_spans(row[2])) for row in config_rows] == [
        (["--config", "-c"], ["TRIOPROXY_CONFIG"])
    ]
    assert [code_spans(row[3])[0] for row in option_rows] == [opt.key for opt in OPTIONS]
    for row, opt in zip(option_rows, OPTIONS, strict=True):
        _, flags, env, _, takes, default = row
        assert code_spans(flags) == flags_of(opt)
        assert code_spans(env) == [opt.env]
        assert takes == opt.kind.file_allowed
        assert default.startswith(doc_default(opt.default)), (opt.key, default)


def test_every_yaml_block_is_a_valid_config(tmp_path: Path) -> None:
    blocks = fenced_blocks(doc_text(), "yaml")
    assert len(blocks) >= 2
    for i, block in enumerate(blocks):
        parse_config_text(f"{DOC.name} yaml block {i + 1}", block)
        path = tmp_path / f"block{i}.yaml"
        path.write_text(block)
        load_settings(["-c", str(path)], {})


# What produces each line of the doc's block of error examples, in order.
ERROR_EXAMPLES: list[tuple[list[str], dict[str, str], str]] = [
    (["--port", "99999"], {}, ""),
    (["--log-level", "verbose"], {}, ""),
    ([], {"TRIOPROXY_PORT": "abc"}, ""),
    ([], {"ENABLE_ACTIVITY_TRACKING": "maybe"}, ""),
    ([], {}, "activity_stale_timeout: 0"),
    ([], {}, "backends:\n  - type: openai\n    base_url: localhost:8080/v1"),
]


def test_the_error_examples_are_the_errors_the_proxy_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = doc_text()
    section = text[text.index("A bad value anywhere") :]
    documented = fenced_blocks(section, "")[0].splitlines()
    monkeypatch.chdir(tmp_path)
    printed = []
    for argv, env, file in ERROR_EXAMPLES:
        Path("trioproxy.yaml").write_text(file)
        with pytest.raises(ConfigError) as info:
            load_settings(["-c", "trioproxy.yaml", *argv], env)
        printed.append(f"trioproxy: error: {info.value}")
    assert documented == printed
