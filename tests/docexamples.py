"""The examples of README.md and docs/*.md, read out of the Markdown, and how each is run.

Every fenced block is one of:

* ``yaml``: a config file, loaded through ``load_settings``;
* ``python``: run in a worker thread of the test, against a proxy the test serves (so the
  SDK examples reach a real proxy, and ``get_activity_tracker()`` finds its tracker);
* ``sh``: shell commands, each classified by :func:`classify` — run against a real
  ``trioproxy`` process on loopback, or skipped for a stated reason (installing, the whole
  suite, the benchmark), never silently;
* no language: output shown for illustration, not run (docs/configuration.md's error
  lines are checked by ``tests/test_configuration_doc.py``).

A block in any other language, or a shell command no rule knows, fails the test that
reads it: a new example is either run or given a reason here. Addresses are rewritten
(``127.0.0.1:8000`` / ``localhost:8000`` to the proxy the test runs; ``--host 0.0.0.0``
to loopback), the proxy's own commands get ``--port 0``, and ``curl`` gets
``--fail-with-body`` so an HTTP error fails the example.
"""

from __future__ import annotations

import enum
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
LANGUAGES = ("yaml", "python", "sh", "")
DOC_ADDRESSES = (
    "http://127.0.0.1:8000",
    "http://localhost:8000",
    "127.0.0.1:8000",
    "localhost:8000",
)


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language and its text."""

    doc: Path
    line: int
    language: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def blocks(doc: Path) -> list[Block]:
    """Every fenced block of ``doc``, in order."""
    text = doc.read_text(encoding="utf-8")
    found = []
    for match in re.finditer(r"^```([\w-]*)\n(.*?)^```$", text, flags=re.M | re.S):
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(doc, line, match.group(1), match.group(2)))
    return found


def all_blocks() -> list[Block]:
    return [block for doc in DOCS for block in blocks(doc)]


class Kind(enum.Enum):
    """What the harness does with one shell command."""

    SERVER = "start a trioproxy process, run the block's next commands against it"
    RUN = "run it against the proxy; it must exit 0"
    WATCH = "run it, interrupt it with SIGINT after a while; it must exit 0 quietly"
    SYNOPSIS = "a usage line, not a command: run the program's --help instead"
    EXPORT = "set a variable for the block's next commands"
    SKIP = "not run on loopback in the suite (the reason says why)"


@dataclass(frozen=True)
class Command:
    """One shell command of a block, with what the doc shows as its output (if any)."""

    text: str
    output: str = ""


# Commands the suite does not run, by their first words, and why.
NOT_RUN = {
    "pip install": "installs packages",
    "nox": "runs the whole suite, lint and type check",
    "apt-get": "installs system packages",
    "python bench/": "the benchmark: minutes of load (the file must exist)",
}


def commands(block: Block) -> list[Command]:
    """The commands of a ``sh`` block: continuations joined, comments dropped, ``&&``
    split; after a ``$ `` prompt, the lines up to the next prompt are its output."""
    lines = block.text.splitlines()
    prompted = any(line.startswith("$ ") for line in lines)
    entries: list[tuple[str, list[str]]] = []  # (command, its output lines)
    for line in lines:
        if entries and _open_quote(entries[-1][0]):
            entries[-1] = (entries[-1][0] + "\n" + line, [])
        elif entries and entries[-1][0].endswith("\\"):
            entries[-1] = (entries[-1][0][:-1] + " " + line.strip(), [])
        elif not prompted:
            entries.append((line, []))
        elif line.startswith("$ "):
            entries.append((line[2:], []))
        elif entries:
            entries[-1][1].append(line)
    out: list[Command] = []
    for text, output in entries:
        out.extend(_split(text, "\n".join(output)))
    return out


def _split(line: str, output: str) -> list[Command]:
    text = _without_comment(line).strip()
    if not text:
        return []
    parts = [part.strip() for part in text.split(" && ")]
    return [Command(part) for part in parts[:-1]] + [Command(parts[-1], output)]


def _open_quote(text: str) -> bool:
    """Whether ``text`` ends inside a quoted string (the command goes on on the next line)."""
    quote = ""
    for char in text:
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
    return bool(quote)


def _unquoted(text: str) -> str:
    """``text`` with its quoted strings removed."""
    return re.sub(r"'[^']*'|\"[^\"]*\"", "''", text)


def _without_comment(line: str) -> str:
    """``line`` without a trailing ``# comment`` (outside quotes)."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def words(command: Command) -> tuple[dict[str, str], list[str]]:
    """The command's leading ``VAR=value`` assignments and its words."""
    tokens = shlex.split(command.text)
    env: dict[str, str] = {}
    while tokens and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", tokens[0]):
        name, _, value = tokens.pop(0).partition("=")
        env[name] = value
    return env, tokens


def classify(command: Command) -> tuple[Kind, str]:
    """What to do with ``command``, and why (the reason of a skip).

    Raises:
        ValueError: no rule knows the command; teach this module to run it, or say why not.
    """
    text = command.text
    for prefix, reason in NOT_RUN.items():
        if text.startswith(prefix):
            return Kind.SKIP, reason
    _, tokens = words(command)
    if not tokens:
        raise ValueError(f"no command in {text!r}")
    program = tokens[0]
    if program == "export":
        return Kind.EXPORT, ""
    if re.search(r"\s(\[|\.\.\.(\s|$))", _unquoted(text)):
        return Kind.SYNOPSIS, ""
    if program == "trioproxy":
        return Kind.SERVER, ""
    if program in ("curl", "trioproxy-inspect") or text.startswith(
        "python scripts/inspect_activity.py"
    ):
        return (Kind.WATCH if "--watch" in tokens else Kind.RUN), ""
    raise ValueError(
        f"no rule for the shell command {text!r}: run it in tests/docexamples.py, or give "
        "the reason it cannot run on loopback in NOT_RUN"
    )


def on_proxy(text: str, url: str) -> str:
    """``text`` with the docs' proxy addresses pointing at ``url`` (``http://host:port``)."""
    for address in DOC_ADDRESSES:
        target = url if address.startswith("http") else url.removeprefix("http://")
        text = re.sub(re.escape(address) + r"(?![\d])", target, text)
    return text


def config_for(block: Block) -> str:
    """The ``trioproxy.yaml`` a doc's commands mean: its yaml block headed by that name,
    else one that turns tracking on (what the docs' ``-c trioproxy.yaml`` lines say)."""
    for other in blocks(block.doc):
        if other.language == "yaml" and other.text.startswith("# trioproxy.yaml"):
            return other.text
    return "enable_activity_tracking: true\n"
