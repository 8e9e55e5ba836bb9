"""Builders of ``GET /v1/diagnostics`` documents as a proxy sends them (decoded JSON).

Shared by the view's, the document's and the command's tests; fixed times and values,
so renderings can be compared exactly.
"""

from __future__ import annotations

from typing import Any

T0 = 1701792000.123  # 16:00:00 UTC
LONG_SESSION = "0f8fad5b-d9cb-469f-a165-70867728950e"
LIFETIME = {
    "requests": 7,
    "bytes_rx": 9000,
    "bytes_tx": 8800,
    "completed": 4,
    "errors": 1,
    "cancelled": 2,
}


def connection(
    session_id: str = "abc",
    *,
    connection_type: str = "streaming",
    model: str = "gpt-4o",
    duration: float = 12.34,
    rx: int = 1536,
    tx: int = 1500,
    idle: float = 0.4,
    requests: int = 1,
    now: float = T0,
    endpoint: str = "chat.completions",
    ttfb: float | None = 0.25,
    status: int | None = 200,
    translated: bool = False,
    backend_api: str = "openai",
) -> dict[str, Any]:
    """One connection as the diagnostics JSON gives it."""
    return {
        "session_id": session_id,
        "connection_type": connection_type,
        "started_at": now - duration,
        "duration_seconds": duration,
        "model": model,
        "bytes_rx": rx,
        "bytes_tx": tx,
        "requests": requests,
        "last_activity_at": now - idle,
        "idle_seconds": idle,
        "endpoint": endpoint,
        "time_to_first_byte_seconds": ttfb,
        "upstream_status": status,
        "translated": translated,
        "backend_api": backend_api,
    }


def instance(
    name: str,
    connector_type: str,
    connections: list[dict[str, Any]] | None = None,
    *,
    rate_limited: bool = False,
    retry_after: float | None = None,
    errors: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One instance; ``connections=None`` means tracking is off (``activity: null``)."""
    activity = None
    if connections is not None:
        activity = {
            "active_connections": len(connections),
            "connections": connections,
            "total_bytes_rx": sum(c["bytes_rx"] for c in connections),
            "total_bytes_tx": sum(c["bytes_tx"] for c in connections),
            "lifetime": {**LIFETIME, "stale": 0},
        }
    return {
        "name": name,
        "connector_type": connector_type,
        "is_rate_limited": rate_limited,
        "retry_after_seconds": retry_after,
        "is_functional": not errors,
        "validation_errors": list(errors),
        "models": ["m1", "m2"],
        "activity": activity,
    }


def snapshot(instances: list[dict[str, Any]], *, timestamp: float = T0) -> dict[str, Any]:
    """The whole document; tracking is on unless every instance's activity is null."""
    acts = [i["activity"] for i in instances if i["activity"] is not None]
    enabled = bool(acts) or not instances
    glob = None
    if enabled:
        glob = {
            "total_active_connections": sum(a["active_connections"] for a in acts),
            "total_bytes_rx": sum(a["total_bytes_rx"] for a in acts),
            "total_bytes_tx": sum(a["total_bytes_tx"] for a in acts),
            "lifetime": {
                key: sum(a["lifetime"][key] for a in acts) for key in [*LIFETIME, "stale"]
            },
        }
    return {
        "timestamp": timestamp,
        "activity_tracking_enabled": enabled,
        "instances": instances,
        "global_activity": glob,
    }


def several_backends() -> dict[str, Any]:
    """Three backends: two streams on openai.1 (one long id), an idle one on anthropic.1."""
    return snapshot(
        [
            instance(
                "openai.1",
                "openai",
                [
                    connection(LONG_SESSION, duration=12.34, rx=1536, tx=1500),
                    connection(
                        "short", connection_type="non_streaming", duration=0.5, rx=300, tx=300
                    ),
                ],
            ),
            instance(
                "anthropic.1",
                "anthropic",
                [
                    connection(
                        "sess-idle",
                        model="claude-sonnet-4",
                        duration=245.0,
                        rx=3 * 1024 * 1024 + 512 * 1024,
                        tx=3 * 1024 * 1024,
                        idle=42.0,
                    )
                ],
            ),
            instance("mock.1", "mock", []),
        ]
    )


def no_connections() -> dict[str, Any]:
    return snapshot([instance("openai.1", "openai", [])])


def tracking_off() -> dict[str, Any]:
    return snapshot([instance("openai.1", "openai", None), instance("mock.1", "mock", None)])


def finished(
    session_id: str = "abc",
    *,
    instance: str = "mock.1",
    endpoint: str = "chat.completions",
    model: str = "gpt-4o",
    ended: float = T0 - 1,
    duration: float = 1.25,
    ttfb: float | None = 0.05,
    status: int | None = 200,
    rx: int = 2048,
    tx: int = 2048,
    outcome: str = "completed",
    reason: str | None = None,
    error: str | None = None,
    translated: bool = False,
    backend_api: str = "openai",
) -> dict[str, Any]:
    """One finished request as ``GET /v1/diagnostics/recent`` gives it."""
    return {
        "instance": instance,
        "session_id": session_id,
        "endpoint": endpoint,
        "model": model,
        "started_at": ended - duration,
        "duration_seconds": duration,
        "time_to_first_byte_seconds": ttfb,
        "upstream_status": status,
        "bytes_rx": rx,
        "bytes_tx": tx,
        "outcome": outcome,
        "reason": reason,
        "error": error,
        "translated": translated,
        "backend_api": backend_api,
    }


def recent(requests: list[dict[str, Any]], *, timestamp: float = T0) -> dict[str, Any]:
    """A ``GET /v1/diagnostics/recent`` document (``requests`` newest first)."""
    return {"timestamp": timestamp, "activity_tracking_enabled": True, "recent": requests}


def some_finished() -> dict[str, Any]:
    """Four ends, newest first: completed, a stale stream, an operator's cancel, and a
    translated request whose backend could not be reached."""
    return recent(
        [
            finished("done-1", ended=T0 - 1),
            finished(
                LONG_SESSION,
                ended=T0 - 5,
                duration=300.5,
                rx=512,
                tx=600,
                outcome="stale",
                error="No data in either direction for 300 s; the request was cancelled.",
            ),
            finished(
                "stuck",
                instance="openai.1",
                ended=T0 - 60,
                duration=42.0,
                outcome="cancelled",
                reason="operator",
            ),
            finished(
                "claude-code",
                instance="vllm.1",
                endpoint="messages",
                model="qwen3-coder",
                ended=T0 - 3600,
                duration=0.003,
                ttfb=None,
                status=None,
                rx=0,
                tx=160,
                outcome="error",
                error="Backend 'vllm.1': cannot connect to 10.0.0.7:8000",
                translated=True,
            ),
        ]
    )
