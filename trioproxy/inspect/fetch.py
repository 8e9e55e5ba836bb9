"""One poll of a proxy's diagnostics, and every way it fails as one sentence.

:func:`fetch` is ``GET {URL}/v1/diagnostics`` with a short timeout, read into a
:class:`~trioproxy.inspect.document.Diagnostics`. Whatever goes wrong — no answer, 403,
another status, not JSON, JSON of another shape — raises an :class:`InspectError` whose
``str()`` is the sentence to show and whose ``status`` is its short form; httpx errors
do not escape.
"""

from __future__ import annotations

import httpx

from trioproxy.activity import MalformedDocument

from .document import Diagnostics

#: Seconds allowed for each poll (connect, and each read), so a stuck proxy cannot stall.
FETCH_TIMEOUT = 2.0
DIAGNOSTICS_PATH = "/v1/diagnostics"


class InspectError(Exception):
    """A refresh that produced no diagnostics.

    ``str(error)`` is the full sentence; ``status`` is the short form for the watch view.
    """

    status = "failed"


class ProxyUnreachable(InspectError):
    """No HTTP answer: connection refused, unknown host, timeout, or a broken response."""

    status = "unreachable"


class DiagnosticsForbidden(InspectError):
    """HTTP 403: the proxy answers diagnostics to loopback clients only."""

    status = "forbidden (HTTP 403)"


class UnexpectedResponse(InspectError):
    """An HTTP answer that is not the diagnostics JSON (other status, not JSON, wrong shape)."""

    status = "not the expected diagnostics JSON"


class TrackingDisabled(InspectError):
    """The proxy runs without activity tracking; the message says how to turn it on."""

    status = "activity tracking disabled"


def fetch(client: httpx.Client, base_url: str) -> tuple[object, Diagnostics]:
    """GET the diagnostics once; return the decoded JSON and its parsed form.

    Raises:
        ProxyUnreachable: any transport error or timeout (httpx errors do not escape).
        DiagnosticsForbidden: HTTP 403.
        UnexpectedResponse: another non-200 status, a body that is not JSON, or JSON that
            :meth:`Diagnostics.from_dict` rejects.
    """
    url = base_url + DIAGNOSTICS_PATH
    try:
        response = client.get(url)
    except httpx.TimeoutException:
        raise ProxyUnreachable(
            f"The proxy at {base_url} is unreachable: no answer within {FETCH_TIMEOUT:g}s."
        ) from None
    except httpx.TransportError as exc:
        reason = str(exc) or type(exc).__name__
        raise ProxyUnreachable(f"The proxy at {base_url} is unreachable: {reason}.") from None
    if response.status_code == 403:
        raise DiagnosticsForbidden(
            f"{url} answered 403 Forbidden: diagnostics are restricted to local access, "
            "so run this tool on the proxy's own host and query it through localhost."
        )
    if response.status_code != 200:
        raise UnexpectedResponse(
            f"{url} answered HTTP {response.status_code} instead of the diagnostics JSON; "
            "is this the address of a trioproxy?"
        )
    try:
        data: object = response.json()
    except ValueError:
        raise UnexpectedResponse(
            f"{url} did not answer JSON, so it is not the expected diagnostics JSON; "
            "is this the address of a trioproxy?"
        ) from None
    try:
        return data, Diagnostics.from_dict(data)
    except MalformedDocument as exc:
        raise UnexpectedResponse(
            f"{url} answered JSON that is not the expected diagnostics JSON ({exc})."
        ) from None


def open_client() -> httpx.Client:
    """The HTTP client for polling.

    ``trust_env=False``: an ``HTTP_PROXY`` from the environment must not carry the request
    off the host, where the proxy would refuse it with 403.
    """
    return httpx.Client(
        timeout=FETCH_TIMEOUT,
        trust_env=False,
        headers={"accept": "application/json", "user-agent": "trioproxy-inspect"},
    )
