"""The listening sockets the supervisor opens for its workers.

``inherit`` (the default, chosen by measurement: docs/design.md, "Workers"): one socket,
bound and listening in the supervisor, inherited by every worker; each worker's event
loop accepts from it when it is free to, so a busy or stopped worker takes no new
connections and the queue outlives a worker's restart. ``reuseport``: one socket per
worker, all bound to the address with ``SO_REUSEPORT``; the kernel spreads connections
over them by a hash of the client's address, whatever the worker is doing. The
supervisor keeps every socket open, so a restarted worker takes over the queue of the
one it replaces.
"""

from __future__ import annotations

import socket
from typing import Literal

Sharing = Literal["inherit", "reuseport"]
DEFAULT_SHARING: Sharing = "inherit"
#: The kernel's accept queue: bursts of thousands of clients must not overflow it.
BACKLOG = 4096


def _listener(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        # Accepted connections inherit it (as hypercorn sets it on the sockets it binds).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def open_listeners(host: str, port: int, count: int, sharing: Sharing) -> list[socket.socket]:
    """The socket each of ``count`` workers serves (one socket ``count`` times, when
    inherited). Port 0 picks a free port, the same for all.

    Raises:
        OSError: the address cannot be listened on.
    """
    if sharing == "inherit":
        return [_listener(host, port, reuse_port=False)] * count
    first = _listener(host, port, reuse_port=True)
    sockets = [first]
    try:
        chosen = first.getsockname()[1]
        for _ in range(count - 1):
            sockets.append(_listener(host, chosen, reuse_port=True))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def address_of(sock: socket.socket) -> str:
    """``http://host:port`` of a listening socket, as the start-up line says it."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
