"""``--workers N``: a supervising parent and N worker processes on one address, one view.

* :mod:`.supervisor` — the parent: the listening socket, the runtime directory, starting
  and restarting workers, forwarding signals (:func:`~.supervisor.supervise`).
* :mod:`.worker` — a worker process: ``serve()`` as one of a :class:`~.cluster.Cluster`.
* :mod:`.cluster` — a worker among its siblings: the channel's answers and the admin view
  that gathers every worker's part and merges them.
* :mod:`.channel` — the private channel: a Unix socket per worker, frames of JSON, a
  short deadline.
* :mod:`.merge` — the documents of several workers → one (pure).
* :mod:`.shared` — backend state (429 windows, failures) shared between the workers.
* :mod:`.listen`, :mod:`.plan` — the listening sockets; what a worker is handed, and the
  roster of workers.

With ``--workers 1`` (the default) none of this is imported: one process serves as before.
"""
