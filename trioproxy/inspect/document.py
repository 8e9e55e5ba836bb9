"""A proxy's ``GET /v1/diagnostics`` and ``/v1/diagnostics/recent`` documents, read
into typed values.

The activity in them is read into the tracker's own snapshot types
(:mod:`trioproxy.activity.snapshot`), which check their part of the document; the
types here add only what the documents say beside the activity: each backend's status
and the documents' own fields. :meth:`Diagnostics.from_dict` and
:meth:`RecentRequests.from_dict` are the entry points and raise
:class:`~trioproxy.activity.MalformedDocument`, naming the first offending field by its
path, for anything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from trioproxy.activity.jsonfields import (
    MAY_BE_ABSENT,
    JsonObject,
    MalformedDocument,
    read_dataclass,
    read_fields,
)
from trioproxy.activity.snapshot import FinishedRequest, GlobalSnapshot, InstanceActivity


@dataclass(frozen=True, slots=True)
class Instance:
    """One entry of the document's ``instances``: a backend's status and its activity.

    ``activity`` is None when tracking is off.
    """

    name: str
    connector_type: str
    is_rate_limited: bool
    retry_after_seconds: float | None
    is_functional: bool
    validation_errors: tuple[str, ...]
    models: tuple[str, ...]
    activity: InstanceActivity | None

    @classmethod
    def from_dict(cls, data: object, path: str = "") -> Instance:
        """Read one entry of ``instances`` (``path``: where it is, for messages).

        Raises:
            MalformedDocument: a field is missing or does not have its type.
        """
        obj = JsonObject(data, path)
        values = read_fields(cls, obj, omit=("activity",))
        activity = obj.get("activity")
        return cls(
            activity=None
            if activity is None
            else InstanceActivity.from_dict(activity, obj.at("activity"), name=values["name"]),
            **values,
        )


@dataclass(frozen=True, slots=True)
class Diagnostics:
    """A whole ``GET /v1/diagnostics`` answer.

    ``global_activity`` is the proxy's snapshot — its sums, and its instances'
    activities in document order — or None when the document has none (tracking off).
    ``workers_unreachable``: the workers (``--workers N``) whose part is missing from it.
    """

    timestamp: float
    activity_tracking_enabled: bool
    instances: tuple[Instance, ...]
    global_activity: GlobalSnapshot | None
    # Only a proxy with --workers N > 1 says it.
    workers_unreachable: tuple[int, ...] = field(default=(), metadata=MAY_BE_ABSENT)

    @classmethod
    def from_dict(cls, data: object) -> Diagnostics:
        """Check that ``data`` (decoded JSON) is a diagnostics document and read it.

        Unknown fields are ignored, so a newer proxy's document still reads.

        Raises:
            MalformedDocument: a field is missing or has the wrong type; the message
                gives its path, e.g. ``instances[0].activity.connections[1].bytes_rx:
                missing``.
        """
        obj = JsonObject(data)
        values = read_fields(cls, obj, omit=("global_activity",))
        glob = obj.get("global_activity")
        timestamp: float = values["timestamp"]
        instances: tuple[Instance, ...] = values["instances"]
        activities = tuple(i.activity for i in instances if i.activity is not None)
        try:
            datetime.fromtimestamp(timestamp)
        except (OverflowError, OSError, ValueError):
            raise MalformedDocument("timestamp: not a representable time") from None
        return cls(
            global_activity=None
            if glob is None
            else GlobalSnapshot.from_dict(
                glob, obj.at("global_activity"), timestamp=timestamp, instances=activities
            ),
            **values,
        )


@dataclass(frozen=True, slots=True)
class RecentRequests:
    """A ``GET /v1/diagnostics/recent`` answer: the latest finished requests, newest first."""

    timestamp: float
    activity_tracking_enabled: bool
    recent: tuple[FinishedRequest, ...]

    @classmethod
    def from_dict(cls, data: object) -> RecentRequests:
        """Check that ``data`` (decoded JSON) is a recent-requests document and read it.

        Raises:
            MalformedDocument: a field is missing or has the wrong type, named by its
                path, e.g. ``recent[2].outcome: missing``.
        """
        return read_dataclass(cls, JsonObject(data))
