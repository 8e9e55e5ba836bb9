"""One proxy's operator routes over HTTP, and every way a call fails as one sentence.

:func:`fetch` is ``GET {URL}/v1/diagnostics``, read into a
:class:`~trioproxy.inspect.document.Diagnostics`; :func:`fetch_recent` is
``GET {URL}/v1/diagnostics/recent?limit=K``; :func:`cancel` is
``POST {URL}/v1/diagnostics/cancel``. Each has a short timeout. Whatever goes wrong —
no answer, 403, another status, not JSON, JSON of another shape — raises an
:class:`InspectError` whose ``str()`` is the sentence to show and whose ``status`` is
its short form; httpx errors do not escape, and no sentence holds the admin key.
"""

from __future__ import annotations

from typing import Any

import httpx

from trioproxy.activity import MalformedDocument

from .document import Diagnostics, RecentRequests
from .formatting import printable

#: Seconds allowed for each call (connect, and each read), so a stuck proxy cannot stall.
FETCH_TIMEOUT = 2.0
DIAGNOSTICS_PATH = "/v1/diagnostics"
RECENT_PATH = "/v1/diagnostics/recent"
CANCEL_PATH = "/v1/diagnostics/cancel"


class InspectError(Exception):
    """A call that produced no answer to show.

    ``str(error)`` is the full sentence; ``status`` is the short form for the watch view.
    """

    status = "failed"


class ProxyUnreachable(InspectError):
    """No HTTP answer: connection refused, unknown host, timeout, or a broken response."""

    status = "unreachable"


class DiagnosticsForbidden(InspectError):
    """HTTP 403: the operator routes answer loopback clients, or those with an admin key."""

    status = "forbidden (HTTP 403)"


class UnexpectedResponse(InspectError):
    """An HTTP answer that is not the JSON asked for (other status, not JSON, wrong shape)."""

    status = "not the expected diagnostics JSON"


class TrackingDisabled(InspectError):
    """The proxy runs without activity tracking; the message says how to turn it on."""

    status = "activity tracking disabled"


class NoSuchConnection(InspectError):
    """HTTP 404 to a cancel: no connection of that session is active on that instance."""

    status = "no such connection"


class CancelRejected(InspectError):
    """HTTP 400 to a cancel: the proxy did not accept the request's body."""

    status = "rejected"


def unreachable(base_url: str, reason: str) -> ProxyUnreachable:
    """The error for a proxy that did not answer, ``reason`` saying how."""
    return ProxyUnreachable(f"The proxy at {base_url} is unreachable: {reason}.")


def no_answer(base_url: str) -> ProxyUnreachable:
    """The error for a proxy that gave no answer within :data:`FETCH_TIMEOUT`."""
    return unreachable(base_url, f"no answer within {FETCH_TIMEOUT:g}s")


def _forbidden(client: httpx.Client, url: str) -> DiagnosticsForbidden:
    if "authorization" in client.headers:
        return DiagnosticsForbidden(
            f"{url} answered 403 Forbidden: it did not accept the admin key from "
            "--admin-key-env (or it has no admin keys: start it with --admin-keys-env)."
        )
    return DiagnosticsForbidden(
        f"{url} answered 403 Forbidden: diagnostics are restricted to local access, "
        "so run this tool on the proxy's own host and query it through localhost, "
        "or give it an admin key of the proxy with --admin-key-env VAR."
    )


def _call(
    client: httpx.Client, base_url: str, method: str, url: str, **kwargs: Any
) -> httpx.Response:
    try:
        return client.request(method, url, **kwargs)
    except httpx.TimeoutException:
        raise no_answer(base_url) from None
    except httpx.TransportError as exc:
        raise unreachable(base_url, str(exc) or type(exc).__name__) from None


def _json(response: httpx.Response, url: str, what: str) -> object:
    try:
        data: object = response.json()
    except (ValueError, RecursionError):  # RecursionError: nested past json's depth
        raise UnexpectedResponse(
            f"{url} did not answer JSON, so it is not the expected {what}; "
            "is this the address of a trioproxy?"
        ) from None
    return data


def _get(client: httpx.Client, base_url: str, url: str, what: str) -> object:
    response = _call(client, base_url, "GET", url)
    if response.status_code == 403:
        raise _forbidden(client, url)
    if response.status_code != 200:
        raise UnexpectedResponse(
            f"{url} answered HTTP {response.status_code} instead of the {what}; "
            "is this the address of a trioproxy?"
        )
    return _json(response, url, what)


def fetch(client: httpx.Client, base_url: str) -> tuple[object, Diagnostics]:
    """GET the diagnostics once; return the decoded JSON and its parsed form.

    Raises:
        ProxyUnreachable: any transport error or timeout (httpx errors do not escape).
        DiagnosticsForbidden: HTTP 403.
        UnexpectedResponse: another non-200 status, a body that is not JSON, or JSON that
            :meth:`Diagnostics.from_dict` rejects.
    """
    url = base_url + DIAGNOSTICS_PATH
    data = _get(client, base_url, url, "diagnostics JSON")
    try:
        return data, Diagnostics.from_dict(data)
    except MalformedDocument as exc:
        raise UnexpectedResponse(
            f"{url} answered JSON that is not the expected diagnostics JSON ({exc})."
        ) from None


def fetch_recent(client: httpx.Client, base_url: str, limit: int) -> RecentRequests:
    """GET the latest ``limit`` finished requests (newest first).

    Raises:
        The errors of :func:`fetch`, for ``/v1/diagnostics/recent``.
    """
    url = base_url + RECENT_PATH
    response = _get(client, base_url, f"{url}?limit={limit}", "recent requests JSON")
    try:
        return RecentRequests.from_dict(response)
    except MalformedDocument as exc:
        raise UnexpectedResponse(
            f"{url} answered JSON that is not the expected recent requests JSON ({exc})."
        ) from None


def _error_message(data: object) -> str | None:
    """The ``error.message`` of a JSON error body, made printable; None if there is none."""
    error = data.get("error") if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return printable(message) if isinstance(message, str) and message else None


def cancel(client: httpx.Client, base_url: str, instance: str, session_id: str) -> int:
    """POST a cancel of every request of connection (``instance``, ``session_id``).

    Returns:
        How many requests the proxy cancelled (at least one).

    Raises:
        NoSuchConnection: HTTP 404; the message is the proxy's, with its address.
        CancelRejected: HTTP 400 (a body the proxy did not accept).
        ProxyUnreachable, DiagnosticsForbidden, UnexpectedResponse: as for :func:`fetch`.
    """
    url = base_url + CANCEL_PATH
    body = {"instance": instance, "session_id": session_id}
    response = _call(client, base_url, "POST", url, json=body)
    if response.status_code == 403:
        raise _forbidden(client, url)
    what = "answer to a cancel"
    if response.status_code == 404:
        data = _json(response, url, what)
        message = _error_message(data) or (
            f"No active connection of session {printable(session_id)!r} "
            f"on instance {printable(instance)!r}."
        )
        raise NoSuchConnection(f"{message.removesuffix('.')} at {base_url}.")
    if response.status_code == 400:
        message = _error_message(_json(response, url, what)) or "a bad request"
        raise CancelRejected(f"The proxy at {base_url} rejected the cancel: {message}")
    if response.status_code != 200:
        raise UnexpectedResponse(
            f"{url} answered HTTP {response.status_code} instead of the {what}; "
            "is this the address of a trioproxy?"
        )
    data = _json(response, url, what)
    count = data.get("cancelled") if isinstance(data, dict) else None
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise UnexpectedResponse(f"{url} answered JSON that is not the expected {what}.")
    return count


def open_client(admin_key: str | None = None) -> httpx.Client:
    """The HTTP client for one proxy, sending ``admin_key`` as a bearer token if given.

    ``trust_env=False``: an ``HTTP_PROXY`` from the environment must not carry the request
    off the host, where the proxy would refuse it with 403.
    """
    headers = {"accept": "application/json", "user-agent": "trioproxy-inspect"}
    if admin_key is not None:
        headers["authorization"] = f"Bearer {admin_key}"
    return httpx.Client(timeout=FETCH_TIMEOUT, trust_env=False, headers=headers)
