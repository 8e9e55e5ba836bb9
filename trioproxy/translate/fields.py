"""What happens to every top-level field of a request crossing between the two APIs.

Two tables, one per client API, are the single statement of the rules: the request
translators take the fields listed, leave out any other with one WARNING per field name
and direction (the first :data:`WARN_AT_MOST` names: a client cannot flood the log),
refuse the values a table's ``refuse_when`` picks (a 400 naming the field), and
``docs/translation.md`` prints the tables as they are here (a test holds the document to
:func:`markdown_table`). A field whose value is ``null`` counts as absent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .common import UntranslatableField

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FieldRule:
    """``how``: what the translation does with the field, as the documentation says it;
    ``refuse_when``: the values answered with 400 (``None``: no value is refused)."""

    how: str
    refuse_when: Callable[[Any], bool] | None = None


def _always(value: Any) -> bool:
    return True


def _not_one(value: Any) -> bool:
    return bool(value != 1)


def _truthy(value: Any) -> bool:
    return bool(value)


def _nonzero(value: Any) -> bool:
    return bool(value != 0)


def _not_text_only(value: Any) -> bool:
    return not isinstance(value, list) or any(m != "text" for m in value)


def _json_object(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") == "json_object"


_ACCOUNT = "Anthropic account, workspace or billing attribution: left out"

# An Anthropic Messages client (POST /v1/messages) served by an OpenAI Chat Completions
# backend. Fields of today's anthropic SDK (2.x, beta ones included) plus the sampling
# fields older clients and Claude Code still send.
MESSAGES_FIELDS: Mapping[str, FieldRule] = {
    "model": FieldRule("`model`"),
    "messages": FieldRule("`messages`, block by block (see *Messages*)"),
    "max_tokens": FieldRule("`max_tokens`"),
    "system": FieldRule(
        "a first `system` message; text blocks joined with a blank line, Claude Code's "
        "`x-anthropic-billing-header:` block left out"
    ),
    "stop_sequences": FieldRule("`stop`"),
    "stream": FieldRule("`stream`, with `stream_options: {include_usage: true}`"),
    "temperature": FieldRule("`temperature`"),
    "top_p": FieldRule("`top_p`"),
    "top_k": FieldRule(
        "`top_k`, an extension vLLM, llama.cpp, Ollama and OpenRouter take "
        "(OpenAI itself answers 400)"
    ),
    "metadata": FieldRule("`metadata.user_id` → `user`; the rest has no counterpart"),
    "tools": FieldRule(
        "`tools` of type `function` (see *Tools*); an Anthropic-defined tool "
        "(`bash_…`, `web_search_…`, `code_execution_…`, …) → 400"
    ),
    "tool_choice": FieldRule(
        "`tool_choice` (see *Tools*); `disable_parallel_tool_use` → `parallel_tool_calls: false`"
    ),
    "thinking": FieldRule("`reasoning_effort` (see *Thinking*)"),
    "output_config": FieldRule(
        "`effort` → `reasoning_effort` (see *Thinking*); `format` (`json_schema`) → "
        "`response_format`"
    ),
    "context_management": FieldRule(
        "left out: Anthropic-side pruning of old tool results and thinking; the backend "
        "reads the conversation as sent"
    ),
    "cache_control": FieldRule(
        "left out, here and on every block: OpenAI-compatible backends cache prefixes themselves"
    ),
    "diagnostics": FieldRule(
        "left out: the answer carries no prompt-cache diagnostics, which Anthropic also "
        "answers with `null` when it found nothing"
    ),
    "inference_geo": FieldRule("left out: where Anthropic runs the model"),
    "service_tier": FieldRule("left out: Anthropic's capacity tiers"),
    "speed": FieldRule("left out: Anthropic's fast mode"),
    "fallbacks": FieldRule("left out: Anthropic's retry on other Claude models after a refusal"),
    "betas": FieldRule("left out: SDKs send it as the `anthropic-beta` header"),
    "user_profile_id": FieldRule(_ACCOUNT),
    "workspace_id": FieldRule(_ACCOUNT),
    "billing_policy": FieldRule(_ACCOUNT),
    "fallback_credit_token": FieldRule(_ACCOUNT),
    "container": FieldRule("400: a code-execution container exists only at Anthropic", _always),
    "mcp_servers": FieldRule("400: the MCP servers' tools would be missing", _always),
    "compaction": FieldRule("400: the answer would have to be a `compaction` block", _always),
    "thread": FieldRule(
        "400: with server-held conversation state the messages sent are not the whole conversation",
        _always,
    ),
}

# An OpenAI Chat Completions client (POST /v1/chat/completions) served by an Anthropic
# Messages backend. Fields of today's openai SDK (3.x) plus the `top_k` extension.
CHAT_FIELDS: Mapping[str, FieldRule] = {
    "model": FieldRule("`model`"),
    "messages": FieldRule("`system` and `messages` (see *Messages*)"),
    "max_completion_tokens": FieldRule("`max_tokens` (wins over `max_tokens`)"),
    "max_tokens": FieldRule(
        "`max_tokens`; with neither, `default_max_tokens` (4096), which Anthropic requires"
    ),
    "stop": FieldRule("`stop_sequences`"),
    "stream": FieldRule("`stream`"),
    "stream_options": FieldRule(
        "`include_usage` → a last chunk with `usage` and no choices; `include_obfuscation` left out"
    ),
    "temperature": FieldRule("`temperature` (Anthropic takes 0 to 1; above 1 it answers 400)"),
    "top_p": FieldRule("`top_p`"),
    "top_k": FieldRule("`top_k` (an extension some OpenAI clients send for vLLM)"),
    "tools": FieldRule("`tools` (see *Tools*); a `custom` tool → 400"),
    "tool_choice": FieldRule("`tool_choice` (see *Tools*); `allowed_tools` → 400"),
    "parallel_tool_calls": FieldRule("`false` → `tool_choice.disable_parallel_tool_use: true`"),
    "reasoning_effort": FieldRule("`thinking` (see *Thinking*)"),
    "response_format": FieldRule(
        "`json_schema` → `output_config.format`; `text` → nothing; `json_object` → 400 "
        "(no JSON mode without a schema)",
        _json_object,
    ),
    "user": FieldRule("`metadata.user_id`"),
    "safety_identifier": FieldRule("`metadata.user_id` (wins over `user`)"),
    "n": FieldRule("400 unless 1: a message is one answer", _not_one),
    "logprobs": FieldRule("400 when true: Anthropic gives no log probabilities", _truthy),
    "top_logprobs": FieldRule("400 when above 0: Anthropic gives no log probabilities", _truthy),
    "logit_bias": FieldRule("400 unless empty: Anthropic has no token biases", _truthy),
    "frequency_penalty": FieldRule("400 unless 0: Anthropic has no penalties", _nonzero),
    "presence_penalty": FieldRule("400 unless 0: Anthropic has no penalties", _nonzero),
    "audio": FieldRule("400: Anthropic answers no audio", _always),
    "modalities": FieldRule('400 unless `["text"]`: Anthropic answers text', _not_text_only),
    "moderation": FieldRule("400: Anthropic returns no moderation results", _always),
    "web_search_options": FieldRule("400: no web search through a translation", _always),
    "functions": FieldRule("400: the legacy form of `tools`; send `tools`", _always),
    "function_call": FieldRule(
        "400: the legacy form of `tool_choice`; send `tool_choice`", _always
    ),
    "prediction": FieldRule("left out: Predicted Outputs only make OpenAI faster"),
    "seed": FieldRule("left out: OpenAI's determinism is best effort, Anthropic has none"),
    "service_tier": FieldRule("left out: OpenAI's processing tiers"),
    "store": FieldRule("left out: keeps the completion at OpenAI"),
    "metadata": FieldRule("left out: tags of completions stored at OpenAI"),
    "prompt_cache_key": FieldRule(
        "left out: an OpenAI cache hint (Anthropic caches only at `cache_control`)"
    ),
    "prompt_cache_options": FieldRule("left out: an OpenAI cache hint"),
    "prompt_cache_retention": FieldRule("left out: an OpenAI cache hint"),
    "verbosity": FieldRule("left out: steers the answer's length; no counterpart"),
}


def check_fields(payload: Mapping[str, Any], table: Mapping[str, FieldRule], target: str) -> None:
    """Raise :class:`UntranslatableField` for the first field ``table`` refuses in
    ``payload``; ``target`` names the backend's API in the message.

    A field the table does not know is left out, with a warning naming it (once per
    name): clients such as Claude Code add fields with new releases, and refusing every
    request until the table learns them would break them for what is most often a hint.
    """
    for name, value in payload.items():
        rule = table.get(name)
        if rule is None:
            if (target, name) not in _WARNED and len(_WARNED) < WARN_AT_MOST:
                _WARNED.add((target, name))
                log.warning(
                    "translation to the %s API leaves out the unknown field %r", target, name
                )
            continue
        if value is not None and rule.refuse_when is not None and rule.refuse_when(value):
            reason = rule.how.split(": ", 1)[-1]
            raise UntranslatableField(
                f"{name}: {_shown(value)} cannot be translated to the {target} API: {reason}"
            )


#: The unknown fields warned of so far, by direction; at most this many are.
WARN_AT_MOST = 100
_WARNED: set[tuple[str, str]] = set()


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def markdown_table(table: Mapping[str, FieldRule]) -> str:
    """``table`` as the Markdown table ``docs/translation.md`` shows."""
    rows = ["| field | what happens |", "|---|---|"]
    rows += [f"| `{name}` | {rule.how} |" for name, rule in table.items()]
    return "\n".join(rows)
