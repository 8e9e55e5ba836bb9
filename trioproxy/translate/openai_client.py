"""An OpenAI Chat Completions client served by an Anthropic Messages backend.

:func:`messages_request` turns the client's ``POST /v1/chat/completions`` body into the
body for ``{base_url}/v1/messages``; :func:`chat_completion_body` turns the backend's
message into the chat completion (:mod:`.openai_stream` does the same for a stream).
Top-level fields follow :data:`.fields.CHAT_FIELDS`.

Messages: ``system`` and ``developer`` messages, wherever they stand, become the
``system`` prompt in order (Anthropic has no system turn); a run of ``tool`` messages
becomes one user turn of ``tool_result`` blocks, and a user message right after them
joins that turn, since Anthropic wants the results first in the turn after the call.
Tool call ids are kept, but for characters Anthropic refuses in ids (``[^A-Za-z0-9_-]``,
as some servers' ``functions.name:0`` ids have), which become ``_`` in both the call
and its result.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from ..errors import BadRequest, UpstreamProtocolError
from .common import (
    MIN_THINKING_BUDGET,
    THINKING_BUDGET,
    as_dict,
    as_list,
    as_str,
    chat_id,
    chat_usage,
    dumps_text,
    finish_reason,
    loads_upstream,
    untranslatable,
)
from .fields import CHAT_FIELDS, check_fields

TARGET = "Anthropic Messages"

_DATA_URL = re.compile(r"data:([^;,]+)(?:;[^;,]*)*;base64,(.*)", re.DOTALL)
_NOT_IN_ID = re.compile(r"[^A-Za-z0-9_-]")


def tool_use_id(call_id: str) -> str:
    """``call_id`` as an Anthropic tool-use id (the same id always gives the same one)."""
    return _NOT_IN_ID.sub("_", call_id) or "_"


def messages_request(
    payload: Mapping[str, Any], *, default_max_tokens: int = 4096
) -> dict[str, Any]:
    """The Messages body for the Chat Completions request ``payload``.

    ``max_tokens`` is ``max_completion_tokens``, else ``max_tokens``, else
    ``default_max_tokens`` (Anthropic requires one); see :func:`_thinking` for how a
    ``reasoning_effort`` shares it.

    Raises:
        BadRequest: a malformed request, naming the path of the bad value.
        UntranslatableField: a field or part with no faithful counterpart.
    """
    check_fields(payload, CHAT_FIELDS, TARGET)
    out: dict[str, Any] = {}
    if "model" in payload:
        out["model"] = payload["model"]
    turns = _Turns()
    for i, message in enumerate(as_list(payload.get("messages"), "messages")):
        turns.add(as_dict(message, f"messages[{i}]"), f"messages[{i}]")
    given = payload.get("max_completion_tokens")
    if given is None:
        given = payload.get("max_tokens")
    if given is not None and (not isinstance(given, int) or isinstance(given, bool)):
        raise BadRequest("max_tokens: expected an integer")
    max_tokens, thinking = _thinking(payload.get("reasoning_effort"), given, default_max_tokens)
    out["max_tokens"] = max_tokens
    if turns.system:
        system = turns.system
        out["system"] = (
            system[0] if len(system) == 1 else [{"type": "text", "text": s} for s in system]
        )
    out["messages"] = turns.messages
    if thinking is not None:
        out["thinking"] = thinking
    for name in ("temperature", "top_p", "top_k"):
        if payload.get(name) is not None:
            out[name] = payload[name]
    stop = payload.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None:
        stop = [as_str(s, f"stop[{i}]") for i, s in enumerate(as_list(stop, "stop"))]
        if stop:
            out["stop_sequences"] = stop
    user = payload.get("safety_identifier")
    if user is None:
        user = payload.get("user")
    if user is not None:
        out["metadata"] = {"user_id": as_str(user, "user")}
    _tools(payload, out)
    response_format = payload.get("response_format")
    if response_format is not None:
        output_format = _output_format(as_dict(response_format, "response_format"))
        if output_format is not None:
            out["output_config"] = {"format": output_format}
    if payload.get("stream") is True:
        out["stream"] = True
    return out


def _thinking(effort: object, given: int | None, default: int) -> tuple[int, dict[str, Any] | None]:
    """``max_tokens`` and ``thinking`` for a ``reasoning_effort``.

    ``none`` and ``minimal`` leave thinking off. Otherwise the budget is
    :data:`THINKING_BUDGET`'s: on top of the default when the client set no limit, and
    within half the client's limit when it did (OpenAI counts reasoning in that limit
    too); a budget that would fall under Anthropic's minimum leaves thinking off.
    """
    if effort is None or effort in ("none", "minimal"):
        return (default if given is None else given), None
    if effort not in THINKING_BUDGET:
        choices = ", ".join(["none", "minimal", *THINKING_BUDGET])
        raise BadRequest(f"reasoning_effort: must be one of {choices}")
    budget = THINKING_BUDGET[effort]
    if given is None:
        return default + budget, {"type": "enabled", "budget_tokens": budget}
    budget = min(budget, given // 2)
    if budget < MIN_THINKING_BUDGET:
        return given, None
    return given, {"type": "enabled", "budget_tokens": budget}


class _Turns:
    """The system prompt and the Messages turns, built one chat message at a time."""

    def __init__(self) -> None:
        self.system: list[str] = []
        self.messages: list[dict[str, Any]] = []
        self._results: list[dict[str, Any]] | None = None  # the open tool-result turn

    def add(self, message: dict[str, Any], path: str) -> None:
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            self.system.append(_text(content, f"{path}.content"))
        elif role == "user":
            self._user(content, path)
        elif role == "assistant":
            self._results = None
            blocks = _assistant_blocks(message, path)
            if blocks:
                self.messages.append({"role": "assistant", "content": blocks})
        elif role == "tool":
            call_id = as_str(message.get("tool_call_id"), f"{path}.tool_call_id")
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id(call_id)}
            if isinstance(content, str):
                result["content"] = content
            else:
                result["content"] = [
                    {"type": "text", "text": t} for t in _texts(content, f"{path}.content")
                ]
            if self._results is None:
                self._results = []
                self.messages.append({"role": "user", "content": self._results})
            self._results.append(result)
        elif role == "function":
            raise untranslatable(f"{path}.role", "the legacy 'function' role", TARGET)
        else:
            raise BadRequest(
                f"{path}.role: must be 'system', 'developer', 'user', 'assistant' or 'tool'"
            )

    def _user(self, content: object, path: str) -> None:
        if self._results is not None:
            if isinstance(content, str):
                self._results.append({"type": "text", "text": content})
            else:
                self._results += _user_blocks(content, path)
            self._results = None
        elif isinstance(content, str):
            self.messages.append({"role": "user", "content": content})
        else:
            self.messages.append({"role": "user", "content": _user_blocks(content, path)})


def _texts(content: object, path: str) -> list[str]:
    """The texts of ``content``: a string, or text parts (a ``refusal`` part is text too)."""
    if isinstance(content, str):
        return [content]
    if content is None:
        return []
    texts = []
    for k, part in enumerate(as_list(content, path)):
        part = as_dict(part, f"{path}[{k}]")
        kind = part.get("type")
        if kind == "text":
            texts.append(as_str(part.get("text"), f"{path}[{k}].text"))
        elif kind == "refusal":
            texts.append(as_str(part.get("refusal"), f"{path}[{k}].refusal"))
        else:
            raise untranslatable(f"{path}[{k}].type", f"a {kind!r} part here", TARGET)
    return texts


def _text(content: object, path: str) -> str:
    return "\n\n".join(_texts(content, path))


def _user_blocks(content: object, path: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for k, part in enumerate(as_list(content, f"{path}.content")):
        part_path = f"{path}.content[{k}]"
        part = as_dict(part, part_path)
        kind = part.get("type")
        if kind == "text":
            blocks.append({"type": "text", "text": as_str(part.get("text"), f"{part_path}.text")})
        elif kind == "image_url":
            image = as_dict(part.get("image_url"), f"{part_path}.image_url")
            blocks.append(_image(as_str(image.get("url"), f"{part_path}.image_url.url"), part_path))
        elif kind == "file":
            blocks.append(
                _file(as_dict(part.get("file"), f"{part_path}.file"), f"{part_path}.file")
            )
        else:
            raise untranslatable(f"{part_path}.type", f"a {kind!r} part", TARGET)
    return blocks


def _image(url: str, path: str) -> dict[str, Any]:
    if url.startswith("data:"):
        match = _DATA_URL.fullmatch(url)
        if match is None:
            raise BadRequest(f"{path}.image_url.url: a data URL must be base64")
        source = {"type": "base64", "media_type": match[1], "data": match[2]}
        return {"type": "image", "source": source}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _file(file: dict[str, Any], path: str) -> dict[str, Any]:
    if file.get("file_data") is None:
        raise untranslatable(path, "a file uploaded to OpenAI (file_id)", TARGET)
    match = _DATA_URL.fullmatch(as_str(file["file_data"], f"{path}.file_data"))
    if match is None or match[1] != "application/pdf":
        raise untranslatable(
            f"{path}.file_data", "a file that is not a base64 PDF data URL", TARGET
        )
    block: dict[str, Any] = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": match[2]},
    }
    if isinstance(file.get("filename"), str):
        block["title"] = file["filename"]
    return block


def _assistant_blocks(message: dict[str, Any], path: str) -> list[dict[str, Any]]:
    for name in ("function_call", "audio"):
        if message.get(name) is not None:
            raise untranslatable(f"{path}.{name}", f"an assistant {name!r}", TARGET)
    blocks: list[dict[str, Any]] = [
        {"type": "text", "text": text}
        for text in _texts(message.get("content"), f"{path}.content")
        if text
    ]
    calls = message.get("tool_calls")
    for k, call in enumerate(as_list(calls, f"{path}.tool_calls") if calls is not None else []):
        call_path = f"{path}.tool_calls[{k}]"
        call = as_dict(call, call_path)
        if call.get("type", "function") != "function":
            raise untranslatable(f"{call_path}.type", f"a {call.get('type')!r} tool call", TARGET)
        function = as_dict(call.get("function"), f"{call_path}.function")
        arguments = as_str(function.get("arguments", ""), f"{call_path}.function.arguments")
        try:
            parsed = orjson.loads(arguments) if arguments.strip() else {}
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            raise BadRequest(f"{call_path}.function.arguments: expected a JSON object")
        block = {
            "type": "tool_use",
            "id": tool_use_id(as_str(call.get("id"), f"{call_path}.id")),
            "name": as_str(function.get("name"), f"{call_path}.function.name"),
            "input": parsed,
        }
        blocks.append(block)
    return blocks


def _tools(payload: Mapping[str, Any], out: dict[str, Any]) -> None:
    tools = payload.get("tools")
    converted = []
    for i, tool in enumerate(as_list(tools, "tools") if tools is not None else []):
        path = f"tools[{i}]"
        tool = as_dict(tool, path)
        if tool.get("type") != "function":
            raise untranslatable(f"{path}.type", f"a {tool.get('type')!r} tool", TARGET)
        function = as_dict(tool.get("function"), f"{path}.function")
        entry: dict[str, Any] = {"name": as_str(function.get("name"), f"{path}.function.name")}
        if function.get("description") is not None:
            entry["description"] = as_str(function["description"], f"{path}.function.description")
        parameters = function.get("parameters")
        if parameters is None or parameters == {}:
            parameters = {"type": "object", "properties": {}}
        entry["input_schema"] = as_dict(parameters, f"{path}.function.parameters")
        if function.get("strict") is True:
            entry["strict"] = True
        converted.append(entry)
    if not converted:
        return
    out["tools"] = converted
    choice = payload.get("tool_choice")
    converted_choice: dict[str, Any]
    if choice is None or choice == "auto":
        converted_choice = {"type": "auto"}
    elif choice == "required":
        converted_choice = {"type": "any"}
    elif choice == "none":
        converted_choice = {"type": "none"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        function = as_dict(choice.get("function"), "tool_choice.function")
        converted_choice = {
            "type": "tool",
            "name": as_str(function.get("name"), "tool_choice.function.name"),
        }
    elif isinstance(choice, dict):
        raise untranslatable(
            "tool_choice.type", f"a tool_choice of type {choice.get('type')!r}", TARGET
        )
    else:
        raise BadRequest("tool_choice: must be 'auto', 'required', 'none' or a function")
    if payload.get("parallel_tool_calls") is False and converted_choice["type"] != "none":
        converted_choice["disable_parallel_tool_use"] = True
    if choice is not None or "disable_parallel_tool_use" in converted_choice:
        out["tool_choice"] = converted_choice


def _output_format(response_format: dict[str, Any]) -> dict[str, Any] | None:
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind != "json_schema":
        raise BadRequest("response_format.type: must be 'text', 'json_schema' or 'json_object'")
    spec = as_dict(response_format.get("json_schema"), "response_format.json_schema")
    return {
        "type": "json_schema",
        "schema": as_dict(spec.get("schema"), "response_format.json_schema.schema"),
    }


def chat_completion_body(body: bytes, *, created: int) -> bytes:
    """The chat completion for a backend's Messages answer ``body``.

    Text blocks are joined into ``content``, ``tool_use`` blocks become ``tool_calls``,
    ``thinking`` blocks become ``reasoning_content`` (the field DeepSeek-style clients
    read); redacted thinking and server-tool blocks have no counterpart and are left out.

    Raises:
        UpstreamProtocolError: the body is not a Messages answer.
    """
    message = loads_upstream(body, "answer")
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        raise UpstreamProtocolError("the backend's answer is not a message")
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message["content"]:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            reasoning.append(block["thinking"])
        elif kind == "tool_use":
            function = {"name": block.get("name"), "arguments": dumps_text(block.get("input", {}))}
            calls.append({"id": block.get("id"), "type": "function", "function": function})
    reply: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) or None,
        "refusal": None,
    }
    if any(reasoning):
        reply["reasoning_content"] = "".join(reasoning)
    if calls:
        reply["tool_calls"] = calls
    usage = message.get("usage")
    completion = {
        "id": chat_id(message.get("id")),
        "object": "chat.completion",
        "created": created,
        "model": message.get("model") or "",
        "choices": [
            {
                "index": 0,
                "message": reply,
                "logprobs": None,
                "finish_reason": finish_reason(message.get("stop_reason")),
            }
        ],
        "usage": chat_usage(usage if isinstance(usage, dict) else None),
    }
    return orjson.dumps(completion)
