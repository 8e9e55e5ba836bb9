"""How the access log writes (``trioproxy.accesslog.AccessLog``): a whole line per entry,
on the file at once, and nothing after it is closed."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from trioproxy.accesslog import AccessEntry, AccessLog, format_json


def entry(session: str) -> AccessEntry:
    return AccessEntry(
        time=1_700_000_000.25,
        client="127.0.0.1:5000",
        method="POST",
        path="/v1/chat/completions",
        status=200,
        instance="openai.1",
        endpoint="chat.completions",
        model="gpt-4o",
        session=session,
        duration=1.5,
        ttfb=0.25,
        bytes_rx=10,
        bytes_tx=9,
        outcome="completed",
    )


def test_each_entry_is_one_line_on_the_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog("json", str(path))
    log.write(entry("s1"))
    # Readable before the log is closed, once its thread has written it.
    assert log.flush()
    (line,) = path.read_text().splitlines()
    assert json.loads(line)["session"] == "s1"
    log.write(entry("s2"))
    log.close()
    log.write(entry("after"))
    assert [json.loads(x)["session"] for x in path.read_text().splitlines()] == ["s1", "s2"]


def test_text_lines_go_to_stderr_without_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    log = AccessLog("text")
    log.write(entry("s1"))
    log.close()
    err = capsys.readouterr().err
    assert err.startswith("2023-11-14T22:13:20.250Z client=127.0.0.1:5000 POST /v1/chat/")
    assert err.endswith("session=s1 duration=1.500 ttfb=0.250 rx=10 tx=9 outcome=completed\n")


def test_a_json_line_has_every_field_of_the_entry_with_its_value() -> None:
    line = json.loads(format_json(entry('s-"1"\n')))
    want = {field.name: getattr(entry('s-"1"\n'), field.name) for field in fields(AccessEntry)}
    assert line == {"timestamp": "2023-11-14T22:13:20.250Z", **want}
