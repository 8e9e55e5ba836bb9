"""The terminal view of proxies' activity (``trioproxy-inspect``): a client of their JSON.

It polls one or several proxies at once (:mod:`.poll`, each poll one proxy's calls in
:mod:`.fetch`), reads their ``/v1/diagnostics`` and ``/v1/diagnostics/recent``
documents into the tracker's own snapshot types plus each backend's status
(:mod:`.document`), merges them into one screen with RX rates (:mod:`.merge`), renders
it (:mod:`.view`, its tables declared and fitted by :mod:`.tables`, values by
:mod:`.formatting`), cancels a stuck connection (:mod:`.cancel`) and runs as a command
(:mod:`.cli`). Nothing here imports Trio or runs inside the proxy.
"""
