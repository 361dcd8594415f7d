"""The live channel: the one place that knows a run's group name, an event's wire format
and how it is published.

A persisted event goes out once its transaction commits, to the Channels group of its run,
from whichever process ran the search (a Celery worker, the web process's in-process worker,
``manage.py tune`` or ``resume --here``): every process with the same channel layer (Redis
in production) reaches every open run page. The page rebuilds anything it missed from
``?after=<seq>`` (the database is the truth), so a push that fails costs only latency.
"""

from __future__ import annotations

import logging

from django.db import transaction

log = logging.getLogger(__name__)

#: the Channels message type a consumer handles (``run_event``)
MESSAGE_TYPE = "run.event"


def group(run_id: int) -> str:
    """The Channels group of a run's open pages."""
    return f"run-{run_id}"


def wire(seq: int, data: dict) -> dict:
    """An event as pages see it, live or replayed: the stored event and its sequence number."""
    return dict(data, seq=seq)


def frame(event: dict) -> dict:
    """The websocket frame that carries one live event."""
    return {"type": "event", "event": event}


class Publisher:
    """Publishes a run's committed events; warns once while the channel layer is down."""

    def __init__(self, run_id: int):
        self.run_id = run_id
        self._failing = False

    def on_commit(self, seq: int, data: dict) -> None:
        event = wire(seq, data)
        transaction.on_commit(lambda: self.send(event))

    def send(self, event: dict) -> None:
        try:
            _group_send(self.run_id, event)
        except Exception as exc:  # noqa: BLE001 - the event is stored; pages resync
            if not self._failing:
                log.warning("run %s: live updates unavailable (%s); pages will resync", self.run_id, exc)
            self._failing = True
        else:
            self._failing = False


def _group_send(run_id: int, event: dict) -> None:
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(group(run_id), {"type": MESSAGE_TYPE, "event": event})
