"""The terminal view of a proxy's activity (``trioproxy-inspect``): a client of its JSON.

It reads ``GET /v1/diagnostics`` (:mod:`.fetch`) into the tracker's own snapshot types
plus each backend's status (:mod:`.document`), renders it (:mod:`.view`, with
:mod:`.formatting`) and runs as a command (:mod:`.cli`). Nothing here imports Trio or
runs inside the proxy.
"""
