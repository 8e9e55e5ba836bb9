"""An Anthropic Messages client served by an OpenAI Chat Completions backend.

:func:`chat_request` turns the client's ``POST /v1/messages`` body into the body for
``{base_url}/chat/completions``; :func:`message_body` turns the backend's chat completion
into the Messages answer (:mod:`.anthropic_stream` does the same for a stream). Top-level
fields follow :data:`.fields.MESSAGES_FIELDS`; the blocks inside follow the rules in the
functions below, which ``docs/translation.md`` spells out.

Order matters to OpenAI: the ``tool`` messages answering an assistant's ``tool_calls``
must come right after it, so a user turn's ``tool_result`` blocks become ``tool``
messages first, and its other blocks follow as one user message. A ``tool`` message
holds text only: images and documents inside a ``tool_result`` move to that user message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ..errors import BadRequest, UpstreamProtocolError
from .common import (
    BILLING_HEADER_PREFIX,
    EFFORT_FOR_OPENAI,
    as_dict,
    as_list,
    as_str,
    dumps_text,
    effort_for_budget,
    loads_upstream,
    message_id,
    messages_usage,
    new_suffix,
    reasoning_text,
    stop_reason,
    untranslatable,
)
from .fields import MESSAGES_FIELDS, check_fields

TARGET = "OpenAI Chat Completions"


def chat_request(
    payload: Mapping[str, Any], *, send_reasoning_effort: bool = True
) -> dict[str, Any]:
    """The Chat Completions body for the Messages request ``payload``.

    ``send_reasoning_effort=False`` leaves ``thinking`` and ``output_config.effort`` out
    instead of mapping them, for backends that refuse the field.

    Raises:
        BadRequest: a malformed request, naming the path of the bad value.
        UntranslatableField: a field or block with no faithful counterpart.
    """
    check_fields(payload, MESSAGES_FIELDS, TARGET)
    out: dict[str, Any] = {}
    if "model" in payload:
        out["model"] = payload["model"]
    messages: list[dict[str, Any]] = []
    system = payload.get("system")
    if system is not None:
        text = _system_text(system)
        if text:
            messages.append({"role": "system", "content": text})
    for i, message in enumerate(as_list(payload.get("messages"), "messages")):
        _message(as_dict(message, f"messages[{i}]"), f"messages[{i}]", messages)
    out["messages"] = messages
    for name in ("max_tokens", "temperature", "top_p", "top_k"):
        if payload.get(name) is not None:
            out[name] = payload[name]
    stops = payload.get("stop_sequences")
    if stops is not None:
        stops = [
            as_str(s, f"stop_sequences[{i}]")
            for i, s in enumerate(as_list(stops, "stop_sequences"))
        ]
        if stops:
            out["stop"] = stops
    metadata = payload.get("metadata")
    if metadata is not None:
        user = as_dict(metadata, "metadata").get("user_id")
        if user is not None:
            out["user"] = as_str(user, "metadata.user_id")
    _tools(payload, out)
    output_config = payload.get("output_config")
    config = as_dict(output_config, "output_config") if output_config is not None else {}
    if send_reasoning_effort:
        effort = _reasoning_effort(payload.get("thinking"), config)
        if effort is not None:
            out["reasoning_effort"] = effort
    if config.get("format") is not None:
        out["response_format"] = _response_format(config["format"])
    if payload.get("stream") is True:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def _system_text(system: object, where: str = "system") -> str:
    """The text of a system prompt (a string or text blocks) found at ``where``."""
    if isinstance(system, str):
        return system
    texts = []
    for i, block in enumerate(as_list(system, where)):
        path = f"{where}[{i}]"
        block = as_dict(block, path)
        if block.get("type") != "text":
            raise untranslatable(f"{path}.type", f"a {block.get('type')!r} system block", TARGET)
        text = as_str(block.get("text"), f"{path}.text")
        if not text.startswith(BILLING_HEADER_PREFIX):
            texts.append(text)
    return "\n\n".join(texts)


def _message(message: dict[str, Any], path: str, out: list[dict[str, Any]]) -> None:
    role = message.get("role")
    content = message.get("content")
    if role == "user":
        _user(content, path, out)
    elif role == "assistant":
        _assistant(content, path, out)
    elif role == "system":
        # A mid-conversation system message (Claude Code 2.1 sends its environment so,
        # after the first user turn, to keep the system prompt's cache prefix): Chat
        # Completions takes a system message anywhere, so it stays where it is.
        text = _system_text(content, f"{path}.content")
        if text:
            out.append({"role": "system", "content": text})
    else:
        raise BadRequest(f"{path}.role: must be 'user', 'assistant' or 'system'")


def _user(content: object, path: str, out: list[dict[str, Any]]) -> None:
    if isinstance(content, str):
        out.append({"role": "user", "content": content})
        return
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(as_list(content, f"{path}.content")):
        block_path = f"{path}.content[{j}]"
        block = as_dict(block, block_path)
        if block.get("type") == "tool_result":
            out.append(_tool_result(block, block_path, parts))
        else:
            parts += _parts(block, block_path)
    if parts:
        text_only = len(parts) == 1 and parts[0]["type"] == "text"
        out.append({"role": "user", "content": parts[0]["text"] if text_only else parts})


def _parts(block: dict[str, Any], path: str) -> list[dict[str, Any]]:
    """The OpenAI content parts for a user block that is not a tool result."""
    kind = block.get("type")
    if kind == "text":
        return [{"type": "text", "text": as_str(block.get("text"), f"{path}.text")}]
    if kind == "image":
        return [_image(as_dict(block.get("source"), f"{path}.source"), f"{path}.source")]
    if kind == "document":
        return _document(block, path)
    raise untranslatable(f"{path}.type", f"a {kind!r} block", TARGET)


def _image(source: dict[str, Any], path: str) -> dict[str, Any]:
    kind = source.get("type")
    if kind == "base64":
        media = as_str(source.get("media_type"), f"{path}.media_type")
        url = f"data:{media};base64,{as_str(source.get('data'), f'{path}.data')}"
    elif kind == "url":
        url = as_str(source.get("url"), f"{path}.url")
    else:
        raise untranslatable(f"{path}.type", f"an image source of type {kind!r}", TARGET)
    return {"type": "image_url", "image_url": {"url": url}}


def _document(block: dict[str, Any], path: str) -> list[dict[str, Any]]:
    citations = block.get("citations")
    if isinstance(citations, dict) and citations.get("enabled"):
        raise untranslatable(f"{path}.citations", "a document with citations", TARGET)
    parts: list[dict[str, Any]] = []
    if block.get("context") is not None:
        parts.append({"type": "text", "text": as_str(block["context"], f"{path}.context")})
    source = as_dict(block.get("source"), f"{path}.source")
    kind = source.get("type")
    if kind == "base64":
        media = as_str(source.get("media_type"), f"{path}.source.media_type")
        data = as_str(source.get("data"), f"{path}.source.data")
        title = block.get("title")
        name = title if isinstance(title, str) and title else "document.pdf"
        parts.append(
            {"type": "file", "file": {"filename": name, "file_data": f"data:{media};base64,{data}"}}
        )
    elif kind == "text":
        parts.append({"type": "text", "text": as_str(source.get("data"), f"{path}.source.data")})
    elif kind == "content":
        inner = source.get("content")
        if isinstance(inner, str):
            parts.append({"type": "text", "text": inner})
        else:
            for k, item in enumerate(as_list(inner, f"{path}.source.content")):
                item_path = f"{path}.source.content[{k}]"
                parts += _parts(as_dict(item, item_path), item_path)
    else:
        raise untranslatable(f"{path}.source.type", f"a document source of type {kind!r}", TARGET)
    return parts


def _tool_result(block: dict[str, Any], path: str, media: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``tool`` message for a ``tool_result``; its images and documents go to ``media``.

    OpenAI has no error flag: an ``is_error`` result's text starts with ``Error: ``.
    """
    call_id = as_str(block.get("tool_use_id"), f"{path}.tool_use_id")
    content = block.get("content")
    texts: list[str] = []
    if isinstance(content, str):
        texts.append(content)
    elif content is not None:
        for k, item in enumerate(as_list(content, f"{path}.content")):
            item_path = f"{path}.content[{k}]"
            item = as_dict(item, item_path)
            if item.get("type") == "text":
                texts.append(as_str(item.get("text"), f"{item_path}.text"))
            elif item.get("type") in ("image", "document"):
                media += _parts(item, item_path)
            else:
                raise untranslatable(f"{item_path}.type", f"a {item.get('type')!r} block", TARGET)
    text = "\n".join(texts)
    if block.get("is_error") is True:
        text = f"Error: {text}" if text else "Error"
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _assistant(content: object, path: str, out: list[dict[str, Any]]) -> None:
    if isinstance(content, str):
        out.append({"role": "assistant", "content": content})
        return
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(as_list(content, f"{path}.content")):
        block_path = f"{path}.content[{j}]"
        block = as_dict(block, block_path)
        kind = block.get("type")
        if kind == "text":
            texts.append(as_str(block.get("text"), f"{block_path}.text"))
        elif kind == "tool_use":
            arguments = as_dict(block.get("input", {}), f"{block_path}.input")
            function = {
                "name": as_str(block.get("name"), f"{block_path}.name"),
                "arguments": dumps_text(arguments),
            }
            call_id = as_str(block.get("id"), f"{block_path}.id")
            calls.append({"id": call_id, "type": "function", "function": function})
        elif kind in ("thinking", "redacted_thinking"):
            # The model's earlier reasoning: OpenAI takes none back, and it is signed for
            # Anthropic only.
            continue
        else:
            raise untranslatable(f"{block_path}.type", f"a {kind!r} block", TARGET)
    if not texts and not calls:
        return
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    out.append(message)


def _tools(payload: Mapping[str, Any], out: dict[str, Any]) -> None:
    tools = payload.get("tools")
    functions = []
    for i, tool in enumerate(as_list(tools, "tools") if tools is not None else []):
        path = f"tools[{i}]"
        tool = as_dict(tool, path)
        kind = tool.get("type")
        if kind not in (None, "custom"):
            raise untranslatable(f"{path}.type", f"the Anthropic-defined tool {kind!r}", TARGET)
        function: dict[str, Any] = {"name": as_str(tool.get("name"), f"{path}.name")}
        if tool.get("description") is not None:
            function["description"] = as_str(tool["description"], f"{path}.description")
        function["parameters"] = as_dict(tool.get("input_schema"), f"{path}.input_schema")
        if tool.get("strict") is True:
            function["strict"] = True
        functions.append({"type": "function", "function": function})
    choice = payload.get("tool_choice")
    # OpenAI refuses an empty tools list, and a tool_choice or parallel_tool_calls
    # without tools.
    if not functions:
        if choice is not None and as_dict(choice, "tool_choice").get("type") not in (
            "auto",
            "none",
        ):
            raise BadRequest("tool_choice: names a tool, but the request has no tools")
        return
    out["tools"] = functions
    if choice is None:
        return
    choice = as_dict(choice, "tool_choice")
    kind = choice.get("type")
    if kind == "auto":
        out["tool_choice"] = "auto"
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "none":
        out["tool_choice"] = "none"
    elif kind == "tool":
        name = as_str(choice.get("name"), "tool_choice.name")
        out["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        raise BadRequest("tool_choice.type: must be 'auto', 'any', 'tool' or 'none'")
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        out["parallel_tool_calls"] = False


def _reasoning_effort(thinking: object, config: Mapping[str, Any]) -> str | None:
    """``reasoning_effort`` for ``thinking`` and ``output_config``: off when thinking is
    disabled, else the stated effort, else one read off ``budget_tokens``; adaptive
    thinking without an effort leaves the backend's default."""
    kind = as_dict(thinking, "thinking").get("type") if thinking is not None else None
    if kind == "disabled":
        return None
    effort = config.get("effort")
    if effort is not None:
        if effort not in EFFORT_FOR_OPENAI:
            raise BadRequest(f"output_config.effort: must be one of {', '.join(EFFORT_FOR_OPENAI)}")
        return EFFORT_FOR_OPENAI[effort]
    if kind == "enabled":
        budget = as_dict(thinking, "thinking").get("budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool):
            raise BadRequest("thinking.budget_tokens: expected an integer")
        return effort_for_budget(budget)
    return None


def _response_format(spec: object) -> dict[str, Any]:
    spec = as_dict(spec, "output_config.format")
    if spec.get("type") != "json_schema":
        raise untranslatable(
            "output_config.format.type", f"an output format {spec.get('type')!r}", TARGET
        )
    schema = as_dict(spec.get("schema"), "output_config.format.schema")
    return {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }


def message_body(body: bytes) -> bytes:
    """The Messages answer for a backend's chat completion ``body``.

    Raises:
        UpstreamProtocolError: the body is not a chat completion, or a tool call's
            arguments are not a JSON object (a Messages ``tool_use`` needs one).
    """
    completion = loads_upstream(body, "answer")
    choices = completion.get("choices") if isinstance(completion, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamProtocolError("the backend's answer is not a chat completion")
    choice = choices[0]
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    content: list[dict[str, Any]] = []
    reasoning = reasoning_text(message)
    if reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = _text(message.get("content"))
    refusal = message.get("refusal")
    if not text and isinstance(refusal, str):
        text = refusal
    if text:
        content.append({"type": "text", "text": text})
    calls = message.get("tool_calls")
    uses = [_tool_use(call, k) for k, call in enumerate(calls if isinstance(calls, list) else [])]
    content += uses
    reason = stop_reason(choice.get("finish_reason"), tool_calls=bool(uses))
    if isinstance(refusal, str) and refusal and reason == "end_turn":
        reason = "refusal"
    answer = {
        "id": message_id(completion.get("id")),
        "type": "message",
        "role": "assistant",
        "model": completion.get("model") or "",
        "content": content,
        "stop_reason": reason,
        "stop_sequence": None,
        "usage": messages_usage(completion.get("usage")),
    }
    return orjson.dumps(answer)


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _tool_use(call: object, k: int) -> dict[str, Any]:
    call = call if isinstance(call, dict) else {}
    function = call.get("function")
    function = function if isinstance(function, dict) else {}
    name = function.get("name") if isinstance(function.get("name"), str) else ""
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = orjson.loads(arguments) if arguments.strip() else {}
        except orjson.JSONDecodeError:
            arguments = None
    elif arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise UpstreamProtocolError(
            f"the backend's call of the tool {name!r} has arguments that are not a JSON object"
        )
    call_id = call.get("id")
    if not isinstance(call_id, str) or not call_id:
        call_id = f"toolu_{new_suffix()}_{k}"
    return {"type": "tool_use", "id": call_id, "name": name, "input": arguments}
