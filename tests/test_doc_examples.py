"""Every example of README.md and docs/*.md runs as written (see ``tests/docexamples.py``).

Config blocks load; Python blocks run against a proxy served by the test; shell blocks
run against real ``trioproxy`` processes on loopback (``curl``, ``jq`` and the terminal
view included), each command exiting 0, a documented JSON output having the keys the real
one has. A block or a command the harness does not know fails here, so a new example is
checked from the day it is written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.docexamples import (
    LANGUAGES,
    ROOT,
    Block,
    Kind,
    all_blocks,
    classify,
    commands,
    config_for,
    on_proxy,
    words,
)
from tests.proxyutil import mock_spec, running_proxy
from tests.streams import raw_chunks
from trioproxy.cli import load_settings
from trioproxy.config_file import parse_config_text

STARTUP = 30  # seconds for a process to listen
RUN = 60  # seconds a command may take
WATCH = 2.0  # seconds a --watch command runs before its Ctrl+C
BLOCKS = all_blocks()


def of(language: str) -> list[Block]:
    return [block for block in BLOCKS if block.language == language]


def ids(block: Block) -> str:
    return block.where


def test_every_block_is_in_a_language_the_harness_runs_or_shows() -> None:
    unknown = [b.where for b in BLOCKS if b.language not in LANGUAGES]
    assert not unknown, f"teach tests/docexamples.py these languages: {unknown}"


def test_every_shell_command_is_run_or_has_a_reason() -> None:
    for block in of("sh"):
        for command in commands(block):
            kind, _ = classify(command)  # raises for a command no rule knows
            if kind is Kind.SKIP and command.text.startswith("python "):
                script = words(command)[1][1]
                assert (ROOT / script).is_file(), f"{block.where}: no {script}"


@pytest.mark.parametrize("block", of("yaml"), ids=ids)
def test_yaml_blocks_are_valid_configs(block: Block, tmp_path: Path) -> None:
    parse_config_text(block.where, block.text)
    path = tmp_path / "trioproxy.yaml"
    path.write_text(block.text)
    load_settings(["-c", str(path)], {})


# --- Python ------------------------------------------------------------------------------


@pytest.mark.parametrize("block", of("python"), ids=ids)
async def test_python_blocks_run_against_a_proxy(nursery: trio.Nursery, block: Block) -> None:
    async with (
        running_proxy(
            nursery, enable_activity_tracking=True, backends=(mock_spec(chunks=200, delay=0.05),)
        ) as proxy,
        httpx.AsyncClient(timeout=30) as client,
        client.stream(
            "POST",
            proxy.url + "/v1/chat/completions",
            json={"model": "mock-model", "stream": True, "messages": []},
            headers={"x-session-id": "doc-example-session"},
        ) as response,
        raw_chunks(response) as chunks,
    ):
        await anext(chunks)  # a request in flight, for the examples that look at activity
        printed: list[str] = []

        def capture(*args: Any, **_: Any) -> None:
            printed.append(" ".join(map(str, args)))

        code = compile(on_proxy(block.text, proxy.url), block.where, "exec")
        await trio.to_thread.run_sync(exec, code, {"print": capture, "__name__": "__doc__"})
    assert printed, f"{block.where} printed nothing"


# --- shell -------------------------------------------------------------------------------


def shims(directory: Path) -> Path:
    """A PATH directory where the docs' programs run this tree with this interpreter."""
    directory.mkdir()
    programs = {
        "python": f'exec {sys.executable} "$@"',
        "trioproxy": f'exec {sys.executable} -m trioproxy "$@"',
        "trioproxy-inspect": (
            f'exec {sys.executable} -c "import sys; from trioproxy.inspect.cli import main; '
            'sys.exit(main())" "$@"'
        ),
    }
    for name, line in programs.items():
        path = directory / name
        path.write_text(f"#!/bin/sh\n{line}\n")
        path.chmod(0o755)
    return directory


class Server:
    """A ``trioproxy`` process started by a doc's command, on port 0."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
        )
        assert self.proc.stderr is not None
        os.set_blocking(self.proc.stderr.fileno(), True)
        log = b""
        match = None
        while match is None:
            line = self.proc.stderr.readline()
            if not line:
                self.proc.communicate()
                raise AssertionError(f"{argv} did not start:\n{log.decode()}")
            log += line
            match = re.search(rb"trioproxy on (http://\S+);", log)
        self.url = match.group(1).decode()
        self.log = log

    def stop(self) -> None:
        """SIGTERM, by PID; it must exit 0 without a traceback."""
        self.proc.send_signal(signal.SIGTERM)
        _, rest = self.proc.communicate(timeout=RUN)
        log = (self.log + rest).decode()
        assert self.proc.returncode == 0, log
        assert "Traceback" not in log, log


@contextmanager
def servers() -> Iterator[list[Server]]:
    running: list[Server] = []
    try:
        yield running
    finally:
        for server in running:
            if server.proc.poll() is None:
                server.proc.kill()
            server.proc.communicate()  # waits, and closes its pipe


def assert_same_keys(documented: str, actual: str, where: str) -> None:
    """A documented JSON output has the top-level keys of the real one."""
    try:
        shown = json.loads(documented)
    except ValueError:
        return  # not JSON (a table, a screen): shown for illustration
    real = json.loads(actual)
    assert isinstance(shown, dict) and isinstance(real, dict)
    assert set(shown) == set(real), f"{where}: documented {sorted(shown)}, real {sorted(real)}"


@pytest.mark.parametrize("block", of("sh"), ids=ids)
def test_shell_blocks_run_against_real_processes(block: Block, tmp_path: Path) -> None:
    if shutil.which("curl") is None or shutil.which("jq") is None:
        pytest.skip("needs curl and jq")
    bin_dir = shims(tmp_path / "bin")
    work = tmp_path / "work"
    work.mkdir()
    (work / "trioproxy.yaml").write_text(config_for(block))
    base_env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "HOME": str(tmp_path),
        "TERM": "dumb",
    }
    exported: dict[str, str] = {}
    with servers() as running:

        def current() -> Server:
            if not running or running[-1].proc.poll() is not None:
                # The docs' usual proxy: the embedded mock, tracking on.
                argv = [sys.executable, "-m", "trioproxy", "--enable-activity-tracking"]
                running.append(Server([*argv, "--port", "0"], base_env, work))
            return running[-1]

        for command in commands(block):
            kind, _ = classify(command)
            assigned, tokens = words(command)
            where = f"{block.where}: {command.text}"
            if kind is Kind.SKIP:
                continue
            if kind is Kind.EXPORT:
                name, _, value = tokens[1].partition("=")
                exported[name] = value
            elif kind is Kind.SERVER:
                for server in running:
                    if server.proc.poll() is None:
                        server.stop()
                args = ["127.0.0.1" if t == "0.0.0.0" else t for t in tokens[1:]]
                env = {**base_env, **exported, **assigned}
                argv = [sys.executable, "-m", "trioproxy", *args, "--port", "0"]
                running.append(Server(argv, env, work))
            elif kind is Kind.SYNOPSIS:
                program = tokens[0] if tokens[0] != "python" else f"python {tokens[1]}"
                result = run_shell(f"{program} --help", base_env)
                assert result.returncode == 0, (where, result.stderr)
            else:
                text = on_proxy(command.text, current().url)
                if "inspect" in text and "http://" not in text:
                    # The terminal view's URL defaults to the docs' address: name ours.
                    program = "python scripts/inspect_activity.py"
                    if text.startswith(program):
                        text = text.replace(program, f"{program} {current().url}", 1)
                    else:
                        text = text.replace(
                            "trioproxy-inspect", f"trioproxy-inspect {current().url}"
                        )
                # An HTTP error must fail the example, not print a JSON error and exit 0.
                text = re.sub(r"(^|\|\s*)curl ", r"\1curl --fail-with-body ", text)
                env = {**base_env, **exported}
                if kind is Kind.WATCH:
                    watch(text, env, where)
                    continue
                result = run_shell(text, env)
                assert result.returncode == 0, (where, result.stdout, result.stderr)
                assert "Traceback" not in result.stderr, (where, result.stderr)
                if command.output:
                    assert_same_keys(command.output, result.stdout, where)
        for server in running:
            if server.proc.poll() is None:
                server.stop()


def run_shell(text: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", text],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN,
    )


def watch(text: str, env: dict[str, str], where: str) -> None:
    """Run a ``--watch`` command for a while, then Ctrl+C it: exit 0, no traceback."""
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {text}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=WATCH)
        raise AssertionError(f"{where}: exited by itself ({proc.returncode}): {out}{err}")
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=RUN)
    assert proc.returncode == 0, (where, out, err)
    assert "Traceback" not in err, (where, err)
    assert out.strip(), f"{where}: showed nothing"
