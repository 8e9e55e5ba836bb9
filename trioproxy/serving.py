"""Serving an ASGI app with hypercorn's Trio worker, and what we change about it.

:func:`serve_app` is the one way the proxy is served, in production (:mod:`.server`) and in
the tests alike. It runs ``hypercorn.trio.serve`` with five changes: three for defects
hypercorn 0.18's Trio worker has on the wire, two for the cost of a hang-up:

* **Connections are served by** :class:`ProxyTCPServer`, a subclass of hypercorn's trio
  ``TCPServer``. hypercorn's ``worker_serve`` looks the class up by its module-global name
  ``hypercorn.trio.run.TCPServer`` each time it serves, so :func:`install_tcp_server`
  points that one name at the subclass (once per process; every server then gets it).
  That is smaller than a copy of ``worker_serve`` (90 lines of listener, lifespan and
  shutdown handling that would drift from hypercorn's own), and :func:`install_tcp_server`
  refuses to start on a hypercorn whose module no longer has that name, so the patch can
  never silently stop applying. What the subclass changes is in its docstring.
* **Requests with both Transfer-Encoding and Content-Length** are answered 400 and their
  connection closed (:func:`refuse_ambiguous_framing`: by the proxy's app itself, which
  logs it, or by a :class:`FramingGuard` around any other app). h11 follows the transfer
  coding and keeps the connection alive, which RFC 9112 §6.3 forbids: a front end that
  believed the Content-Length would see a different request boundary (request
  smuggling).
* **A request's hang-up is told by a callback** (:class:`ProxyTaskGroup`, put in place of
  hypercorn's ``TaskGroup`` the same way): each request's scope gets a
  :class:`~.hangup.Hangup`, fired as its ``http.disconnect`` is queued, so the relay
  needs no task of its own to ``receive()`` it.
* **A connection's task ends as its handler returns** (:func:`run_handler`, put in place
  of Trio's ``_run_handler`` the same way): Trio's closes the already closed socket again,
  two turns of the event loop per connection released.
* **HTTP/1.1 only** (:class:`ProxyH11Protocol`, put in place of hypercorn's
  ``H11Protocol`` the same way). hypercorn switches a connection to HTTP/2 on a client's
  ``Upgrade: h2c`` or its HTTP/2 preface, with no TLS and no option to refuse; its
  HTTP/2 stack then crashed the whole process on a large request body it answered early
  (``KeyError`` in its stream table), and a reset stream was no hang-up to the relay.
  Here the upgrade is ignored (RFC 9110 §7.8 lets a server) and the preface answered 505.
* **A connection that fails ends alone** (:func:`run_handler`): an exception out of a
  connection's handler is logged and that connection closed; Trio's would end the accept
  loop, and with it the process.
* **A full descriptor table logs one line a second**, not a traceback every 0.1 s
  (:class:`AcceptErrorFilter` on Trio's ``trio.serve_listeners`` logger). Trio's accept
  loop itself already does the right thing: it retries every 0.1 s while the connections
  it has go on being served.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import h11
import hypercorn.protocol
import hypercorn.trio
import hypercorn.trio.run
import hypercorn.trio.tcp_server
import trio
import trio._highlevel_serve_listeners
from hypercorn.config import Config
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer
from hypercorn.trio.worker_context import TrioSingleTask
from hypercorn.typing import AppWrapper, ASGIReceiveEvent, ASGISendEvent

from .asgi import Asgi, Receive, Scope, Send
from .client_out import JSON_HEADERS
from .errors import Api, BadRequest, error_body, error_payload
from .hangup import HANGUP, Hangup
from .routes import api_of_path
from .turnstile import turnstile

ACCEPT_LOGGER = "trio.serve_listeners"
log = logging.getLogger(__name__)


class ProxyTCPServer(TCPServer):
    """hypercorn's Trio connection handler, with six changes.

    * **A send can be cancelled.** hypercorn shields every ``send_all`` so that a
      cancelled sender never leaves half a frame on the wire. But a client that stops
      reading then blocks its sender for as long as it likes, and nothing — the stale
      sweeper, an operator's cancel, the shutdown deadline, hypercorn's own graceful
      timeout — can end that request. Here the send is not shielded; a send that is
      cancelled (or fails in any other way than the peer having gone) closes the
      connection at once, so no half-written response is ever continued. The app's later
      sends on it find it closed and the app gets ``http.disconnect``, as for a client
      that hung up. A free send lock is taken without a checkpoint, h11's empty end of
      a sized body is not sent at all, and what the socket takes at once is written
      without Trio's yield after it (:func:`write_all`): each was one more turn of the
      event loop per send (every chunk of every stream), and under load a turn is as
      long as the work of every task ready in it.
    * **What follows a response's last message is not cancelled with the app's task.**
      hypercorn restarts the keep-alive timer, or closes the socket of a connection that
      must close (``connection: close``), from whatever task sends the response's last
      message, inside that task's cancel scope. Quart-Trio cancels its request task right
      after that message (its disconnect watcher returns), which killed the timer as it
      started — the connection then had no timer at all, and a graceful shutdown waited
      the whole graceful timeout for it — or left the socket open after ``connection:
      close`` until the client closed it. Both are shielded here: they belong to the
      connection, and neither can block (a socket close; starting a timer task).
    * **A connection the client closed is released at once.** When the read side sees the
      end of the stream, hypercorn left the keep-alive timer running, and the
      connection's task group (and so its socket, in CLOSE-WAIT) lived until it expired:
      75 s. Worse, a response that ended just after a reset (which h11 never sees: the
      read fails instead) recycled the connection and started the timer afresh. Here
      the timer stops as soon as reading ends and is never started again after that.
      Its socket is then closed without the half-close first: nothing is left to read,
      so the close sends the same FIN.
    * **The end of a connection's input passes a turnstile** (:mod:`.turnstile`): when
      thousands of clients hang up at once, their connections are ended a few per turn
      of the event loop rather than all in one, so the loop goes on serving everything
      else meanwhile. Reading is hypercorn's loop otherwise.
    * **A connection that ends leaves no garbage cycle.** hypercorn's objects of a
      connection refer to each other (the protocol holds this server's bound
      ``protocol_send``), so every closed connection stayed in memory until a full
      collection found it: about 50 objects each, 137,000 after 5,000 streams hung up,
      and a collection of 0.45 s to free them. The references are cut as the
      connection's task ends, and reference counting frees the rest at once.
    * **The keep-alive timer is an** :class:`IdleTimer`: starting and stopping it takes
      no turn of the event loop (hypercorn's took one or more each time: at every
      request's start and end, and in every connection's release).
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.idle_task = IdleTimer()

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            # hypercorn's objects of a connection refer to each other in a cycle through
            # these two; without them, reference counting frees the connection now.
            self.__dict__.pop("protocol", None)
            self.__dict__.pop("_task_group", None)

    async def protocol_send(self, event: Event) -> None:
        if isinstance(event, RawData):
            if not event.data:
                # h11 frames the end of a sized body as no bytes at all; sending them
                # would still take two turns of the event loop.
                return
            lock = self.send_lock
            try:
                try:
                    # Free, as it nearly always is: taken without a turn of the loop (the
                    # send takes one). A waiter queued first makes this raise: no one
                    # jumps the queue.
                    lock.acquire_nowait()
                except trio.WouldBlock:
                    await lock.acquire()
                try:
                    await write_all(self.stream, event.data, self._cut)
                finally:
                    lock.release()
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
                # Busy: the reading task is closing the connection (send_eof) right now.
                # The app's send returns as if it had been written, so the request is
                # told here that it was not: bytes_tx counts what reached the client.
                hangup = self._hangup()
                if hangup is not None:
                    hangup.broken = True
                await self.protocol.handle(Closed())
            except BaseException:
                # Cancelled mid-send (or before it): part of the frame may be on the wire.
                await trio.aclose_forcefully(self.stream)
                raise
        elif isinstance(event, Closed):
            with trio.CancelScope(shield=True):
                await self._close()
            await self.protocol.handle(Closed())
        elif isinstance(event, Updated):
            if event.idle and self._reading_ended:
                return  # nobody is left to keep the connection alive for
            with trio.CancelScope(shield=True):
                await super().protocol_send(event)
        else:
            await super().protocol_send(event)

    _reading_ended = False

    def _cut(self, written: int, size: int) -> None:
        """A write of ``size`` bytes ended (failed or cancelled) after ``written`` of
        them: the request's :class:`~.hangup.Hangup` says so, for its ``bytes_tx``."""
        hangup = self._hangup()
        if hangup is not None:
            hangup.cut = (written, size)

    async def _close(self) -> None:
        if self._reading_ended:
            # Reading has ended (the client's end of stream, a reset, the read timeout)
            # with nothing left unread: the close sends our FIN, as the half-close
            # before it would (a shutdown syscall and one more turn of the loop, per
            # connection).
            if isinstance(self.stream, trio.SocketStream):
                # Closed now, without the checkpoint of aclose(); run_handler then leaves
                # it as it is (Trio's own would close it again, with two checkpoints).
                self.stream.socket.close()
            else:
                await self.stream.aclose()  # TLS: its close_notify is sent first
            return
        await super()._close()

    def _hangup(self) -> Hangup | None:
        """The :class:`~.hangup.Hangup` of this connection's latest request, if any."""
        group = self.__dict__.get("_task_group")
        return group.hangup if isinstance(group, ProxyTaskGroup) else None

    async def _read_data(self) -> None:
        # hypercorn 0.18's loop, but the end of the input (end of stream, reset, read
        # timeout) passes the run's turnstile before the protocol hears of it.
        timeout = self.config.read_timeout or math.inf
        while True:
            try:
                if timeout == math.inf:  # hypercorn's default: no scope to enter and leave
                    data: bytes | bytearray | None = await self.stream.receive_some(MAX_RECV)
                else:
                    with trio.fail_after(timeout):
                        data = await self.stream.receive_some(MAX_RECV)
            except (trio.ClosedResourceError, trio.BrokenResourceError, trio.TooSlowError):
                data = None
            if not data:
                hangup = self._hangup()
                if hangup is not None:
                    # Its relay sends nothing more from now (the client is gone), and so
                    # reads nothing more while this waits at the turnstile.
                    hangup.ending = True
                await turnstile().through()
                if data is not None:
                    await self.protocol.handle(RawData(b""))
                break
            await self.protocol.handle(RawData(bytes(data)))
        await self.protocol.handle(Closed())
        hangup = self._hangup()
        if hangup is not None:
            # hypercorn has queued the request's http.disconnect and so fired this; were
            # that ever not so, a relay waiting for it must not wait for ever.
            hangup.fire()
        # Nothing more will be read: the keep-alive timer has nothing left to wait for,
        # and a response that ends after this must not start it again.
        self._reading_ended = True
        await self.idle_task.stop()


#: A write larger than this is a whole document the proxy built (the diagnostics of
#: thousands of streams, ``/metrics``): no relayed chunk comes near it (a backend read is
#: at most 64 KiB). :func:`write_all` hands it to the kernel in full.
BULK_WRITE = 256 * 1024
#: ``TCP_NOTSENT_LOWAT`` for a bulk write: no limit (the kernel's default).
_NO_LOWAT = 2**31 - 1


async def write_all(
    stream: trio.abc.Stream,
    data: bytes | bytearray,
    cut: Callable[[int, int], None] | None = None,
) -> None:
    """``stream.send_all(data)``, but what a plain socket takes at once is written without
    a turn of the event loop.

    Trio's socket write yields to the scheduler after every write that succeeds, so each
    send costs a task step: one more per relayed chunk, whose task is resumed through
    every frame of the relay and of hypercorn below it (``bench/run.py``'s relay scenario
    relayed 60 % more chunks per core without it). One non-blocking ``write`` on the
    socket's descriptor comes first here; whatever it does not take goes through
    ``send_all``, and so does every other kind of stream (TLS).

    Trio also sets ``TCP_NOTSENT_LOWAT`` (16 KiB) on its TCP sockets, so that a stream's
    back-pressure reaches its sender while little is queued; but then a write takes only
    about 100 KB, and a 2 MB document went out in a dozen writes, each waiting a turn of
    the event loop, which with thousands of streams in flight are long (the diagnostics'
    polls, docs/performance.md). A write over :data:`BULK_WRITE` is made without that
    limit, which is put back after it.

    A write to a plain socket that fails or is cancelled calls ``cut(written, len(data))``
    first, with the bytes the kernel took (Trio's ``send_all`` does not say how many).

    Raises as ``send_all`` does: ``trio.Cancelled`` before anything is written,
    ``trio.BrokenResourceError`` if the peer is gone, ``trio.ClosedResourceError`` if
    the stream is closed.
    """
    if type(stream) is trio.SocketStream:
        sock = stream.socket
        fd = sock.fileno()
        if fd != -1:
            await trio.lowlevel.checkpoint_if_cancelled()
            lowat = _lift_lowat(sock) if len(data) > BULK_WRITE else None
            sent = 0
            try:
                sent = _write(fd, data)
                if sent < len(data):
                    # The rest as send_all writes it, but counted as it goes.
                    view = memoryview(data)
                    while sent < len(data):
                        await trio.lowlevel.wait_writable(sock)
                        fd = sock.fileno()  # closed meanwhile (and the number reused?)
                        if fd == -1:
                            raise trio.ClosedResourceError("the socket was closed")
                        sent += _write(fd, view[sent:])
            except BaseException:
                if cut is not None:
                    cut(sent, len(data))
                raise
            finally:
                if lowat is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, lowat)
            return
    await stream.send_all(data)


def _write(fd: int, data: bytes | bytearray | memoryview) -> int:
    """One non-blocking write: the bytes the kernel took (0 when it takes none now).

    Raises:
        trio.BrokenResourceError: the peer is gone.
    """
    try:
        return os.write(fd, data)
    except BlockingIOError:
        return 0
    except OSError as exc:
        raise trio.BrokenResourceError(f"socket write failed: {exc}") from exc


def _lift_lowat(sock: trio.socket.SocketType) -> int | None:
    """Lift ``sock``'s ``TCP_NOTSENT_LOWAT``: the value to put back (None: none to lift,
    as on a Unix socket or a platform without it)."""
    try:
        lowat = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, _NO_LOWAT)
    except (AttributeError, OSError):
        return None
    return lowat


class IdleTimer(TrioSingleTask):
    """hypercorn's keep-alive timer of one connection (at most one timer task at a time),
    started and stopped without a turn of the event loop.

    hypercorn's ``TrioSingleTask`` takes a ``trio.Lock`` around each start and stop (a
    turn of the loop each, even when free) and starts the task with ``nursery.start()``
    (a nested nursery, and a wait until the task has started): turns in every request's
    start and end, and one in every connection's release. Here neither waits for
    anything, so no lock is needed: the task is started with ``start_soon`` inside a
    cancel scope made first, and cancelling that scope stops it, whether it has started
    to run yet or not.
    """

    def __init__(self) -> None:
        # Not TrioSingleTask's __init__: its lock and handle would go unused, and this is
        # made once per connection.
        self._scope: trio.CancelScope | None = None

    async def restart(self, task_group: Any, action: Callable[[], Awaitable[None]]) -> None:
        """Stop the running timer, if any, and start ``action`` in ``task_group``."""
        if self._scope is not None:
            self._scope.cancel()
        scope = self._scope = trio.CancelScope()
        task_group._nursery.start_soon(_within, scope, action)

    async def stop(self) -> None:
        """Stop the running timer, if any (not a checkpoint)."""
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None


async def _within(scope: trio.CancelScope, action: Callable[[], Awaitable[None]]) -> None:
    with scope:
        await action()


class ProxyTaskGroup(TaskGroup):
    """hypercorn's task group of one connection, whose requests each get a
    :class:`~.hangup.Hangup` in their scope, fired as their ``http.disconnect`` is queued:
    the relay learns of a hang-up from it without a task of its own to ``receive()`` it."""

    #: The Hangup of the connection's latest request (HTTP/1.1: one at a time).
    hangup: Hangup | None = None

    async def spawn_app(
        self,
        app: AppWrapper,
        config: Config,
        scope: Any,
        send: Callable[[ASGISendEvent | None], Awaitable[None]],
    ) -> Callable[[ASGIReceiveEvent], Awaitable[None]]:
        hangup = self.hangup = scope[HANGUP] = Hangup()
        put = await super().spawn_app(app, config, scope, send)
        channel = getattr(put, "__self__", None)
        put_nowait = channel.send_nowait if isinstance(channel, trio.MemorySendChannel) else None

        async def app_put(message: ASGIReceiveEvent) -> None:
            if message["type"] == "http.disconnect":
                hangup.fire()
            if put_nowait is not None:
                # Queued at once when there is room, as there nearly always is (the
                # request's body parts, its disconnect): without the turn of the event
                # loop a channel's send takes.
                try:
                    put_nowait(message)
                    return
                except trio.WouldBlock:
                    pass
            await put(message)

        return app_put


#: What a request that is not served at all is told, by status: message and code.
_UNPARSED = {
    400: ("The request is not valid HTTP/1.1.", "bad_request"),
    431: ("The request's header fields are too large.", "headers_too_large"),
    505: ("This proxy speaks HTTP/1.1 only.", "http_version_not_supported"),
}


class ProxyH11Protocol(H11Protocol):
    """hypercorn's HTTP/1.1 protocol, which never hands a connection to HTTP/2.

    An ``Upgrade: h2c`` request is served in HTTP/1.1 (a server may ignore an upgrade);
    the HTTP/2 preface (``PRI * HTTP/2.0``, a client assuming HTTP/2) is answered 505 and
    the connection closed, with no request made of it.
    """

    _refused = False

    async def _send_error_response(self, status_code: int) -> None:
        # hypercorn's own answer to a request h11 cannot parse (400), whose head is too
        # large (431), and ours to HTTP/2 (505): an empty body. Here it says why, in the
        # OpenAI shape (which API the client speaks is not known of such a request).
        message, code = _UNPARSED.get(status_code, (f"HTTP {status_code}.", "bad_request"))
        body = json.dumps(
            error_payload(Api.OPENAI, message, error_type="invalid_request_error", code=code)
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
            (b"connection", b"close"),
            *self.config.response_headers("h11"),
        ]
        await self._send_h11_event(h11.Response(status_code=status_code, headers=headers))
        await self._send_h11_event(h11.Data(data=body))
        await self._send_h11_event(h11.EndOfMessage())

    async def _check_protocol(self, event: h11.Request) -> None:
        if event.method == b"PRI" and event.target == b"*" and event.http_version == b"2.0":
            self._refused = True
            await self._send_error_response(505)
            await self.send(Closed())

    async def _create_stream(self, request: h11.Request) -> None:
        if not self._refused:
            await super()._create_stream(request)


def _replace(module: Any, name: str, original: type, replacement: type) -> None:
    """Point ``module.name`` at ``replacement``, refusing unless it is ``original`` (or
    ``replacement`` already)."""
    current = getattr(module, name, None)
    if current is replacement:
        return
    if current is not original:
        raise RuntimeError(
            f"{module.__name__}.{name} is not hypercorn's {original.__name__}: this hypercorn "
            "version needs trioproxy/serving.py reviewed"
        )
    setattr(module, name, replacement)


def install_tcp_server() -> None:
    """Make hypercorn's Trio worker serve every connection with :class:`ProxyTCPServer`,
    in HTTP/1.1 only (:class:`ProxyH11Protocol`), whose requests are run by
    :class:`ProxyTaskGroup`, each in a :func:`run_handler`.

    Idempotent. Raises:
        RuntimeError: hypercorn no longer looks ``TCPServer``, ``TaskGroup`` or
            ``H11Protocol`` up where this patch puts them (a hypercorn upgrade), or
            Trio's accept loop no
            longer starts its connections' tasks by the name ``_run_handler`` (a Trio
            upgrade): serving without the changes is refused.
    """
    _replace(hypercorn.trio.run, "TCPServer", TCPServer, ProxyTCPServer)
    _replace(hypercorn.trio.tcp_server, "TaskGroup", TaskGroup, ProxyTaskGroup)
    _replace(hypercorn.protocol, "H11Protocol", H11Protocol, ProxyH11Protocol)
    _replace_run_handler()


async def run_handler(
    stream: trio.abc.AsyncResource, handler: Callable[[Any], Awaitable[object]]
) -> None:
    """One connection's task under ``trio.serve_listeners``: ``handler(stream)``, and the
    stream closed after it if the handler left it open.

    Trio's own ``_run_handler`` always ends with ``trio.aclose_forcefully(stream)``. On a
    socket :class:`ProxyTCPServer` has already closed, that closes nothing, yet takes two
    turns of the event loop and a deadline-heap entry in the connection's last moments:
    when thousands of clients hang up at once, their release waits on these turns. Here
    a ``SocketStream`` whose socket is closed is left as it is; any other stream (TLS, or
    a socket still open because the handler failed early) is closed as Trio closes it.

    An exception out of the handler (a bug, in hypercorn or here) is logged, with its
    traceback, and ends this connection only: Trio's would propagate out of its accept
    loop and end every connection, and the process.
    """
    try:
        await handler(stream)
    except Exception:
        log.exception("a connection failed; it is closed, and the proxy serves on")
    finally:
        if not (isinstance(stream, trio.SocketStream) and stream.socket.fileno() == -1):
            await trio.aclose_forcefully(stream)


def _replace_run_handler() -> None:
    """Point Trio's accept loop at :func:`run_handler`, refusing unless it still starts
    each connection's task by the module-global name ``_run_handler``."""
    module = trio._highlevel_serve_listeners
    loop = getattr(module, "_serve_one_listener", None)
    current = getattr(module, "_run_handler", None)
    if current is run_handler:
        return
    if current is None or "_run_handler" not in getattr(
        getattr(loop, "__code__", None), "co_names", ()
    ):
        raise RuntimeError(
            "trio.serve_listeners no longer starts connections with _run_handler: this Trio "
            "version needs trioproxy/serving.py reviewed"
        )
    module._run_handler = run_handler


def ambiguous_framing(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a request's headers frame its body twice (Transfer-Encoding and
    Content-Length), which RFC 9112 §6.3 says to reject or answer and close (pure)."""
    chunked = sized = False
    for name, _ in headers:
        if name == b"transfer-encoding":
            chunked = True
        elif name == b"content-length":
            sized = True
    return chunked and sized


AMBIGUOUS_FRAMING = "The request has both Transfer-Encoding and Content-Length; send one of them."


async def refuse_ambiguous_framing(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer a doubly framed request (:func:`ambiguous_framing`) 400 and close.

    The 400 is in the error shape of the path's API; ``connection: close`` makes the
    server close the connection after it, so what follows the ambiguous body is never read
    as a request. The body (as h11 framed it: by its transfer coding) is read first, up to
    :data:`DRAIN_LIMIT` bytes or :data:`DRAIN_SECONDS`: hypercorn closes a connection at
    once when the client sends more after a response that said ``connection: close``, and
    an answer sent before the body was read could be cut off by that close.
    """
    await _drain(receive)
    body = error_body(api_of_path(scope["path"]), BadRequest(AMBIGUOUS_FRAMING))
    headers = [*JSON_HEADERS, (b"content-length", b"%d" % len(body)), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 400, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


#: An app's attribute saying that it answers doubly framed requests itself (with
#: :func:`refuse_ambiguous_framing`), so that :func:`serve_app` puts no
#: :class:`FramingGuard` around it: the proxy's app does, and logs the refusal.
REFUSES_AMBIGUOUS_FRAMING = "refuses_ambiguous_framing"


class FramingGuard:
    """An ASGI app around ``app`` that answers a doubly framed request with
    :func:`refuse_ambiguous_framing`, and passes every other on to ``app``."""

    def __init__(self, app: Asgi) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and ambiguous_framing(scope["headers"]):
            await refuse_ambiguous_framing(scope, receive, send)
            return
        await self.app(scope, receive, send)


DRAIN_LIMIT = 1024 * 1024
DRAIN_SECONDS = 5.0


async def _drain(receive: Receive) -> None:
    """Read and drop a request body, within the bounds of :class:`FramingGuard`."""
    size = 0
    with trio.move_on_after(DRAIN_SECONDS):
        while size <= DRAIN_LIMIT:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return
            size += len(message.get("body", b""))


class AcceptErrorFilter(logging.Filter):
    """Turns Trio's accept-error records into one traceback-free line per ``interval``.

    Trio's accept loop logs "accept returned EMFILE …" with a traceback on every retry,
    ten times a second while the descriptor table is full. This filter lets one record
    through per ``interval`` seconds of ``clock``, rewritten to say what it means and how
    many were dropped since the last, and drops the others; other records pass unchanged.
    """

    def __init__(self, interval: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self._next = -math.inf
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("accept returned"):
            return True
        now = self.clock()
        if now < self._next:
            self._dropped += 1
            return False
        self._next = now + self.interval
        name = str(record.args[0]) if isinstance(record.args, tuple) and record.args else "?"
        code = getattr(errno, name, None)
        reason = os.strerror(code) if isinstance(code, int) else "out of resources"
        record.msg = "cannot accept new connections: %s (%s); open connections are still served"
        record.args = (name, reason)
        if self._dropped:
            record.msg += "; %d more such errors since the last line"
            record.args = (name, reason, self._dropped)
        self._dropped = 0
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True


def install_accept_filter() -> None:
    """Put one :class:`AcceptErrorFilter` on Trio's accept-loop logger (idempotent)."""
    logger = logging.getLogger(ACCEPT_LOGGER)
    if not any(isinstance(f, AcceptErrorFilter) for f in logger.filters):
        logger.addFilter(AcceptErrorFilter())


async def serve_app(
    app: Asgi,
    config: Config,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]],
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` with hypercorn's Trio worker until ``shutdown_trigger`` returns.

    As ``hypercorn.trio.serve``, with the changes of the module docstring.
    ``task_status.started`` receives the bound URLs once the listeners are up.
    """
    install_tcp_server()
    install_accept_filter()
    guarded = app if getattr(app, REFUSES_AMBIGUOUS_FRAMING, False) else FramingGuard(app)
    await hypercorn.trio.serve(
        guarded,  # type: ignore[arg-type]
        config,
        shutdown_trigger=shutdown_trigger,
        task_status=task_status,
    )
