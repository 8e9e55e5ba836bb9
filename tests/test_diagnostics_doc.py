"""The ``GET /v1/diagnostics`` document, built from the tracker's snapshot.

For speed the document is built from ``ActivityTracker.snapshot_dicts()`` (plain JSON
objects, no snapshot dataclasses) and encoded with orjson; these tests hold it to the
snapshot's own ``to_dict()``, key order included, so the fast path cannot drift from the
documented shape, and read it back as a client does, into the same snapshot.
"""

from __future__ import annotations

import dataclasses
import json

import trio
import trio.testing

from trioproxy.activity import ActivityTracker, ConnectionActivity
from trioproxy.backends.instance import Backends
from trioproxy.diagnostics import activity_summary, diagnostics_json
from trioproxy.inspect.document import Diagnostics
from trioproxy.settings import BackendSpec, ConnectorType, Settings

DESIGN_ACTIVITY_KEYS = [
    "active_connections",
    "connections",
    "total_bytes_rx",
    "total_bytes_tx",
    "lifetime",
]


async def test_document_matches_the_snapshot_field_for_field(
    mock_clock: trio.testing.MockClock,
) -> None:
    # The mock clock stands still, so the document and the snapshot read the same time.
    settings = Settings(
        backends=(
            BackendSpec(name="busy", type=ConnectorType.MOCK),
            BackendSpec(name="quiet", type=ConnectorType.MOCK),
        )
    )
    backends = Backends(settings)
    tracker = ActivityTracker(instances=("busy", "quiet"))
    scopes = [trio.CancelScope() for _ in range(3)]
    blocks = [
        tracker.track("busy", f"session-{i}", model='m"odel\\', streaming=i != 1, handle=s)
        for i, s in enumerate(scopes)
    ]
    meters = [block.__enter__() for block in blocks]
    meters[0].add_rx(1000)
    meters[0].add_tx(999)
    mock_clock.jump(2.5)
    meters[2].add_rx(7)

    doc = json.loads(diagnostics_json(backends, tracker))
    snapshot = tracker.get_global_snapshot()
    by_name = {i["name"]: i for i in doc["instances"]}
    for name in ("busy", "quiet"):
        activity = by_name[name]["activity"]
        assert activity == snapshot.instance(name).to_dict()
        assert list(activity) == DESIGN_ACTIVITY_KEYS
    busy = by_name["busy"]["activity"]
    assert [c["session_id"] for c in busy["connections"]] == ["session-0", "session-1", "session-2"]
    assert busy["connections"][0]["bytes_rx"] == 1000
    # The fast rows list the fields in the order of the dataclass, as to_dict() does.
    assert list(busy["connections"][0]) == [f.name for f in dataclasses.fields(ConnectionActivity)]
    assert busy["connections"][1]["connection_type"] == "non_streaming"
    assert busy["connections"][0]["model"] == 'm"odel\\'
    assert doc["global_activity"] == snapshot.to_dict()
    assert doc["timestamp"] == snapshot.timestamp
    # The cheap summary (no connection copied) reports the snapshot's sums.
    assert activity_summary(tracker) == {
        "enabled": True,
        "total_active_connections": snapshot.total_active_connections,
        "total_bytes_rx": snapshot.total_bytes_rx,
        "total_bytes_tx": snapshot.total_bytes_tx,
    }
    assert snapshot.total_active_connections == 3
    assert snapshot.total_bytes_rx == 1007
    # A client reading the document (the terminal view) gets the very same snapshot.
    parsed = Diagnostics.from_dict(doc)
    assert parsed.global_activity == snapshot
    assert [i.name for i in parsed.instances] == ["busy", "quiet"]
    for block in blocks:
        block.__exit__(None, None, None)
