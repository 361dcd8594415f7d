"""The run page's websocket: it only notifies; the database is the truth.

On connect the consumer checks the run exists, joins the group ``run-<id>`` and says which
sequence number the run is at. The client sends ``{"after": <seq>}`` (on connect, and
whenever it sees a gap) and gets every stored event after it, in order; live events then
arrive as ``{"type": "event", "event": {...,"seq": n}}``.
"""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from search import selectors
from search.models import Run

CLOSE_NOT_FOUND = 4404


class RunConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        self.run_id = int(self.scope["url_route"]["kwargs"]["run_id"])
        last_seq = await self._last_seq()
        if last_seq is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.group = f"run-{self.run_id}"
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "run": self.run_id, "last_seq": last_seq})

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        after = content.get("after") if isinstance(content, dict) else None
        if not isinstance(after, int) or after < 0:
            await self.send_json({"type": "error", "error": "send {\"after\": <non-negative seq>}"})
            return
        events = await self._events_after(after)
        await self.send_json({"type": "events", "after": after, "events": events})

    async def run_event(self, message):
        """A persisted event broadcast by the worker's sink (``type: run.event``)."""
        await self.send_json({"type": "event", "event": message["event"]})

    @database_sync_to_async
    def _last_seq(self):
        return Run.objects.filter(pk=self.run_id).values_list("last_seq", flat=True).first()

    @database_sync_to_async
    def _events_after(self, after):
        return selectors.events_after(self.run_id, after)
