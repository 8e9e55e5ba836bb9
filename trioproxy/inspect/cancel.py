"""``trioproxy-inspect --cancel INSTANCE SESSION [URL]``: end a stuck connection.

:func:`run_cancel` posts ``{"instance", "session_id"}`` to the proxy's
``/v1/diagnostics/cancel``, which cancels every request of that connection the way the
stale sweeper does, and says what happened in one sentence. SESSION is the full session
id, or — ending with ``…`` (or ``...``), as the view shows a long one — the start of
one: it is then looked up among the instance's active connections first and must name
exactly one (:func:`pick_session`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import httpx

from .fetch import InspectError, NoSuchConnection, cancel, fetch, open_client
from .formatting import printable

ELLIPSES = ("…", "...")


class AmbiguousSession(InspectError):
    """A shortened session id that starts several active sessions' ids."""

    status = "ambiguous session"


def pick_session(given: str, active: Sequence[str], *, instance: str, base_url: str) -> str:
    """The session id ``given`` stands for among ``active`` (the instance's sessions).

    A ``given`` that does not end with an ellipsis, or that is one of ``active``, is the
    id itself; one that does is the start of an id, and must start exactly one of
    ``active``.

    Raises:
        NoSuchConnection: a shortened id that starts none of them.
        AmbiguousSession: a shortened id that starts more than one.
    """
    prefix = next((given.removesuffix(e) for e in ELLIPSES if given.endswith(e)), None)
    if prefix is None or given in active:
        # An id that is itself an active one is that one, even if it ends in "..."
        return given
    matches = [session for session in active if session.startswith(prefix)]
    if len(matches) == 1:
        return matches[0]
    shown = printable(given)
    if not matches:
        raise NoSuchConnection(
            f"No active connection of a session starting {shown!r} on instance "
            f"{printable(instance)!r} at {base_url}."
        )
    raise AmbiguousSession(
        f"{shown!r} starts {len(matches)} active sessions on instance {printable(instance)!r} "
        f"at {base_url} ({', '.join(map(repr, map(printable, matches)))}); give more of it."
    )


def _active_sessions(client: httpx.Client, base_url: str, instance: str) -> list[str]:
    _, diagnostics = fetch(client, base_url)
    return [
        c.session_id
        for i in diagnostics.instances
        if i.name == instance and i.activity is not None
        for c in i.activity.connections
    ]


def cancel_connection(
    client: httpx.Client, base_url: str, instance: str, session: str
) -> tuple[str, int]:
    """Cancel connection (``instance``, ``session``): the session id it named and how
    many requests the proxy cancelled.

    Raises:
        InspectError: the sentence says why nothing was cancelled.
    """
    if session.endswith(ELLIPSES):
        active = _active_sessions(client, base_url, instance)
        session = pick_session(session, active, instance=instance, base_url=base_url)
    return session, cancel(client, base_url, instance, session)


def run_cancel(base_url: str, instance: str, session: str, admin_key: str | None = None) -> int:
    """Cancel the connection, print one sentence, and return the exit code (0: done;
    1: nothing cancelled, the sentence on stderr says why)."""
    with open_client(admin_key) as client:
        try:
            session_id, count = cancel_connection(client, base_url, instance, session)
        except InspectError as exc:
            print(exc, file=sys.stderr)
            return 1
    requests = "request" if count == 1 else "requests"
    print(
        f"Cancelled {count} {requests} of session {printable(session_id)!r} "
        f"on instance {printable(instance)!r} at {base_url}."
    )
    return 0
